"""The polarizability by the edge Lagrangian (`response.edge_lagrangian`) against forward-over-
reverse differentiation (`field_response(..., method="forward")`, pinned by central differences
in test_response.py): the same numbers and the same derivatives, on molecules and periodic cells,
with chunked edge sums, in float64 and float32."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax_md import space

import jaxmd_efield as jef
from conftest import TINY

FIELD = jnp.array([0.12, -0.25, 0.07])  # V/Å
# three blocks (two with field-dependent edge inputs) and edge sums in chunks of 16 edges
DEEP_CHUNKED = dataclasses.replace(TINY, num_layers=3, edge_chunk=16)


def both_methods(energy, R, nbrs, dtype=jnp.float64):
    out = {}
    for method in ("forward", "lagrangian"):
        fn = jax.jit(jef.response.field_response(energy, born_charges=False, method=method))
        out[method] = fn(jnp.asarray(R, dtype), field=FIELD.astype(dtype), neighbor=nbrs)
    return out["forward"], out["lagrangian"]


def relative(a, b):
    return float(jnp.abs(a - b).max() / jnp.abs(b).max())


@pytest.fixture(scope="module")
def water_cell():
    """10 water molecules in a periodic 6.7 Å cube (30 atoms: the default method is the
    Lagrangian), r_cut 3 Å, a tiny random float64 model."""
    rng = np.random.default_rng(0)
    side, oh = 6.7, 0.96
    centres = (np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3)[:10] + 0.5) * side / 3
    positions = []
    for c in centres:
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        h = oh * np.array([[np.sin(0.91), 0, np.cos(0.91)], [-np.sin(0.91), 0, np.cos(0.91)]]) @ q.T
        positions += [c, c + h[0], c + h[1]]
    R = jnp.asarray(np.mod(positions, side))
    numbers = np.tile([8, 1, 1], 10)
    config = dataclasses.replace(TINY, r_cut=3.0, edge_chunk=64)
    displacement, _ = space.periodic(side)
    neighbor_fn, init_fn, energy_fn = jef.efield_nequip_neighbor_list(displacement, side, numbers, config)
    nbrs = neighbor_fn.allocate(R)
    params = jax.jit(init_fn)(jax.random.PRNGKey(3), R, nbrs)
    assert int(jnp.sum(nbrs.idx[0] < len(numbers))) > config.edge_chunk  # chunked sums
    return dict(R=R, nbrs=nbrs, energy=functools.partial(energy_fn, params))


def test_lagrangian_equals_forward_over_reverse_on_ethanol(ethanol):
    for config in (TINY, DEEP_CHUNKED):
        displacement, _ = space.free()
        neighbor_fn, init_fn, energy_fn = jef.efield_nequip_neighbor_list(
            displacement, 10.0, ethanol["numbers"], config, disable_cell_list=True)
        nbrs = neighbor_fn.allocate(ethanol["R"])
        params = jax.jit(init_fn)(jax.random.PRNGKey(2), ethanol["R"], nbrs)
        forward, lagrangian = both_methods(functools.partial(energy_fn, params), ethanol["R"], nbrs)
        assert set(forward) == set(lagrangian)
        for key in forward:
            err = relative(lagrangian[key], forward[key])
            print(f"{config.num_layers} blocks, edge_chunk {config.edge_chunk}: {key} {err:.1e}")
            assert err < 1e-12, key


def test_lagrangian_is_the_default_for_a_periodic_cell_and_equals_forward(water_cell, monkeypatch):
    forward, lagrangian = both_methods(water_cell["energy"], water_cell["R"], water_cell["nbrs"])
    for key in forward:
        assert relative(lagrangian[key], forward[key]) < 1e-12, key
    assert jnp.abs(forward["polarizability"]).max() > 1e-3
    calls = []
    real = jef.response.edge_lagrangian
    monkeypatch.setattr(jef.response, "edge_lagrangian", lambda *a: calls.append(a[3:]) or real(*a))
    default = jef.response.field_response(water_cell["energy"], born_charges=False)(
        water_cell["R"], field=FIELD, neighbor=water_cell["nbrs"])
    assert calls == [(False,)], "30 atoms: the default is the Lagrangian, field tangents one by one"
    np.testing.assert_allclose(default["polarizability"], lagrangian["polarizability"], rtol=1e-12)
    calls.clear()
    # through a wrapper that is not a functools.partial, the forward method (the generic path)
    jef.response.field_response(lambda R, **kw: water_cell["energy"](R, **kw), born_charges=False)(
        water_cell["R"], field=FIELD, neighbor=water_cell["nbrs"])
    assert not calls


def test_lagrangian_polarizability_has_the_right_derivatives(ethanol):
    """d alpha / dR (the Raman tensor) through the Lagrangian equals that of forward-over-reverse."""
    R, nbrs = ethanol["R"], ethanol["nbrs"]

    def alpha_fn(method):
        fn = jef.response.field_response(ethanol["energy"], born_charges=False, method=method)
        return jax.jit(jax.jacfwd(lambda R_: fn(R_, field=FIELD, neighbor=nbrs)["polarizability"]))

    forward, lagrangian = alpha_fn("forward")(R), alpha_fn("lagrangian")(R)
    assert relative(lagrangian, forward) < 1e-10


def test_lagrangian_in_float32(water_cell):
    nbrs = jax.tree_util.tree_map(
        lambda x: x.astype(jnp.float32) if jnp.issubdtype(x.dtype, jnp.floating) else x, water_cell["nbrs"])
    energy = water_cell["energy"]
    params32 = jax.tree_util.tree_map(lambda x: x.astype(jnp.float32), energy.args[0])
    energy32 = functools.partial(energy.func, params32)
    forward, lagrangian = both_methods(energy32, water_cell["R"], nbrs, jnp.float32)
    assert lagrangian["polarizability"].dtype == jnp.float32
    for key in forward:
        err = relative(lagrangian[key], forward[key])
        print(f"float32 {key}: Lagrangian vs forward-over-reverse {err:.1e}")
        assert err < 1e-5, key


def test_bad_method_is_refused(ethanol):
    with pytest.raises(ValueError, match="method must be"):
        jef.response.field_response(ethanol["energy"], born_charges=False, method="fast")
    with pytest.raises(ValueError, match="born_charges=False"):
        jef.response.field_response(ethanol["energy"], method="lagrangian")
    with pytest.raises(ValueError, match="with_edge_terms"):
        jef.response.field_response(lambda R, **kw: ethanol["energy"](R, **kw), born_charges=False,
                                    method="lagrangian")
