"""Ensembles in simulate.run: K replicas in one jitted program, each what a single run with its
own key, start, momenta and field would give."""

import jax
import jax.numpy as jnp
import numpy as np
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
