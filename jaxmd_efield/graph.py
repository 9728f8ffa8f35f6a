"""From jax_md structures to the arrays the networks take: species indices and edges.

Supported neighbor lists (every format of each):
  * ``jax_md.partition.NeighborList`` (``partition.neighbor_list``): minimum-image
    displacements from the displacement function; the periodic box must be at least
    twice the cutoff (the usual jax_md condition).
  * ``jax_md.custom_partition.NeighborListMultiImage``
    (``custom_partition.neighbor_list_multi_image``): explicit lattice shifts, for cells
    smaller than twice the cutoff.
with the formats ``Sparse``, ``OrderedSparse`` (each pair once; both directions are
restored here) and ``Dense``.
"""

import functools

import ase.data
import jax
import jax.numpy as jnp
import numpy as np
from jax_md import custom_partition, partition, space

from jaxmd_efield.nn.dense import IN_BOUNDS

NeighborListFormat = partition.NeighborListFormat


def float_positions(R):
    """R as a floating-point array: integer positions become the default float type (float32, or
    float64 with jax_enable_x64), so that a field cast to their dtype is never truncated."""
    R = jnp.asarray(R)
    return R if jnp.issubdtype(R.dtype, jnp.floating) else R.astype(jnp.asarray(0.0).dtype)


def check_inputs(R, field, num_atoms):
    """Static (shape) checks; raise ValueError at trace time."""
    if R.ndim != 2 or R.shape != (num_atoms, 3):
        raise ValueError(f"positions must have shape ({num_atoms}, 3) for the {num_atoms} "
                         f"species given to the builder, got {R.shape}")
    if field.shape != (3,):
        raise ValueError(f"field must be a 3-vector in V/Å, got shape {field.shape}")


def box_matrix(box):
    """jax_md's box (a side length, three side lengths or a 3x3 matrix with the lattice vectors
    as columns) as a 3x3 matrix, Å."""
    box = jnp.asarray(box, dtype=jnp.asarray(0.0).dtype)
    return {0: lambda b: b * jnp.eye(3), 1: jnp.diag, 2: lambda b: b}[box.ndim](box)


def box_widths(box):
    """Perpendicular widths of a periodic cell, Å: the distances between opposite faces."""
    return 1.0 / jnp.linalg.norm(jnp.linalg.inv(box_matrix(box)), axis=1)


def wraps_positions(displacement_fn, box, fractional_coordinates):
    """Whether `displacement_fn` applies the minimum-image convention in the cell `box`: probe it
    with a displacement of 0.6 of each lattice vector (periodic spaces fold it to 0.4)."""
    if displacement_fn is None:
        return False
    cell = np.asarray(box_matrix(box))
    probes = np.eye(3) * 0.6 if fractional_coordinates else 0.6 * cell.T
    return any(np.linalg.norm(displacement_fn(jnp.asarray(probe), jnp.zeros(3))) < 0.5 * length
               for probe, length in zip(probes, np.linalg.norm(cell, axis=0)))


def box_problems(box, r_cut, minimum_image, fractional_cell_list):
    """(flag, message) pairs for a periodic box (flags are boolean arrays: `box` may be traced):
    a minimum-image list in a cell narrower than twice the cutoff would miss neighbors, and
    jax_md's cell list in fractional coordinates needs an upper-triangular box. (We test the
    latter ourselves: jax_md 0.2.29 sets its `malformed_box` flag for every valid box.)"""
    problems = []
    if minimum_image:
        problems.append((jnp.min(box_widths(box)) < 2 * r_cut, (
            f"the periodic cell is narrower than twice the cutoff (2 x {r_cut} Å): the "
            "minimum-image neighbor list (jax_md.partition.neighbor_list) would miss neighbors. "
            "Use neighbor_list_fn=jax_md.custom_partition.neighbor_list_multi_image (any cell "
            "size) or a supercell at least 2 r_cut wide")))
    if fractional_cell_list and jnp.ndim(box) == 2:
        problems.append((jnp.any(jnp.tril(jnp.asarray(box), -1) != 0), (
            "the box is not upper triangular: jax_md's cell list in fractional coordinates needs "
            "the lattice vectors as the columns of an upper-triangular matrix (or pass "
            "disable_cell_list=True)")))
    return problems


def neighbor_problems(neighbor):
    """(flag, message) pairs of a neighbor list's error flags, the most specific cause first."""
    return [
        (jnp.asarray(getattr(neighbor, "cell_size_too_small", False)).astype(bool),
         "the neighbor list's cells are smaller than the cutoff for the current box "
         "(cell_size_too_small): reallocate it with neighbor_fn.allocate(R, box=box)"),
        (jnp.asarray(neighbor.did_buffer_overflow).astype(bool),
         "the neighbor list overflowed (did_buffer_overflow): reallocate it with "
         "neighbor_fn.allocate(R) before computing the energy"),
    ]


def raise_first(problems):
    """Raise a ValueError with the message of the first (flag, message) whose flag is True;
    nothing when the flags are traced (under jit)."""
    try:
        for flag, message in problems:
            if bool(flag):
                raise ValueError(message)
    except jax.errors.ConcretizationTypeError:
        pass


def guard(value, R, field, problems=()):
    """Never return a silently wrong result (an energy or a tensor). With concrete inputs, raise
    a ValueError for each of `problems` ((flag, message) pairs: the neighbor list's error flags,
    a box too narrow or malformed) and for non-finite positions or field. Under jit, where no
    exception can be raised, return NaN instead, added as NaN * (sum R + sum F) so that forces,
    dipole and every derivative are NaN too, even when an overflowed list has no valid edge."""
    nonfinite = ~(jnp.all(jnp.isfinite(R)) & jnp.all(jnp.isfinite(field)))
    problems = [*problems, (nonfinite, "positions or field contain NaN or inf")]
    raise_first(problems)
    bad = jnp.any(jnp.stack([jnp.asarray(flag) for flag, _ in problems]))
    return value + jnp.where(bad, jnp.nan, 0.0) * (jnp.sum(R) + jnp.sum(field))


def species_indices(species, table):
    """Map atomic numbers or chemical symbols to indices into a model's species `table`
    (a tuple of atomic numbers), as a numpy int32 array. Raises ValueError for species outside
    the table."""
    species = np.atleast_1d(np.asarray(species))
    numbers = np.array([ase.data.atomic_numbers.get(s, -1) if isinstance(s, str) else int(s)
                        for s in species.tolist()], dtype=int)
    unknown = sorted(set(species[~np.isin(numbers, table)].tolist()))
    if unknown:
        raise ValueError(f"species {unknown} are not in the model's species table "
                         f"(atomic numbers {tuple(table)})")
    return np.array([table.index(z) for z in numbers], dtype=np.int32)  # numpy: no device op


def _pairs(neighbor):
    """(receivers, senders, integer shifts or None), flat over all stored pairs."""
    shifts = getattr(neighbor, "shifts", None)
    fmt = neighbor.format
    if fmt is NeighborListFormat.Dense:
        n, m = neighbor.idx.shape
        receivers = jnp.broadcast_to(jnp.arange(n, dtype=neighbor.idx.dtype)[:, None], (n, m))
        return (receivers.ravel(), neighbor.idx.ravel(),
                None if shifts is None else shifts.reshape(n * m, -1))
    receivers, senders = neighbor.idx[0], neighbor.idx[1]
    if fmt is NeighborListFormat.OrderedSparse:
        receivers, senders = jnp.concatenate([receivers, senders]), jnp.concatenate([senders, receivers])
        shifts = None if shifts is None else jnp.concatenate([shifts, -shifts])
    return receivers, senders, shifts


def edges(displacement_fn, R, neighbor, fractional_coordinates=False, **kwargs):
    """Edge arrays of a neighbor list.

    R: (N, 3) positions, Å (fractional if `fractional_coordinates`).
    kwargs: passed to `displacement_fn` (e.g. `box=` for `space.periodic_general`);
        for multi-image lists `box=` overrides the list's box.
    Returns edge_vectors (E, 3) = r_sender - r_receiver in Å, senders (E,), receivers (E,)
    (padded edges point at atom 0) and mask (E,) (False for padded and self edges; their
    vectors are set to a harmless nonzero value).
    """
    if isinstance(neighbor, partition.NeighborList):
        multi_image = False
    elif isinstance(neighbor, custom_partition.NeighborListMultiImage):
        multi_image = True
    else:
        raise TypeError("neighbor must be a jax_md.partition.NeighborList or a "
                        "jax_md.custom_partition.NeighborListMultiImage, got "
                        f"{type(neighbor).__name__}")
    n = R.shape[0]
    receivers, senders, shifts = _pairs(neighbor)
    mask = (receivers < n) & (senders < n)
    receivers = jnp.where(mask, receivers, 0)
    senders = jnp.where(mask, senders, 0)
    if multi_image:
        box = kwargs.get("box", neighbor.box)
        R_real = space.transform(box, R) if fractional_coordinates else R
        vectors = (R_real.at[senders].get(mode=IN_BOUNDS) + space.transform(box, shifts.astype(R.dtype))
                   - R_real.at[receivers].get(mode=IN_BOUNDS))
        mask = mask & ((senders != receivers) | jnp.any(shifts != 0, axis=-1))
    else:
        vectors = jax.vmap(lambda a, b: displacement_fn(a, b, **kwargs))(
            R.at[senders].get(mode=IN_BOUNDS), R.at[receivers].get(mode=IN_BOUNDS))
        mask = mask & (senders != receivers)
    vectors = jnp.where(mask[:, None], vectors, 1.0)
    return vectors, senders, receivers, mask


def neighbor_list_inputs(displacement_fn, box, species, config, neighbor_list_fn,
                         fractional_coordinates, nl_kwargs):
    """What every jax_md-facing builder needs: the neighbor list functions (cutoff
    `config.r_cut`, Sparse format unless `nl_kwargs` says otherwise) and
    `inputs(R, neighbor, field, kwargs) -> (R, field, problems, species_indices, edge_vectors,
    senders, receivers, edge_mask)` with the shape checks (field None means zero; integer
    positions become floats) and the (flag, message) `problems` for `guard`: the list's error
    flags and those of a box given at call time (`box=`). A box that is wrong already here (a
    minimum-image cell narrower than twice the cutoff, say) is a ValueError."""
    species_idx = species_indices(species, config.species)
    num_atoms = species_idx.shape[0]
    nl_kwargs = {"format": partition.Sparse, **nl_kwargs}
    neighbor_fn = neighbor_list_fn(displacement_fn, box, config.r_cut,
                                   fractional_coordinates=fractional_coordinates, **nl_kwargs)
    jax_md_list = neighbor_list_fn is partition.neighbor_list
    check_box = functools.partial(
        box_problems, r_cut=config.r_cut,
        minimum_image=jax_md_list and wraps_positions(displacement_fn, box, fractional_coordinates),
        fractional_cell_list=jax_md_list and fractional_coordinates and not nl_kwargs.get("disable_cell_list"))
    raise_first(check_box(box))

    def inputs(R, neighbor, field, kwargs):
        R = float_positions(R)
        field = jnp.zeros(3, R.dtype) if field is None else jnp.asarray(field, R.dtype)
        check_inputs(R, field, num_atoms)
        edge_arrays = edges(displacement_fn, R, neighbor, fractional_coordinates, **kwargs)
        problems = neighbor_problems(neighbor) + (check_box(kwargs["box"]) if "box" in kwargs else [])
        return (R, field, problems, species_idx, *edge_arrays)

    return neighbor_fn, inputs
