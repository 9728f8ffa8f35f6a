"""ASE calculator for the trained models: field-dependent energy models and tensor (Born charge
/ eps_inf) models."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from jax_md import custom_partition, space

from jaxmd_efield import response
from jaxmd_efield.energy import efield_nequip_neighbor_list
from jaxmd_efield.tensor import born_dielectric_neighbor_list

RESPONSE_PROPERTIES = {"polarizability", "born_effective_charges"}
PROPERTIES = dict(energy=["energy", "forces", "dipole"] + sorted(RESPONSE_PROPERTIES),
                  tensor=["born_effective_charges", "dielectric_tensor"])


class EFieldCalculator(Calculator):
    """ASE calculator for a trained model (`load_pretrained(...)` or `checkpoint.load_model`).

    Energy models (in a uniform field): energy (eV), forces (eV/Å), dipole (e·Å),
    polarizability (3x3, e·Å²/V) and born_effective_charges (N x 3 x 3, e; atom, field,
    displacement; from autodiff). `field` is in V/Å, e.g. `calc.set(field=(0, 0, 0.1))`.
    Tensor models (`load_pretrained("becs-eps")`): born_effective_charges (N x 3 x 3, e, same
    index order, summing to zero over atoms) and dielectric_tensor (3 x 3, eps_inf), predicted
    directly; the field does not enter. Molecules (no periodic direction) use free space; fully
    periodic cells use jax_md's multi-image neighbor list (any cell size). The jitted functions
    are built once per set of atoms (species, periodicity, cell) and reused; energy, forces and
    dipole come from one pass, polarizability and Born charges from one more (when asked for).
    Results are cached per (positions, field) by ASE's Calculator.
    """

    implemented_properties = sorted(set(PROPERTIES["energy"] + PROPERTIES["tensor"]))
    default_parameters = dict(field=(0.0, 0.0, 0.0))

    def __init__(self, model, field=(0.0, 0.0, 0.0), capacity_multiplier=1.5, **kwargs):
        super().__init__(field=field, **kwargs)
        self.model = model
        self.implemented_properties = PROPERTIES[model.kind]
        self.capacity_multiplier = capacity_multiplier
        self._key, self._fns = None, None

    def set(self, **kwargs):
        """Change parameters (e.g. `field=`); cached results are dropped when anything changed."""
        changed = super().set(**kwargs)
        if changed:
            self.reset()
        return changed

    def _build(self, atoms):
        pbc = tuple(bool(p) for p in atoms.pbc)
        key = (tuple(atoms.numbers), pbc, atoms.cell.array.tobytes() if any(pbc) else None)
        if key == self._key:
            return
        if any(pbc) and not all(pbc):
            raise ValueError(f"periodic in some directions only ({pbc}) is not supported: "
                             "use a molecule (pbc all False) or a fully periodic cell")
        if any(pbc):
            nl = dict(neighbor_list_fn=custom_partition.neighbor_list_multi_image)
            displacement, box = None, jnp.asarray(atoms.cell.array.T)
        else:
            nl = dict(disable_cell_list=True)
            displacement, box = space.free()[0], 1.0
        builder = dict(energy=efield_nequip_neighbor_list, tensor=born_dielectric_neighbor_list)
        neighbor_fn, _, fn = builder[self.model.kind](
            displacement, box, atoms.numbers, self.model.config,
            capacity_multiplier=self.capacity_multiplier, **nl)
        fn = functools.partial(fn, self.model.params)
        if self.model.kind == "tensor":
            fns = dict(tensor=jax.jit(fn))
        else:
            fns = dict(basic=jax.jit(response.energy_forces_dipole(fn)),
                       all=jax.jit(response.field_response(fn)))
        self._fns = dict(neighbor_fn=neighbor_fn, neighbors=None, **fns)
        self._key = key

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self._build(self.atoms)
        R = jnp.asarray(self.atoms.positions)
        field = np.asarray(self.parameters.field, dtype=float)
        if field.shape != (3,):
            raise ValueError(f"field must be a 3-vector in V/Å, got {self.parameters.field!r}")
        fns = self._fns
        nbrs = fns["neighbors"]
        nbrs = fns["neighbor_fn"].allocate(R) if nbrs is None else nbrs.update(R)
        if bool(nbrs.did_buffer_overflow):
            nbrs = fns["neighbor_fn"].allocate(R)
        fns["neighbors"] = nbrs
        if self.model.kind == "tensor":
            born, eps = fns["tensor"](R, neighbor=nbrs)
            out = dict(born_effective_charges=born, dielectric_tensor=eps)
        elif RESPONSE_PROPERTIES & set(properties):
            out = fns["all"](R, field=field, neighbor=nbrs)
            out["born_effective_charges"] = out.pop("born_charges")
        else:
            out = dict(zip(("energy", "forces", "dipole"), fns["basic"](R, field=field, neighbor=nbrs)))
        self.results = {k: np.asarray(v, dtype=float) for k, v in out.items()}
        if "energy" in self.results:
            self.results["energy"] = float(self.results["energy"])
