"""The GFN2-xTB reference in a field: unit conversions, the tblite field shim, and the
reference's own consistency (mu = -dE/dF, f = -dE/dR) by finite differences."""

import numpy as np
import pytest
from ase.build import molecule

from jaxmd_efield import units
from jaxmd_efield.reference import XTBFieldCalculator, xtb_field_derivatives, xtb_in_field

pytest.importorskip("tblite")
FIELD = np.array([0.1, -0.2, 0.15])  # V/Å


def test_atomic_unit_conversions():
    np.testing.assert_allclose(units.AU_FIELD, 51.422, rtol=1e-4)
    np.testing.assert_allclose(units.AU_FORCE, 51.422, rtol=1e-4)  # Hartree/Bohr in eV/Å
    np.testing.assert_allclose(units.AU_DIPOLE / 0.2081943, 2.541746, rtol=1e-5)  # e Bohr in Debye
    # alpha in a.u. times a.u. of field is a dipole in a.u.: e Bohr^2/Hartree * V/Å = e Å
    np.testing.assert_allclose(units.AU_POLARIZABILITY * units.AU_FIELD, units.AU_DIPOLE, rtol=1e-12)
    np.testing.assert_allclose(units.TIME_UNIT_FS, 10.1805, rtol=1e-5)


def test_field_shim_and_finite_differences():
    mol = molecule("CH3CH2OH")
    numbers, R = mol.numbers, mol.positions
    ref = xtb_in_field(numbers, R, FIELD)
    assert abs(ref["energy"] - xtb_in_field(numbers, R)["energy"]) > 1e-3  # the field is applied
    h = 1e-3  # V/Å
    for a in range(3):
        step = np.zeros(3)
        step[a] = h
        dE_dF = (xtb_in_field(numbers, R, FIELD + step)["energy"] -
                 xtb_in_field(numbers, R, FIELD - step)["energy"]) / (2 * h)
        np.testing.assert_allclose(-dE_dF, ref["dipole"][a], atol=1e-6)  # measured 2e-7
    h = 3e-4  # Å
    for i, b in [(0, 0), (2, 1), (8, 2)]:
        step = np.zeros_like(R)
        step[i, b] = h
        dE_dR = (xtb_in_field(numbers, R + step, FIELD)["energy"] -
                 xtb_in_field(numbers, R - step, FIELD)["energy"]) / (2 * h)
        np.testing.assert_allclose(-dE_dR, ref["forces"][i, b], atol=1e-5)  # measured 3e-6


def test_field_derivatives_and_ase_calculator():
    mol = molecule("CH3CH2OH")
    d = xtb_field_derivatives(mol.numbers, mol.positions, FIELD)
    assert np.all(np.linalg.eigvalsh(d["polarizability"]) > 0)
    np.testing.assert_allclose(d["born_charges"].sum(0), 0.0, atol=1e-3)  # acoustic sum rule
    # Born charges as d mu / dR agree with d f / dF
    i, b, h = 1, 2, 1e-3
    step = np.zeros_like(mol.positions)
    step[i, b] = h
    dmu_dR = (xtb_in_field(mol.numbers, mol.positions + step, FIELD)["dipole"] -
              xtb_in_field(mol.numbers, mol.positions - step, FIELD)["dipole"]) / (2 * h)
    np.testing.assert_allclose(d["born_charges"][i, :, b], dmu_dR, atol=2e-3)

    mol.calc = XTBFieldCalculator(field=FIELD)
    np.testing.assert_allclose(mol.get_dipole_moment(), xtb_in_field(mol.numbers, mol.positions,
                                                                      FIELD)["dipole"])
    with pytest.raises(ValueError, match="NaN"):
        xtb_in_field(mol.numbers, mol.positions, [np.nan, 0, 0])
