"""The ASE calculator against finite differences, with ASE's MD and vibrations."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.md.verlet import VelocityVerlet
from ase.units import fs
from ase.vibrations import Vibrations

import jaxmd_efield as jef
from conftest import TINY, counting_compilations

FIELD = np.array([0.1, -0.05, 0.2])


@pytest.fixture(scope="module")
def model(ethanol):
    return jef.Model(TINY, ethanol["params"])


@pytest.fixture(scope="module")
def calculated(model):
    atoms = molecule("CH3CH2OH")
    atoms.calc = jef.EFieldCalculator(model, field=FIELD)
    return atoms


def test_properties_against_finite_differences(calculated):
    atoms, calc = calculated, calculated.calc
    props = {p: calc.get_property(p, atoms) for p in calc.implemented_properties}
    assert props["born_effective_charges"].shape == (9, 3, 3)
    h = 1e-4

    probe = atoms.copy()
    probe.calc = jef.EFieldCalculator(calc.model)  # one calculator: compiled once, reused

    def at(positions=None, field=None, prop="energy"):
        probe.positions = atoms.positions if positions is None else positions
        probe.calc.set(field=FIELD if field is None else field)
        return probe.calc.get_property(prop, probe)

    for i, b in [(0, 0), (4, 2)]:
        step = np.zeros((9, 3))
        step[i, b] = h
        fd = -(at(atoms.positions + step) - at(atoms.positions - step)) / (2 * h)
        np.testing.assert_allclose(props["forces"][i, b], fd, rtol=1e-6, atol=1e-8)
        dmu = (at(atoms.positions + step, prop="dipole") - at(atoms.positions - step, prop="dipole")) / (2 * h)
        np.testing.assert_allclose(props["born_effective_charges"][i, :, b], dmu, rtol=1e-5, atol=1e-8)
    for a in range(3):
        e = np.eye(3)[a] * h
        np.testing.assert_allclose(props["dipole"][a], -(at(field=FIELD + e) - at(field=FIELD - e)) / (2 * h),
                                   rtol=1e-6, atol=1e-8)
        dmu = (at(field=FIELD + e, prop="dipole") - at(field=FIELD - e, prop="dipole")) / (2 * h)
        np.testing.assert_allclose(props["polarizability"][:, a], dmu, rtol=1e-5, atol=1e-8)


def test_field_setting_caching_and_ase_drivers(calculated):
    atoms = calculated.copy()
    atoms.calc = calc = jef.EFieldCalculator(calculated.calc.model, field=FIELD)
    e_field = atoms.get_potential_energy()
    calc.set(field=(0.0, 0.0, 0.0))
    assert atoms.get_potential_energy() != e_field
    atoms.positions[0] += 0.01
    atoms.get_forces()
    with counting_compilations() as compiled:
        VelocityVerlet(atoms, 0.5 * fs).run(5)
    assert compiled[0] == 0  # compiled once, reused for the whole run
    vib = Vibrations(atoms, name=str(calculated.calc.model.config.r_cut) + "_vib_test", delta=0.01)
    try:
        vib.run()
        assert len(vib.get_energies()) == 27 and np.all(np.isfinite(np.abs(vib.get_energies())))
    finally:
        vib.clean()
    with pytest.raises(ValueError, match="3-vector"):
        calc.set(field=(1.0, 2.0))
        atoms.get_potential_energy()


def test_periodic_cell_and_errors(model):
    crystal = Atoms("CO", scaled_positions=[[0.1, 0.2, 0.05], [0.55, 0.5, 0.6]],
                    cell=[[3.0, 0, 0], [0.8, 2.9, 0], [0.5, 0.6, 3.1]], pbc=True)
    crystal.calc = jef.EFieldCalculator(model, field=FIELD)
    energy = crystal.get_potential_energy()
    big = crystal.repeat((2, 1, 1))
    big.calc = jef.EFieldCalculator(model, field=FIELD)
    np.testing.assert_allclose(big.get_potential_energy(), 2 * energy, rtol=1e-10)
    np.testing.assert_allclose(crystal.get_forces().sum(0), 0.0, atol=1e-10)
    slab = crystal.copy()
    slab.pbc = (True, True, False)
    slab.calc = jef.EFieldCalculator(model)
    with pytest.raises(ValueError, match="periodic in some directions"):
        slab.get_potential_energy()
    chlorine = Atoms("Cl2", positions=[[0, 0, 0], [0, 0, 2.0]])
    chlorine.calc = jef.EFieldCalculator(model)
    with pytest.raises(ValueError, match="not in the model's species table"):
        chlorine.get_potential_energy()


def test_a_large_move_changes_the_edges_and_nothing_is_lost(calculated):
    """A calculator that saw a stretched molecule (few edges, a small padded size) must take
    every pair when the atoms come back together, not return NaN or drop pairs."""
    atoms = calculated.copy()
    atoms.calc = jef.EFieldCalculator(calculated.calc.model, field=FIELD)
    atoms.positions = calculated.positions * 3.0
    atoms.get_potential_energy()
    atoms.positions = calculated.positions
    np.testing.assert_allclose(atoms.get_forces(), calculated.get_forces(), atol=1e-10)
    np.testing.assert_allclose(atoms.get_potential_energy(), calculated.get_potential_energy(), rtol=1e-12)
