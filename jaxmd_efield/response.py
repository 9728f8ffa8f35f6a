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

import functools

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


#: fewest atoms for which `field_response(..., born_charges=False)` uses `edge_lagrangian` by
#: default: it trades three tangents of the reverse pass through the edges for a Hessian of the
#: node-only program, which pays where atoms have many edges each. Measured crossover
#: (benchmarks/bench_field_response.py, step time / forces step, each method at its default
#: tangents): slower on ethanol (9 atoms, 8 edges each: 2.36 vs 1.97), about even on a water
#: cluster of 24 atoms (2.01 vs 2.09), faster from 48 (1.61 vs 2.06) up to a periodic box of
#: 1002 (1.75 vs 2.22).
EDGE_LAGRANGIAN_MIN_ATOMS = 24

#: fewest atoms for which the three field tangents of the polarizability run batched (`jax.vmap`,
#: as `jax.jacfwd`) by default; below it, and always for the Born charges, they run one after
#: another on one linearization: on small systems three copies of a small program beat one whose
#: arrays carry a tangent axis that XLA keeps transposing. Measured (same benchmark, batched vs
#: one by one): ethanol's polarizability 2.34 vs 1.97 (forward), 48 water atoms 1.90 vs 1.61
#: (Lagrangian), 81 / 96 / 1002 atoms 1.77 / 1.74 / 1.75 vs 1.92 / 1.89 / 2.23; with the Born
#: charges one by one was faster at every size, ethanol 3.51 vs 3.37 to 1002 atoms 5.97 vs 4.90.
BATCHED_TANGENTS_MIN_ATOMS = 64


def field_jacobian(fn, field, batched=True):
    """`jax.jacfwd(fn, has_aux=True)(field)` for a field (3,): (d fn / d field with the field
    index last on every output leaf, aux). batched=False runs the three tangents one after
    another (`jax.linearize`, then one call of the linear map per field direction) instead of
    vmapped: the same numbers, faster for small systems (BATCHED_TANGENTS_MIN_ATOMS)."""
    if batched:
        return jax.jacfwd(fn, has_aux=True)(field)
    _, tangent_fn, aux = jax.linearize(fn, field, has_aux=True)
    columns = [tangent_fn(direction) for direction in jnp.eye(3, dtype=field.dtype)]
    return jax.tree_util.tree_map(lambda *c: jnp.stack(c, -1), *columns), aux


def _batched(R, batched_tangents, born_charges):
    """Whether the field tangents run batched: as asked, or (None) for the polarizability alone
    from BATCHED_TANGENTS_MIN_ATOMS atoms on."""
    if batched_tangents is None:
        return not born_charges and jnp.shape(R)[0] >= BATCHED_TANGENTS_MIN_ATOMS
    return batched_tangents


def field_response(energy_fn, born_charges=True, method="auto", batched_tangents=None):
    """Everything at once: one reverse pass over (R, F) differentiated forward along the three
    field directions. Returns a dict with energy, forces, dipole, polarizability and
    born_charges (units and index orders in the module docstring).

    With born_charges=False, energy, forces, dipole and polarizability alone, cheaper, by one of
    two exact methods (`method`): "forward" differentiates the reverse pass's dipole forward
    (any energy function); "lagrangian" is `edge_lagrangian`, for this library's energy
    functions (`with_edge_terms`, also through functools.partial); "auto" takes the lagrangian
    where it can from EDGE_LAGRANGIAN_MIN_ATOMS atoms on, the forward method otherwise.
    batched_tangents: run the three field tangents vmapped (True) or one after another (False,
    `field_jacobian`); None: batched for the polarizability alone from BATCHED_TANGENTS_MIN_ATOMS
    atoms on. Only the speed depends on it."""
    if method not in ("auto", "forward", "lagrangian"):
        raise ValueError(f"method must be 'auto', 'forward' or 'lagrangian', got {method!r}")
    edge_terms_fn = _edge_terms_of(energy_fn)
    if method == "lagrangian" and (born_charges or edge_terms_fn is None):
        raise ValueError("method='lagrangian' needs born_charges=False and an energy function of "
                         "this library's builders (with_edge_terms), got "
                         + ("born_charges=True" if born_charges else f"{energy_fn!r}"))

    def fn(R, field=None, **kwargs):
        batched = _batched(R, batched_tangents, born_charges)
        if method == "lagrangian" or (method == "auto" and not born_charges and edge_terms_fn is not None
                                      and jnp.shape(R)[0] >= EDGE_LAGRANGIAN_MIN_ATOMS):
            return edge_lagrangian(functools.partial(edge_terms_fn, **kwargs), R, _field(field, R),
                                   batched)

        def gradients(F_):
            energy, f, mu = energy_forces_dipole(energy_fn)(R, field=F_, **kwargs)
            return ((f, mu) if born_charges else mu), (energy, f, mu)
        tangents, (energy, f, mu) = field_jacobian(gradients, _field(field, R), batched)
        out = dict(energy=energy, forces=f, dipole=mu)
        if not born_charges:
            return dict(out, polarizability=tangents)
        df_dF, dmu_dF = tangents
        return dict(out, polarizability=dmu_dF, born_charges=jnp.swapaxes(df_dF, 1, 2))
    return fn


def _edge_terms_of(energy_fn):
    """The `with_edge_terms` form of one of this library's energy functions, with the arguments
    of any functools.partial around it; None for other energy functions."""
    if isinstance(energy_fn, functools.partial):
        inner = _edge_terms_of(energy_fn.func)
        return inner and functools.partial(inner, *energy_fn.args, **energy_fn.keywords)
    return getattr(energy_fn, "with_edge_terms", None)


def edge_lagrangian(energy_with_edge_terms, R, field, batched_tangents=True):
    """Energy, forces, dipole and polarizability of a message-passing energy whose field
    dependence reaches the edges only through their node inputs, without differentiating
    through the edges twice.

    energy_with_edge_terms(R, field=, edge_input_shifts=, edge_sums=) -> (E, [(x_k, z_k)]):
    each block k's sum over edges z_k = L_k x_k is linear in its node inputs x_k (for fixed
    positions); shifts are added to x_k on the edge path, given sums replace z_k (then no edge
    is evaluated: a node-only program P(F, z)).

    With mu_k = dE/dz_k, the Lagrangian  P(F, z) + sum_k mu_k . (L_k x_k(F, z) - z_k)  equals E
    wherever z = L x, and is stationary in z at the solution, so its second derivative along
    the solution (F + t, z + t dz/dF) is d2E/dF2 (the d2z/dF2 term drops out). mu_k . L_k x_k =
    nu_k . x_k with nu_k = L_k^T mu_k = dE/d(shift of x_k), one more output of the reverse pass
    that gives the forces. So: one reverse pass (forces, dipole, nu), three forward tangents of
    the edge sums (dz/dF), and the Hessian in t (3 numbers) of the node-only
    P(F + t, z + t dz/dF) + sum_k nu_k . x_k: the edges are traversed by the forward pass, its
    reverse and three tangents, instead of also by three tangents of the reverse pass
    (forward-over-reverse). Exact: the same numbers to rounding, and differentiable.
    batched_tangents: as in `field_jacobian`."""
    def energy(R_, F_, shifts=None, sums=None):
        return energy_with_edge_terms(R_, field=F_, edge_input_shifts=shifts, edge_sums=sums)

    zero_shifts = [[jnp.zeros(x.shape, x.dtype) for x in xs]
                   for xs, _ in jax.eval_shape(lambda: energy(R, field)[1])]

    def total(R_, F_, shifts):
        def edge_sums(F__):
            E, terms = energy(R_, F__, shifts)
            sums = [z for _, z in terms]
            return sums, (E, sums)
        sums_dot, (E, sums) = field_jacobian(edge_sums, F_, batched_tangents)
        return E, (sums, sums_dot)

    (E, (sums, sums_dot)), (dE_dR, dE_dF, nu) = jax.value_and_grad(
        total, argnums=(0, 1, 2), has_aux=True)(R, field, zero_shifts)

    def lagrangian(t):
        moved = jax.tree_util.tree_map(lambda z, dz: z + dz @ t, sums, sums_dot)
        E_t, terms = energy(R, field + t, sums=moved)
        return E_t + sum(jnp.vdot(n, x) for nu_k, (xs, _) in zip(nu, terms) for n, x in zip(nu_k, xs))

    hessian, _ = field_jacobian(lambda t: (jax.grad(lagrangian)(t), ()), jnp.zeros_like(field),
                                batched_tangents)
    return dict(energy=E, forces=-dE_dR, dipole=-dE_dF, polarizability=-hessian)


def polarizability(energy_fn):
    """Polarizability -d2E/dF dF, e·Å²/V, (3, 3)."""
    def fn(R, field=None, **kwargs):
        return field_jacobian(lambda F_: (dipole(energy_fn)(R, field=F_, **kwargs), ()),
                              _field(field, R), _batched(R, None, False))[0]
    return fn


def born_charges(energy_fn):
    """Born effective charges Z[i, a, b] = dF_ib/dF_a, e, (N, 3, 3)."""
    def fn(R, field=None, **kwargs):
        df_dF, _ = field_jacobian(lambda F_: (forces(energy_fn)(R, field=F_, **kwargs), ()),
                                  _field(field, R), _batched(R, None, True))
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
