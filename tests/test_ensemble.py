"""Ensembles in simulate.run: K replicas in one jitted program, each what a single run with its
own key, start, momenta and field would give."""

import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax_md import space

import jaxmd_efield as jef
from conftest import TINY
from jaxmd_efield import fields, simulate
from test_simulate import PROTOCOL, scaled

CONSTANT = fields.constant([0.1, 0.0, -0.05])


def test_replicas_are_independent_runs_with_their_own_streams_and_fields(ethanol, tmp_path):
    """Langevin (random forces) with 3 replicas, per-replica protocols and field scales (one
    switched off): replica k equals a single run with key split(key, 3)[k] and its own field, to
    1e-10; the HDF5 file holds (K, frames, ...) and reads back."""
    key = jax.random.PRNGKey(7)
    protocols, scale = [PROTOCOL, CONSTANT, PROTOCOL], [1.0, 2.0, 0.0]
    options = dict(steps=40, dt_fs=0.5, record_every=2, integrator="nvt_langevin", frames_per_chunk=8,
                   temperature_K=300.0, progress=False, friction_per_fs=0.05)
    out = simulate.run(scaled(ethanol), ethanol["shift"], ethanol["neighbor_fn"], ethanol["R"],
                       ethanol["masses"], protocols, replicas=3, field_scale=scale, key=key,
                       output=str(tmp_path / "ensemble.h5"), **options)
    assert out["positions"].shape == (3, 20, 9, 3) and out["time"].shape == (20,)
    np.testing.assert_allclose(out["field"][2], 0.0)
    np.testing.assert_allclose(out["field"][1], np.tile(2 * np.asarray(CONSTANT(0.0)), (20, 1)))
    assert np.abs(out["positions"][0] - out["positions"][2]).max() > 1e-3  # own random streams
    for k, single_key in enumerate(jax.random.split(key, 3)):
        single = simulate.run(scaled(ethanol), ethanol["shift"], ethanol["neighbor_fn"], ethanol["R"],
                              ethanol["masses"], lambda t, k=k: scale[k] * protocols[k](t),
                              key=single_key, **options)
        for name in ("positions", "velocities", "dipole", "field", "total_energy", "temperature"):
            np.testing.assert_allclose(out[name][k], single[name], rtol=0, atol=1e-10, err_msg=f"{k} {name}")
    frames, attrs = simulate.read_trajectory(str(tmp_path / "ensemble.h5"))
    assert attrs["replicas"] == 3 and attrs["frames"] == 20
    for name in simulate.FRAME_UNITS:
        np.testing.assert_array_equal(frames[name], out[name], err_msg=name)


def test_one_replica_overflowing_reruns_the_chunk_for_all(ethanol):
    """Replica 1 fires a C and an O atom at each other (its list overflows mid-run), replica 0
    rests: the chunk is rerun with more room and both equal single runs whose lists had room."""
    neighbor_fn, _, energy_fn = jef.efield_nequip_neighbor_list(
        space.free()[0], 10.0, [6, 8], TINY, disable_cell_list=True, capacity_multiplier=1.0)
    energy = lambda R_, **kw: energy_fn(ethanol["params"], R_, **kw)  # noqa: E731
    R = jnp.array([[0.0, 0.0, 0.0], [6.0, 0.3, 0.0]])
    masses = jnp.array([12.0, 16.0])
    closing = jnp.array([[0.05 * 12.0, 0.0, 0.0], [-0.05 * 16.0, 0.0, 0.0]])
    momenta = jnp.stack([jnp.zeros((2, 3)), closing])
    options = dict(steps=80, record_every=2, integrator="nve", frames_per_chunk=5, progress=False)
    out = simulate.run(energy, space.free()[1], neighbor_fn, R, masses, PROTOCOL, replicas=2,
                       momenta=momenta, neighbors=neighbor_fn.allocate(R), **options)
    assert out["reallocations"] >= 1
    roomy = neighbor_fn.allocate(jnp.array([[0.0, 0, 0], [1.5, 0, 0]]))
    for k in range(2):
        single = simulate.run(energy, space.free()[1], neighbor_fn, R, masses, PROTOCOL,
                              momenta=momenta[k], neighbors=roomy, **options)
        for name in ("positions", "velocities", "dipole", "total_energy"):
            np.testing.assert_allclose(out[name][k], single[name], atol=1e-10, err_msg=f"{k} {name}")


SHARDED = r"""
import jax, numpy as np
jax.config.update("jax_enable_x64", True)
assert len(jax.devices()) == 4
from ase.build import molecule
from jax_md import space
import jaxmd_efield as jef
from jaxmd_efield import fields, simulate
TINY = jef.EFieldNequIPConfig(species=(1, 6, 8), r_cut=4.0, hidden_irreps="8x0e + 4x1o", num_layers=1,
                              num_basis=6, radial_hidden=8, readout_hidden=8)
mol = molecule("CH3CH2OH")
neighbor_fn, init_fn, energy_fn = jef.efield_nequip_neighbor_list(
    space.free()[0], 10.0, mol.numbers, TINY, disable_cell_list=True, capacity_multiplier=2.0)
R = jax.numpy.asarray(mol.positions)
params = init_fn(jax.random.PRNGKey(1), R, neighbor_fn.allocate(R))
energy = lambda R_, **kw: 0.05 * energy_fn(params, R_, **kw)
options = dict(steps=20, record_every=2, integrator="nvt_langevin", progress=False,
               frames_per_chunk=5, key=jax.random.PRNGKey(2))
protocol = fields.sinusoidal(0.2, [0, 0, 1], frequency_THz=30.0)
out = simulate.run(energy, space.free()[1], neighbor_fn, R, mol.get_masses(), protocol, replicas=8,
                   field_scale=np.linspace(0, 1, 8), **options)
assert len(out["final_state"].position.sharding.device_set) == 4
for k, key in enumerate(jax.random.split(options.pop("key"), 8)):
    single = simulate.run(energy, space.free()[1], neighbor_fn, R, mol.get_masses(),
                          lambda t, k=k: k / 7 * protocol(t), key=key, **options)
    for name in ("positions", "velocities", "dipole", "total_energy"):
        np.testing.assert_allclose(out[name][k], single[name], rtol=1e-6, atol=1e-9, err_msg=name)
print("sharded replicas equal single runs")
"""


@pytest.mark.slow  # a subprocess with 4 forced host devices: `make test-slow`
def test_replicas_split_over_devices_equal_single_runs(tmp_path):
    """On 4 forced host devices the 8 replicas are split over the devices and each equals its
    single run on one device (1e-6 relative, float64)."""
    env = dict(os.environ, XLA_FLAGS=" ".join([os.environ.get("XLA_FLAGS", ""),
                                               "--xla_force_host_platform_device_count=4"]))
    script = tmp_path / "sharded.py"
    script.write_text(SHARDED)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                            cwd=pathlib.Path(__file__).parent, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sharded replicas equal single runs" in result.stdout


def test_bad_ensemble_arguments(ethanol):
    args = (scaled(ethanol), ethanol["shift"], ethanol["neighbor_fn"])
    starts = jnp.stack([ethanol["R"]] * 2)
    with pytest.raises(ValueError, match=r"R must be \(N, 3\) or, with replicas=K, \(K, N, 3\)"):
        simulate.run(*args, starts, ethanol["masses"], PROTOCOL, steps=2, record_every=1)
    with pytest.raises(ValueError, match="field_fn is one protocol or a list of 3"):
        simulate.run(*args, ethanol["R"], ethanol["masses"], [PROTOCOL] * 2, steps=2, record_every=1,
                     replicas=3)
    with pytest.raises(ValueError, match="replicas must be >= 1"):
        simulate.run(*args, ethanol["R"], ethanol["masses"], PROTOCOL, steps=2, record_every=1, replicas=0)
