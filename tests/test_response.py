"""Symmetry and finite-difference tests of the energy model and its response observables."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax_md import space

import jaxmd_efield as jef
from conftest import TINY, random_orthogonal

FIELD = jnp.array([0.12, -0.25, 0.07])  # V/Å


@pytest.mark.parametrize("proper", [True, False], ids=["rotation", "reflection"])
def test_equivariance_under_joint_transformation(ethanol, ethanol_response, proper):
    R, Q = ethanol["R"], random_orthogonal(0, proper)
    out = ethanol_response(R, FIELD)
    rot = ethanol_response(R @ Q.T, Q @ FIELD)
    expected = dict(energy=out["energy"], forces=out["forces"] @ Q.T, dipole=Q @ out["dipole"],
                    polarizability=Q @ out["polarizability"] @ Q.T,
                    born_charges=jnp.einsum("ac,icd,bd->iab", Q, out["born_charges"], Q))
    for key, value in expected.items():
        err = float(jnp.abs(rot[key] - value).max() / jnp.abs(value).max())
        print(f"{'rotation' if proper else 'reflection'} {key}: max relative deviation {err:.1e}")
        assert err < 1e-10, key


def test_field_really_enters(ethanol, ethanol_response):
    """Rotating only the positions in a nonzero field changes E; mu is nonzero and F dependent;
    the Born charges depend on the field too."""
    R, Q = ethanol["R"], random_orthogonal(3, True)
    assert abs(ethanol_response(R @ Q.T, FIELD)["energy"] - ethanol_response(R, FIELD)["energy"]) > 1e-4
    zero, on = ethanol_response(R, jnp.zeros(3)), ethanol_response(R, FIELD)
    assert jnp.linalg.norm(zero["dipole"]) > 1e-3
    assert jnp.linalg.norm(on["dipole"] - zero["dipole"]) > 1e-4
    assert jnp.linalg.norm(zero["polarizability"]) > 1e-3
    assert jnp.abs(on["born_charges"] - zero["born_charges"]).max() > 1e-5


def test_translation_invariance_and_sum_rules(ethanol, ethanol_response):
    R = ethanol["R"]
    out = ethanol_response(R, FIELD)
    moved = ethanol_response(R + jnp.array([1.3, -0.7, 2.1]), FIELD)
    for key in out:
        np.testing.assert_allclose(moved[key], out[key], atol=1e-10, err_msg=key)
    np.testing.assert_allclose(out["forces"].sum(0), 0.0, atol=1e-10)
    np.testing.assert_allclose(out["born_charges"].sum(0), 0.0, atol=1e-10)  # acoustic sum rule


def test_permutation_invariance(ethanol, ethanol_response):
    perm = np.random.default_rng(0).permutation(len(ethanol["numbers"]))
    displacement, _ = space.free()
    neighbor_fn, _, energy_fn = jef.efield_nequip_neighbor_list(
        displacement, 10.0, ethanol["numbers"][perm], TINY, disable_cell_list=True)
    R = ethanol["R"][perm]
    response = jax.jit(jef.response.field_response(functools.partial(energy_fn, ethanol["params"])))
    permuted = response(R, field=FIELD, neighbor=neighbor_fn.allocate(R))
    out = ethanol_response(ethanol["R"], FIELD)
    for key in ("energy", "dipole", "polarizability"):
        np.testing.assert_allclose(permuted[key], out[key], atol=1e-10, err_msg=key)
    np.testing.assert_allclose(permuted["forces"], out["forces"][perm], atol=1e-10)
    np.testing.assert_allclose(permuted["born_charges"], out["born_charges"][perm], atol=1e-10)


def central_difference(fn, x, h):
    """d fn / dx by central differences; result shape x.shape + fn(x).shape."""
    x = np.asarray(x, dtype=np.float64)
    rows = []
    for k in range(x.size):
        step = np.zeros(x.size)
        step[k] = h
        step = step.reshape(x.shape)
        rows.append((np.asarray(fn(x + step)) - np.asarray(fn(x - step))) / (2 * h))
    return np.stack(rows).reshape(x.shape + np.shape(rows[0]))


def test_observables_against_finite_differences(ethanol, ethanol_response):
    R, h = np.asarray(ethanol["R"]), 1e-4
    energy = jax.jit(lambda R_, F_: ethanol["energy"](R_, field=F_, neighbor=ethanol["nbrs"].update(R_)))
    out = ethanol_response(R, FIELD)

    forces_fd = -central_difference(lambda x: energy(x, FIELD), R, h)
    dipole_fd = -central_difference(lambda f: energy(R, f), FIELD, h)
    polar_fd = central_difference(lambda f: ethanol_response(R, f)["dipole"], FIELD, h)  # [b, a]
    born_dmu_dR = central_difference(lambda x: ethanol_response(x, FIELD)["dipole"], R, h)  # [i, b, a]
    born_df_dF = central_difference(lambda f: ethanol_response(R, f)["forces"], FIELD, h)  # [a, i, b]

    def check(autodiff, fd, name):
        err = np.abs(np.asarray(autodiff) - fd).max() / np.abs(fd).max()
        print(f"{name}: autodiff vs central differences (h = {h}), max relative error {err:.1e}")
        assert err < 1e-6, f"{name}: relative error {err:.1e}"

    check(out["forces"], forces_fd, "forces")
    check(out["dipole"], dipole_fd, "dipole")
    check(out["polarizability"], polar_fd.T, "polarizability")
    check(out["born_charges"], np.transpose(born_dmu_dR, (0, 2, 1)), "Born charges as dmu/dR")
    check(out["born_charges"], np.transpose(born_df_dF, (1, 0, 2)), "Born charges as dF/dfield")


def test_separate_observables_match_combined(ethanol, ethanol_response):
    R, E, nbrs = ethanol["R"], ethanol["energy"], ethanol["nbrs"]
    out = ethanol_response(R, FIELD)
    separate = {
        "forces": jef.response.forces(E), "dipole": jef.response.dipole(E),
        "polarizability": jef.response.polarizability(E), "born_charges": jef.response.born_charges(E),
    }
    for key, fn in separate.items():
        np.testing.assert_allclose(jax.jit(fn)(R, field=FIELD, neighbor=nbrs), out[key], atol=1e-10)
    energy, forces, dipole = jax.jit(jef.response.energy_forces_dipole(E))(R, field=FIELD, neighbor=nbrs)
    np.testing.assert_allclose(forces, out["forces"], atol=1e-12)
    np.testing.assert_allclose(dipole, out["dipole"], atol=1e-12)
    np.testing.assert_allclose(energy, out["energy"], atol=1e-12)
    without_born = jax.jit(jef.response.field_response(E, born_charges=False))(R, field=FIELD, neighbor=nbrs)
    assert set(without_born) == set(out) - {"born_charges"}
    for key, value in without_born.items():
        np.testing.assert_allclose(value, out[key], atol=1e-12, err_msg=key)
    # field=None means zero field
    np.testing.assert_allclose(jax.jit(jef.response.dipole(E))(R, neighbor=nbrs),
                               ethanol_response(R, jnp.zeros(3))["dipole"], atol=1e-12)


def test_field_tangents_batched_or_one_by_one(ethanol, monkeypatch):
    """The three field tangents vmapped (`jax.jacfwd`) or run one after another on one
    linearization give the same numbers, by both methods and with the Born charges; the default
    runs them one by one for the Born charges and below BATCHED_TANGENTS_MIN_ATOMS atoms."""
    R, E, nbrs = ethanol["R"], ethanol["energy"], ethanol["nbrs"]
    for born_charges, method in ((True, "forward"), (False, "forward"), (False, "lagrangian")):
        batched, one_by_one = (jax.jit(jef.response.field_response(
            E, born_charges, method, batched_tangents=b))(R, field=FIELD, neighbor=nbrs) for b in (True, False))
        for key in batched:
            np.testing.assert_allclose(one_by_one[key], batched[key], rtol=1e-12, atol=1e-14,
                                       err_msg=f"{method}, born_charges={born_charges}: {key}")
    asked = []
    real = jef.response.field_jacobian
    monkeypatch.setattr(jef.response, "field_jacobian",
                        lambda fn, field, batched=True: asked.append(batched) or real(fn, field, batched))
    jax.jit(jef.response.field_response(E))(R, field=FIELD, neighbor=nbrs)
    jax.jit(jef.response.field_response(E, born_charges=False))(R, field=FIELD, neighbor=nbrs)
    assert asked == [False, False]
    many = jnp.zeros((jef.response.BATCHED_TANGENTS_MIN_ATOMS, 3))
    assert jef.response._batched(many, None, born_charges=False)
    assert not jef.response._batched(many, None, born_charges=True)


def test_field_acts_inside_the_message_passing(ethanol):
    """The readout's explicit terms (-mu_i.F - 1/2 F.alpha_i.F) are at most quadratic in F, so if
    the field did not enter the interaction blocks, d3E/dF3 would be exactly zero and alpha
    field independent. The node-level coupling h_i (x) F inside every block makes both nonzero."""
    energy = lambda F: ethanol["energy"](ethanol["R"], field=F, neighbor=ethanol["nbrs"])  # noqa: E731
    third = jax.jit(jax.jacfwd(jax.jacfwd(jax.grad(energy))))(FIELD)
    second = jax.jit(jax.hessian(energy))(FIELD)
    ratio = float(jnp.abs(third).max() / jnp.abs(second).max())
    print(f"max |d3E/dF3| / max |d2E/dF2| = {ratio:.2e} Å/V")
    assert ratio > 1e-3
    np.testing.assert_allclose(third, jnp.transpose(third, (1, 0, 2)), atol=1e-12)  # symmetric
