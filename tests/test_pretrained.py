"""The shipped ethanol-gfn2 model against fresh GFN2-xTB points (not from its data set)."""

import numpy as np
import pytest
from ase.build import molecule

import jaxmd_efield as jef
from jaxmd_efield.reference import xtb_field_derivatives, xtb_in_field


def test_shipped_model_matches_fresh_reference_points():
    model = jef.load_pretrained("ethanol-gfn2")
    assert model.config.species == (1, 6, 8) and "test_metrics" in model.metadata
    rng = np.random.default_rng(123)
    atoms = molecule("CH3CH2OH")
    atoms.calc = calc = jef.EFieldCalculator(model)
    errors = {k: [] for k in ("energy", "forces", "dipole", "polarizability")}
    reference_energies, model_energies = [], []
    base = atoms.positions.copy()
    for _ in range(8):
        direction = rng.normal(size=3)
        field = direction / np.linalg.norm(direction) * rng.uniform(0.0, 0.5)
        atoms.positions = base + rng.normal(scale=0.04, size=base.shape)
        calc.set(field=field)
        ref = xtb_in_field(atoms.numbers, atoms.positions, field)
        ref.update(xtb_field_derivatives(atoms.numbers, atoms.positions, field))
        reference_energies.append(ref["energy"])
        model_energies.append(atoms.get_potential_energy())
        errors["forces"].append(np.abs(atoms.get_forces() - ref["forces"]).mean())
        errors["dipole"].append(np.abs(calc.get_property("dipole", atoms) - ref["dipole"]).mean())
        pol = calc.get_property("polarizability", atoms)
        errors["polarizability"].append(np.abs(pol - ref["polarizability"]).mean() /
                                        np.trace(ref["polarizability"]) * 3)
    energy_error = np.asarray(model_energies) - np.asarray(reference_energies)
    print({k: float(np.mean(v)) for k, v in errors.items() if v},
          "energy spread (meV/atom)", 1e3 * energy_error.std() / 9)
    assert 1e3 * np.abs(energy_error - energy_error.mean()).mean() / 9 < 2.0  # meV/atom
    assert np.mean(errors["forces"]) < 0.06  # eV/Å
    assert np.mean(errors["dipole"]) < 0.02  # e·Å
    assert np.mean(errors["polarizability"]) < 0.10  # relative


def test_unknown_pretrained_name():
    with pytest.raises(ValueError, match="available: .*ethanol-gfn2"):
        jef.load_pretrained("no-such-model")
