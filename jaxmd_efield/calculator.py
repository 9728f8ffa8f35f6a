"""ASE calculator for the field-dependent energy models."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from jax_md import custom_partition, space

from jaxmd_efield import response
from jaxmd_efield.energy import efield_nequip_neighbor_list

RESPONSE_PROPERTIES = {"polarizability", "born_effective_charges"}


class EFieldCalculator(Calculator):
    """ASE calculator for a trained model (`load_pretrained(...)` or `checkpoint.load_model`)
    in a uniform field.

    Properties: energy (eV), forces (eV/Å), dipole (e·Å), polarizability (3x3, e·Å²/V) and
    born_effective_charges (N x 3 x 3, e; atom, field, displacement). `field` is in V/Å, e.g.
    `calc.set(field=(0, 0, 0.1))`. Molecules (no periodic direction) use free space; fully
    periodic cells use jax_md's multi-image neighbor list (any cell size). The jitted functions
    are built once per set of atoms (species, periodicity, cell) and reused; energy, forces and
    dipole come from one pass, polarizability and Born charges from one more (when asked for).
    Results are cached per (positions, field) by ASE's Calculator.
    """

    implemented_properties = ["energy", "forces", "dipole"] + sorted(RESPONSE_PROPERTIES)
    default_parameters = dict(field=(0.0, 0.0, 0.0))

    def __init__(self, model, field=(0.0, 0.0, 0.0), capacity_multiplier=1.5, **kwargs):
        super().__init__(field=field, **kwargs)
        self.model = model
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
        neighbor_fn, _, energy_fn = efield_nequip_neighbor_list(
            displacement, box, atoms.numbers, self.model.config,
            capacity_multiplier=self.capacity_multiplier, **nl)
        energy = functools.partial(energy_fn, self.model.params)
        self._fns = dict(neighbor_fn=neighbor_fn, neighbors=None,
                         basic=jax.jit(response.energy_forces_dipole(energy)),
                         all=jax.jit(response.field_response(energy)))
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
        if RESPONSE_PROPERTIES & set(properties):
            out = fns["all"](R, field=field, neighbor=nbrs)
            out["born_effective_charges"] = out.pop("born_charges")
        else:
            out = dict(zip(("energy", "forces", "dipole"), fns["basic"](R, field=field, neighbor=nbrs)))
        self.results = {k: np.asarray(v, dtype=float) for k, v in out.items()}
        self.results["energy"] = float(self.results["energy"])
