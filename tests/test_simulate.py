"""The simulation driver: field timing, dipole response, neighbor-list reallocation, HDF5,
runs that go non-finite. (Its dynamics: test_simulate_dynamics.py.)"""

import types

import h5py
import jax.numpy as jnp
import numpy as np
import pytest
from jax_md import partition, space

import jaxmd_efield as jef
from conftest import TINY
from jaxmd_efield import fields, simulate
from test_simulate_dynamics import ethanol_springs, springs_in_field

DRIVE_THZ = 25.0
PROTOCOL = fields.superpose(fields.constant([0.0, 0.05, 0.0]),
                            fields.sinusoidal(0.3, [0, 0, 1], frequency_THz=DRIVE_THZ))


def scaled(ethanol):
    """The tiny random model scaled to thermal forces (unscaled it has no repulsion)."""
    return lambda R, **kwargs: 0.05 * ethanol["energy"](R, **kwargs)


def run(ethanol, **kwargs):
    options = dict(steps=400, dt_fs=0.5, record_every=2, integrator="nve", frames_per_chunk=60,
                   temperature_K=50.0, progress=False)
    options.update(kwargs)
    return simulate.run(scaled(ethanol), ethanol["shift"], ethanol["neighbor_fn"], ethanol["R"],
                        ethanol["masses"], PROTOCOL, **options)


def test_field_timing_and_dipole_response(ethanol, tmp_path):
    out = run(ethanol, output=str(tmp_path / "traj.h5"))
    times = out["time"]
    np.testing.assert_allclose(times, 1.0 * np.arange(1, 201))  # every 2 steps of 0.5 fs
    np.testing.assert_allclose(out["field"], np.stack([np.asarray(PROTOCOL(t)) for t in times]), atol=1e-12)
    # the driven dipole oscillates at the driving frequency
    mu_z = out["dipole"][:, 2] - out["dipole"][:, 2].mean()
    spectrum = np.abs(np.fft.rfft(mu_z * np.hanning(len(mu_z))))
    freqs_THz = np.fft.rfftfreq(len(mu_z), 1.0) * 1e3
    drive = np.argmin(np.abs(freqs_THz - DRIVE_THZ))
    assert spectrum[drive] > 5 * np.median(spectrum)
    assert abs(freqs_THz[np.argmax(spectrum[3:]) + 3] - DRIVE_THZ) <= freqs_THz[1]
    # the file round-trips, with units
    # the final state is the last frame's (the last chunk is not run past the requested steps)
    np.testing.assert_allclose(out["final_state"].position, out["positions"][-1])
    frames, attrs = simulate.read_trajectory(str(tmp_path / "traj.h5"))
    assert attrs["frames"] == 200
    for key in simulate.FRAME_UNITS:
        np.testing.assert_array_equal(frames[key], out[key], err_msg=key)
    assert np.all(np.isfinite(out["total_energy"]))


def test_reallocation_keeps_frames_contiguous(ethanol):
    """A C and an O atom fired at each other from beyond the cutoff: the list allocated when
    they were apart overflows mid-run, the chunk is rerun, and the frames equal those of a run
    whose list had room from the start."""
    neighbor_fn, _, energy_fn = jef.efield_nequip_neighbor_list(
        space.free()[0], 10.0, [6, 8], TINY, disable_cell_list=True, capacity_multiplier=1.0)
    R = jnp.array([[0.0, 0.0, 0.0], [6.0, 0.3, 0.0]])
    masses = jnp.array([12.0, 16.0])
    momenta = jnp.array([[0.05 * 12.0, 0.0, 0.0], [-0.05 * 16.0, 0.0, 0.0]])  # 0.1 Å/fs closing

    def go(neighbors):
        return simulate.run(lambda R_, **kw: energy_fn(ethanol["params"], R_, **kw), space.free()[1],
                            neighbor_fn, R, masses, PROTOCOL, steps=80, record_every=2,
                            integrator="nve", frames_per_chunk=5, momenta=momenta,
                            neighbors=neighbors, progress=False)

    roomy = go(neighbor_fn.allocate(jnp.array([[0.0, 0, 0], [1.5, 0, 0]])))
    tight = go(neighbor_fn.allocate(R))  # no pair within the cutoff yet
    assert roomy["reallocations"] == 0 and tight["reallocations"] >= 1
    assert np.linalg.norm(tight["positions"][-1, 1] - tight["positions"][-1, 0]) < TINY.r_cut
    np.testing.assert_allclose(tight["time"], np.arange(1, 41) * 1.0)
    for key in ("positions", "velocities", "dipole", "total_energy"):
        np.testing.assert_allclose(tight[key], roomy[key], atol=1e-10, err_msg=key)


def test_endless_overflow_stops_with_advice():
    """A neighbor_fn that ignores extra_capacity can never hold the C-O collision (each
    reallocation is from the chunk's start, atoms apart, and gets no room): after
    MAX_REALLOCATIONS of the chunk the run stops with a RuntimeError saying what to do."""
    neighbor_fn = partition.neighbor_list(space.free()[0], 10.0, 4.0, format=partition.Sparse,
                                          capacity_multiplier=1.0, disable_cell_list=True)
    allocations = []
    stubborn = types.SimpleNamespace(
        allocate=lambda R, **kwargs: allocations.append(R) or neighbor_fn.allocate(R))
    energy = springs_in_field(jnp.array([[0.0, 0.0, 0.0], [1.2, 0.0, 0.0]]), jnp.array([0.3, -0.3]))
    with pytest.raises(RuntimeError, match="still overflows after 5 reallocations.*exploding.*"
                                           "capacity_multiplier"):
        simulate.run(energy, space.free()[1], stubborn, jnp.array([[0.0, 0, 0], [6.0, 0.3, 0]]),
                     jnp.array([12.0, 16.0]), PROTOCOL, steps=80, record_every=2,
                     integrator="nve", frames_per_chunk=5, progress=False,
                     momenta=jnp.array([[0.05 * 12.0, 0.0, 0.0], [-0.05 * 16.0, 0.0, 0.0]]))
    assert len(allocations) == 1 + simulate.MAX_REALLOCATIONS


@pytest.mark.parametrize("bad_step", [37, 32])
def test_non_finite_run_stops_at_its_step(ethanol, tmp_path, bad_step):
    """A field that turns NaN at step 37 (t = 18.5 fs; 32: the first frame of a chunk) makes the
    energy and momenta NaN there: the run stops with a FloatingPointError naming the step and
    time, the frames before it (every 2 steps, in chunks of 10 steps) written and readable."""
    def nan_from(t):
        return jnp.where(t > (bad_step - 0.5) * 0.5, jnp.nan, 0.0) * jnp.ones(3)

    path = str(tmp_path / "nan.h5")
    with pytest.raises(FloatingPointError, match=rf"step {bad_step} \(t = {bad_step / 2:g} fs\)"):
        simulate.run(ethanol_springs(ethanol), ethanol["shift"], ethanol["neighbor_fn"],
                     ethanol["R"], ethanol["masses"], nan_from, steps=60, record_every=2,
                     integrator="nve", frames_per_chunk=5, output=path, progress=False)
    frames, attrs = simulate.read_trajectory(path)
    good = (bad_step - 1) // 2
    assert attrs["frames"] == good
    np.testing.assert_allclose(frames["time"], np.arange(1, good + 1) * 1.0)
    assert all(np.all(np.isfinite(frames[key])) for key in simulate.FRAME_UNITS)


def test_read_trajectory_rejects_broken_files(tmp_path):
    """A truncated file, one that is not HDF5 and an HDF5 file that is not a trajectory: a
    ValueError naming the file. A missing file stays a FileNotFoundError."""
    writer = simulate._TrajectoryWriter(str(tmp_path / "traj.h5"), None)
    writer.append({"time": np.arange(1.0, 51.0), "positions": np.zeros((50, 9, 3))})
    writer.close()
    assert simulate.read_trajectory(str(tmp_path / "traj.h5"))[1]["frames"] == 50
    data = (tmp_path / "traj.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[:len(data) // 2])
    (tmp_path / "junk.h5").write_bytes(b"not HDF5 " * 100)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.ones(3)
    for name in ("cut.h5", "junk.h5", "other.h5"):
        with pytest.raises(ValueError, match=f"{name} is truncated or corrupt"):
            simulate.read_trajectory(str(tmp_path / name))
    with pytest.raises(FileNotFoundError):
        simulate.read_trajectory(str(tmp_path / "missing.h5"))


def test_interrupted_run_leaves_valid_file(ethanol, tmp_path, monkeypatch):
    calls = {"n": 0}
    append = simulate._TrajectoryWriter.append

    def append_then_fail(self, records):
        append(self, records)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
    monkeypatch.setattr(simulate._TrajectoryWriter, "append", append_then_fail)
    with pytest.raises(KeyboardInterrupt):
        run(ethanol, integrator="nvt_nose_hoover", output=str(tmp_path / "cut.h5"))
    frames, attrs = simulate.read_trajectory(str(tmp_path / "cut.h5"))
    assert attrs["frames"] == 120 and frames["positions"].shape == (120, 9, 3)
    np.testing.assert_allclose(frames["time"], 1.0 * np.arange(1, 121))


def test_bad_arguments(ethanol):
    with pytest.raises(ValueError, match="integrator"):
        run(ethanol, integrator="npt")
    with pytest.raises(ValueError, match="masses"):
        simulate.run(scaled(ethanol), ethanol["shift"], ethanol["neighbor_fn"], ethanol["R"],
                     jnp.ones(3), PROTOCOL, steps=10)
