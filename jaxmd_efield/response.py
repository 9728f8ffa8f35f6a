"""Response observables as transformations of an energy function.

Each takes `energy_fn(R, field=..., **kwargs) -> E` (eV; R in Å, field in V/Å), e.g.
`functools.partial(energy_fn, params)` from a builder, and returns a function
`(R, field=None, **kwargs)`, where kwargs (such as `neighbor=`) go to `energy_fn` and
`field=None` means zero field. Conventions (DESIGN.md), E = E0 - mu.F - 1/2 F.alpha.F:

  forces        f_ib = -dE/dR_ib                               eV/Å,    (N, 3)
  dipole        mu_a = -dE/dF_a                                e·Å,     (3,)
  polarizability alpha_ab = -d2E/dF_a dF_b                     e·Å²/V,  (3, 3)
  Born charges  Z_iab = dmu_a/dR_ib = df_ib/dF_a = -d2E/dF_a dR_ib   e,  (N, 3, 3)
                (index order atom, field/polarization, displacement, as phonopy)
"""

import jax
import jax.numpy as jnp

from jaxmd_efield.graph import float_positions


def _field(field, R):
    """The field (V/Å) in the float type of the positions (zero for None)."""
    dtype = float_positions(R).dtype
    return jnp.zeros(3, dtype) if field is None else jnp.asarray(field, dtype)


def energy_forces_dipole(energy_fn):
    """Energy, forces and dipole from one reverse pass over (R, field)."""
    def fn(R, field=None, **kwargs):
        value_and_grads = jax.value_and_grad(
            lambda R_, F_: energy_fn(R_, field=F_, **kwargs), argnums=(0, 1))
        energy, (dE_dR, dE_dF) = value_and_grads(R, _field(field, R))
        return energy, -dE_dR, -dE_dF
    return fn


def forces(energy_fn):
    """Forces -dE/dR, eV/Å."""
    def fn(R, field=None, **kwargs):
        return -jax.grad(lambda R_: energy_fn(R_, field=_field(field, R), **kwargs))(R)
    return fn


def dipole(energy_fn):
    """Dipole -dE/dF, e·Å."""
    def fn(R, field=None, **kwargs):
        return -jax.grad(lambda F_: energy_fn(R, field=F_, **kwargs))(_field(field, R))
    return fn


def field_response(energy_fn, born_charges=True):
    """Everything at once: one reverse pass over (R, F) differentiated forward along the three
    field directions. Returns a dict with energy, forces, dipole, polarizability and
    born_charges (units and index orders in the module docstring). With born_charges=False
    only the dipole is differentiated (no per-atom tangents of the forces): energy, forces,
    dipole and polarizability from one program, the cheapest way to all four."""
    def fn(R, field=None, **kwargs):
        def gradients(F_):
            energy, f, mu = energy_forces_dipole(energy_fn)(R, field=F_, **kwargs)
            return ((f, mu) if born_charges else mu), (energy, f, mu)
        tangents, (energy, f, mu) = jax.jacfwd(gradients, has_aux=True)(_field(field, R))
        out = dict(energy=energy, forces=f, dipole=mu)
        if not born_charges:
            return dict(out, polarizability=tangents)
        df_dF, dmu_dF = tangents
        return dict(out, polarizability=dmu_dF, born_charges=jnp.swapaxes(df_dF, 1, 2))
    return fn


def polarizability(energy_fn):
    """Polarizability -d2E/dF dF, e·Å²/V, (3, 3)."""
    def fn(R, field=None, **kwargs):
        return jax.jacfwd(lambda F_: dipole(energy_fn)(R, field=F_, **kwargs))(_field(field, R))
    return fn


def born_charges(energy_fn):
    """Born effective charges Z[i, a, b] = dF_ib/dF_a, e, (N, 3, 3)."""
    def fn(R, field=None, **kwargs):
        df_dF = jax.jacfwd(lambda F_: forces(energy_fn)(R, field=F_, **kwargs))(_field(field, R))
        return jnp.swapaxes(df_dF, 1, 2)
    return fn


def fold_polarization(difference, cell, periodic):
    """The smallest equivalent of dipole differences (G, 3) e·Å of periodic cells: a cell's dipole
    is defined modulo the polarization quantum e * n . cell (integers n, lattice vectors as rows
    of `cell` (G, 3, 3), Å), so the difference's fractional coordinates are folded into
    [-1/2, 1/2] (as Allegro-pol does; any cell shape). Rows where `periodic` (G,) is False
    (molecules) are returned unchanged. jnp; differentiable in `difference` (rounding is
    piecewise constant), also on numpy input."""
    periodic, cell = jnp.asarray(periodic, bool), jnp.asarray(cell)
    difference = jnp.asarray(difference, cell.dtype)
    safe_cell = jnp.where(periodic[:, None, None], cell, jnp.eye(3, dtype=cell.dtype))
    fractional = jnp.linalg.solve(jnp.swapaxes(safe_cell, -1, -2), difference[..., None])[..., 0]
    folded = jnp.einsum("ga,gab->gb", fractional - jnp.round(fractional), safe_cell)
    return jnp.where(periodic[:, None], folded, difference)
