"""The non-analytic correction against phonopy's, and the BORN writer."""

import numpy as np
import pytest
from ase import Atoms

from jaxmd_efield import phonons

phonopy = pytest.importorskip("phonopy")


def triclinic_pair():
    """A two-atom triclinic cell with no symmetry (so phonopy leaves the tensors as given), a
    general non-symmetric Born charge obeying the acoustic sum rule and an anisotropic eps."""
    atoms = Atoms("NaCl", scaled_positions=[[0, 0, 0], [0.37, 0.61, 0.45]],
                  cell=[[4.1, 0, 0], [0.7, 3.9, 0], [0.4, -0.5, 4.3]], pbc=True)
    rng = np.random.default_rng(0)
    z = np.eye(3) * 1.1 + 0.2 * rng.normal(size=(3, 3))
    eps = np.eye(3) * 2.4 + np.array([[0.1, 0.05, 0.0], [0.05, -0.1, 0.02], [0.0, 0.02, 0.3]])
    return atoms, np.array([z, -z]), eps


def test_nac_term_matches_phonopy():
    from phonopy.structure.atoms import PhonopyAtoms
    atoms, born, eps = triclinic_pair()
    cell = PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=atoms.cell.array,
                        scaled_positions=atoms.get_scaled_positions())
    ph = phonopy.Phonopy(cell, supercell_matrix=np.eye(3, dtype=int))
    rng = np.random.default_rng(1)
    fc = rng.normal(size=(2, 2, 3, 3))
    fc = fc + fc.transpose(1, 0, 3, 2)
    for i in range(2):
        fc[i, i] -= fc[i].sum(axis=0)
    ph.force_constants = fc
    q_reduced = np.array([0.3, -0.5, 0.8])
    # phonopy's q_direction is reduced in the reciprocal basis of *its* primitive cell
    q_cartesian = np.linalg.inv(ph.primitive.cell) @ q_reduced
    ours = phonons.nac_dynamical_matrix(q_cartesian, born, eps, ph.primitive.masses, ph.primitive.volume)
    for method in ("gonze", "wang"):
        ph.nac_params = phonons.phonopy_nac_params(born, eps, method=method)
        ph.dynamical_matrix.run(np.zeros(3), q_direction=q_reduced)
        with_nac = ph.dynamical_matrix.dynamical_matrix.real.copy()
        ph.nac_params = None
        ph.dynamical_matrix.run(np.zeros(3))
        np.testing.assert_allclose(with_nac - ph.dynamical_matrix.dynamical_matrix.real, ours,
                                   atol=1e-12 * np.abs(ours).max())
    # the index order matters: contracting q with the displacement index instead disagrees
    swapped = phonons.nac_dynamical_matrix(q_cartesian, born.transpose(0, 2, 1), eps,
                                           ph.primitive.masses, ph.primitive.volume)
    assert np.abs(swapped - ours).max() > 0.1 * np.abs(ours).max()


def test_born_file_round_trip_and_errors(tmp_path):
    from phonopy.file_IO import parse_BORN
    from phonopy.structure.atoms import PhonopyAtoms
    atoms, born, eps = triclinic_pair()
    path = tmp_path / "BORN"
    phonons.write_born_file(path, atoms, born, eps)
    cell = PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=atoms.cell.array,
                        scaled_positions=atoms.get_scaled_positions())
    read = parse_BORN(cell, filename=str(path))
    np.testing.assert_allclose(read["factor"], phonons.COULOMB_EV_A)
    np.testing.assert_allclose(read["dielectric"], eps, atol=1e-6)
    np.testing.assert_allclose(read["born"], born, atol=1e-6)
    with pytest.raises(ValueError, match="gonze"):
        phonons.phonopy_nac_params(born, eps, method="Gonze")
    with pytest.raises(ValueError, match="nonzero 3-vector"):
        phonons.nac_dynamical_matrix([0, 0, 0], born, eps, [23.0, 35.5], 70.0)
    with pytest.raises(ValueError, match="need born"):
        phonons.nac_dynamical_matrix([1, 0, 0], born[:1], eps, [23.0, 35.5], 70.0)
