"""simulations/lo_to_splitting.py: the rigid-ion model (Ewald, Born-Mayer fit), the LO-TO
splitting against the rigid-ion formula, and the script end to end."""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.build import bulk

pytest.importorskip("phonopy")

MADELUNG = 1.747565  # rock salt, per ion pair, in units of q^2 k_e / r0
K_E = 14.399645  # eV·Å
THZ = 15.633302  # sqrt(eV / (Å^2 amu)) in THz


@pytest.fixture(scope="module")
def lo():
    path = pathlib.Path(__file__).parents[1] / "simulations" / "lo_to_splitting.py"
    spec = importlib.util.spec_from_file_location("lo_to_splitting", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rocksalt_cube(crystal, a, n):
    """n x n x n conventional cells: positions (Å), charges (e), cube side (Å)."""
    atoms = bulk(crystal, "rocksalt", a=a, cubic=True).repeat(n)
    sign = np.where(atoms.numbers == atoms.numbers[0], 1.0, -1.0)
    return jnp.asarray(atoms.positions), sign, n * a


def model(lo, crystal, a, n, A=None):
    """(energy_fn(R), R, A) of the rigid-ion `crystal` at lattice constant a; A fitted if None."""
    spec = lo.CRYSTALS[crystal]
    R, sign, side = rocksalt_cube(crystal, a, n)
    neighbor_fn, coulomb_fn, repulsion_fn = lo.rigid_ion_energy(side, spec["charge"] * sign, spec["rho"], a / 2)
    nbrs = neighbor_fn.allocate(R)
    if A is None:
        A = float(lo.fit_repulsion(coulomb_fn, repulsion_fn, R, nbrs, spec["rho"]))
    return jax.jit(lambda R: coulomb_fn(R, nbrs.update(R)) + A * repulsion_fn(R, nbrs.update(R))), R, A


@pytest.mark.parametrize("crystal, a, n", [("NaCl", 5.64, 2), ("MgO", 4.21, 3)])
def test_ewald_reproduces_madelung_constant(lo, crystal, a, n):
    q = lo.CRYSTALS[crystal]["charge"]
    R, sign, side = rocksalt_cube(crystal, a, n)
    neighbor_fn, coulomb_fn, _ = lo.rigid_ion_energy(side, q * sign, 0.3, a / 2)
    per_pair = coulomb_fn(R, neighbor_fn.allocate(R)) / (len(R) / 2)
    np.testing.assert_allclose(per_pair, -MADELUNG * q ** 2 * K_E / (a / 2), rtol=1e-5)


def test_fitted_crystal_is_in_equilibrium(lo):
    a, n = 5.64, 2
    energy_fn, R, A = model(lo, "NaCl", a, n)
    # Kittel's table: z lambda = 1.05e-8 erg for NaCl with rho = 0.321 Å, z = 6 neighbours
    np.testing.assert_allclose(6 * A, 1.05e-8 * 6.241509e11, rtol=0.03)
    forces = -jax.grad(energy_fn)(R)
    assert jnp.abs(forces).max() < 1e-9
    u = jnp.zeros_like(R).at[0, 0].set(0.02)
    assert -jax.grad(energy_fn)(R + u)[0, 0] < -0.01  # restoring
    # zero pressure: -dE/dV from the energies of freshly built crystals at a (1 +- h)
    def pressure(A, h=1e-4):
        energies = [fn(R) for fn, R, _ in (model(lo, "NaCl", a * (1 + s * h), n, A) for s in (-1, 1))]
        return -(energies[1] - energies[0]) / ((n * a) ** 3 * ((1 + h) ** 3 - (1 - h) ** 3))

    scale = abs(energy_fn(R)) / (3 * (n * a) ** 3)  # |E| / 3V, eV/Å^3
    assert abs(pressure(A)) < 1e-6 * scale
    assert abs(pressure(1.05 * A)) > 1e-3 * scale  # and not for another A


@pytest.fixture(scope="module")
def nacl_phonopy(lo):
    return lo.rigid_ion_phonopy("NaCl", supercell=2)


def test_lo_to_splitting_matches_rigid_ion_formula(lo, nacl_phonopy):
    ph, A = nacl_phonopy
    z, eps = 1.1, 2.4
    born, epsilon = np.array([z * np.eye(3), -z * np.eye(3)]), eps * np.eye(3)
    m = ph.primitive.masses
    mu = m[0] * m[1] / (m[0] + m[1])
    splitting = THZ ** 2 * 4 * np.pi * K_E * z ** 2 / (ph.primitive.volume * eps * mu)
    for direction in ([1.0, 0.0, 0.0], [1.0, 1.0, 1.0]):  # LO is isotropic in a cubic crystal
        without, with_nac = lo.gamma_frequencies(ph, born, epsilon, direction)
        assert np.abs(without[:3]).max() < 1e-3 and np.abs(with_nac[:3]).max() < 1e-3
        to = without[3]
        np.testing.assert_allclose(without[3:], to, rtol=1e-8)  # no NAC: triply degenerate
        np.testing.assert_allclose(with_nac[3:5], to, rtol=1e-8)  # transverse: unchanged by NAC
        np.testing.assert_allclose(with_nac[5] ** 2 - to ** 2, splitting, rtol=1e-3)
    # the TO from phonopy's force constants is the frozen-phonon curvature of the jax energy:
    # shifting every cation by u along x costs 1/2 N_cations mu omega_TO^2 u^2
    spec = lo.CRYSTALS["NaCl"]
    charges = np.where(np.array(ph.supercell.symbols) == "Na", 1.0, -1.0)
    neighbor_fn, coulomb_fn, repulsion_fn = lo.rigid_ion_energy(
        ph.supercell.cell[0, 0], charges, spec["rho"], spec["a"] / 2)
    R = jnp.asarray(ph.supercell.positions)
    nbrs = neighbor_fn.allocate(R)
    pattern = jnp.asarray(np.outer(charges > 0, [1.0, 0.0, 0.0]))
    curvature = jax.hessian(lambda u: coulomb_fn(R + u * pattern, nbrs)
                            + A * repulsion_fn(R + u * pattern, nbrs))(0.0)
    np.testing.assert_allclose(THZ * np.sqrt(curvature / (np.sum(charges > 0) * mu)), to, rtol=1e-3)


def test_reference_entry_is_the_fcc_rock_salt(lo, tmp_path):
    import ase.io
    atoms = lo.primitive_cell("NaCl")
    cscl = bulk("NaCl", "cesiumchloride", a=3.45)  # same formula, 90° cell: not it
    cscl.arrays["becs"] = np.array([1.2 * np.eye(3), -1.2 * np.eye(3)]).reshape(2, 9)
    cscl.info["eps"] = (2.8 * np.eye(3)).ravel()
    fcc = bulk("NaCl", "rocksalt", a=5.60)[[1, 0]]  # anion first in the file
    fcc.arrays["becs"] = np.array([-1.09 * np.eye(3), 1.09 * np.eye(3)]).reshape(2, 9)
    fcc.info["eps"] = (2.57 * np.eye(3)).ravel()
    path = tmp_path / "data.xyz"
    ase.io.write(path, [cscl, fcc], format="extxyz")
    born, eps = lo.reference_born_eps(str(path), atoms)
    np.testing.assert_allclose(born[:, 0, 0], [1.09, -1.09])  # cation first, as in `atoms`
    np.testing.assert_allclose(eps, 2.57 * np.eye(3))
    assert lo.reference_born_eps(str(tmp_path / "absent.xyz"), atoms) is None


def test_main_runs_with_given_born_and_eps(lo, tmp_path):
    out = tmp_path / "bands" / "nacl.png"
    result = lo.main(["--born", "1.1", "--eps", "2.4", "--supercell", "2", "--band-points", "11",
                      "--out", str(out)])
    assert out.exists() and out.stat().st_size > 10_000
    assert result["with_nac"][5] > 1.5 * result["without_nac"][5] > 0
    np.testing.assert_allclose(result["with_nac"][5], result["lo_formula"], rtol=1e-6)
    with pytest.raises(SystemExit):
        lo.main(["--born", "1.1"])


def test_main_with_the_shipped_tensor_model(lo, tmp_path):
    """The default path: Z* and eps_inf of NaCl from becs-eps (DFT: 1.09 e, 2.57)."""
    result = lo.main(["--supercell", "2", "--band-points", "11", "--out", str(tmp_path / "nacl.png")])
    assert 0.95 < result["born"][0, 0, 0] < 1.25 and 2.1 < result["eps"][0, 0] < 3.1
    np.testing.assert_allclose(result["born"].sum(0), 0.0, atol=1e-6)
    np.testing.assert_allclose(result["with_nac"][5], result["lo_formula"], rtol=1e-6)
