"""ASE calculator for the trained models: field-dependent energy models and tensor (Born charge
/ eps_inf) models."""

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from jaxmd_efield import batch, evaluate

RESPONSE_PROPERTIES = {"polarizability", "born_effective_charges"}
PROPERTIES = dict(energy=["energy", "forces", "dipole"] + sorted(RESPONSE_PROPERTIES),
                  tensor=["born_effective_charges", "dielectric_tensor"])
ASE_NAMES = dict(born_charges="born_effective_charges", dielectric="dielectric_tensor")


class EFieldCalculator(Calculator):
    """ASE calculator for a trained model (`load_pretrained(...)` or `checkpoint.load_model`).

    Energy models (in a uniform field): energy (eV), forces (eV/Å), dipole (e·Å),
    polarizability (3x3, e·Å²/V) and born_effective_charges (N x 3 x 3, e; atom, field,
    displacement; from autodiff). `field` is in V/Å, e.g. `calc.set(field=(0, 0, 0.1))`.
    Tensor models (`load_pretrained("becs-eps")`): born_effective_charges (N x 3 x 3, e, same
    index order, summing to zero over atoms) and dielectric_tensor (3 x 3, eps_inf), predicted
    directly; the field does not enter. Molecules (no periodic direction) and fully periodic
    cells of any size are supported. Every calculator evaluates through `evaluate.compiled`,
    shared by all calculators and `predict` calls with the same model configuration: a new
    calculator, a new molecule or a new cell compiles again only when its padded size falls in
    a bucket not seen before (`batch.bucket`). Energy, forces and dipole come from one pass,
    polarizability and Born charges from one more (when asked for). Results are cached per
    (positions, field) by ASE's Calculator.
    """

    implemented_properties = sorted(set(PROPERTIES["energy"] + PROPERTIES["tensor"]))
    default_parameters = dict(field=(0.0, 0.0, 0.0))

    def __init__(self, model, field=(0.0, 0.0, 0.0), **kwargs):
        super().__init__(field=field, **kwargs)
        self.model = model
        self.implemented_properties = PROPERTIES[model.kind]

    def set(self, **kwargs):
        """Change parameters (e.g. `field=`); cached results are dropped when anything changed."""
        changed = super().set(**kwargs)
        if changed:
            self.reset()
        return changed

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        model = self.model
        field = np.asarray(self.parameters.field, dtype=float)
        if model.kind == "tensor":
            field = None
        graph = batch.structure_graph(self.atoms, model.config.r_cut, model.config.species,
                                      field, name="atoms")
        packed = batch.pack([graph])
        response = model.kind == "energy" and bool(RESPONSE_PROPERTIES & set(properties))
        out = evaluate.compiled(model.config, model.kind, response)(model.params, packed)
        results = batch.unpack(packed, out, 1)[0]
        self.results = {ASE_NAMES.get(k, k): np.asarray(v, dtype=float) for k, v in results.items()}
        if "energy" in self.results:
            self.results["energy"] = float(self.results["energy"])
