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

import ase.data
import jax
import jax.numpy as jnp
import numpy as np
from jax_md import custom_partition, partition, space

NeighborListFormat = partition.NeighborListFormat


def check_inputs(R, field, num_atoms):
    """Static (shape) checks; raise ValueError at trace time."""
    if R.ndim != 2 or R.shape != (num_atoms, 3):
        raise ValueError(f"positions must have shape ({num_atoms}, 3) for the {num_atoms} "
                         f"species given to the builder, got {R.shape}")
    if field.shape != (3,):
        raise ValueError(f"field must be a 3-vector in V/Å, got shape {field.shape}")


def guard(value, R, field, neighbor):
    """Never return a silently wrong result (an energy or a tensor). With concrete inputs, raise
    a ValueError for non-finite positions or field and for an overflowed neighbor list. Under
    jit, where no exception can be raised, return NaN instead, added as NaN * (sum R + sum F) so
    that forces, dipole and every derivative are NaN too, even when an overflowed list has no
    valid edge."""
    overflow = jnp.asarray(neighbor.did_buffer_overflow)
    nonfinite = ~(jnp.all(jnp.isfinite(R)) & jnp.all(jnp.isfinite(field)))
    try:
        if bool(overflow):
            raise ValueError("the neighbor list overflowed (did_buffer_overflow): reallocate it "
                             "with neighbor_fn.allocate(R) before computing the energy")
        if bool(nonfinite):
            raise ValueError("positions or field contain NaN or inf")
    except jax.errors.ConcretizationTypeError:
        pass
    return value + jnp.where(overflow | nonfinite, jnp.nan, 0.0) * (jnp.sum(R) + jnp.sum(field))


def species_indices(species, table):
    """Map atomic numbers or chemical symbols to indices into a model's species `table`
    (a tuple of atomic numbers). Raises ValueError for species outside the table."""
    species = np.atleast_1d(np.asarray(species))
    numbers = np.array([ase.data.atomic_numbers.get(s, -1) if isinstance(s, str) else int(s)
                        for s in species.tolist()], dtype=int)
    unknown = sorted(set(species[~np.isin(numbers, table)].tolist()))
    if unknown:
        raise ValueError(f"species {unknown} are not in the model's species table "
                         f"(atomic numbers {tuple(table)})")
    return jnp.asarray([table.index(z) for z in numbers], dtype=jnp.int32)


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
        vectors = R_real[senders] + space.transform(box, shifts.astype(R.dtype)) - R_real[receivers]
        mask = mask & ((senders != receivers) | jnp.any(shifts != 0, axis=-1))
    else:
        vectors = jax.vmap(lambda a, b: displacement_fn(a, b, **kwargs))(R[senders], R[receivers])
        mask = mask & (senders != receivers)
    vectors = jnp.where(mask[:, None], vectors, 1.0)
    return vectors, senders, receivers, mask


def molecule_batch_edges(positions, r_cut):
    """All-pairs edges of a batch of B molecules of N atoms each, as one graph of B*N nodes with
    fixed shapes (B*N*(N-1) edges, pairs beyond `r_cut` masked), for training without
    recompilation. positions: (B, N, 3) Å. Returns edge_vectors, senders, receivers, mask."""
    b, n, _ = positions.shape
    i, j = np.nonzero(~np.eye(n, dtype=bool))  # receivers i, senders j within a molecule
    offsets = (np.arange(b) * n)[:, None]
    receivers = jnp.asarray((offsets + i).ravel())
    senders = jnp.asarray((offsets + j).ravel())
    vectors = (positions[:, j] - positions[:, i]).reshape(-1, 3)
    mask = jnp.sum(vectors**2, axis=-1) < r_cut**2
    return jnp.where(mask[:, None], vectors, 1.0), senders, receivers, mask


def neighbor_list_inputs(displacement_fn, box, species, config, neighbor_list_fn,
                         fractional_coordinates, nl_kwargs):
    """What every jax_md-facing builder needs: the neighbor list functions (cutoff
    `config.r_cut`, Sparse format unless `nl_kwargs` says otherwise) and
    `inputs(R, neighbor, field, kwargs) -> (R, field, species_indices, edge_vectors, senders,
    receivers, edge_mask)` with the shape checks (field None means zero)."""
    species_idx = species_indices(species, config.species)
    num_atoms = species_idx.shape[0]
    nl_kwargs = {"format": partition.Sparse, **nl_kwargs}
    neighbor_fn = neighbor_list_fn(displacement_fn, box, config.r_cut,
                                   fractional_coordinates=fractional_coordinates, **nl_kwargs)

    def inputs(R, neighbor, field, kwargs):
        R = jnp.asarray(R)
        field = jnp.zeros(3, R.dtype) if field is None else jnp.asarray(field, R.dtype)
        check_inputs(R, field, num_atoms)
        return (R, field, species_idx,
                *edges(displacement_fn, R, neighbor, fractional_coordinates, **kwargs))

    return neighbor_fn, inputs


def crystal_edges(positions, cell, r_cut):
    """All edges within `r_cut` of a periodic crystal (any cell size: every periodic image),
    computed on the host with ASE. positions (N, 3) and cell (3, 3, lattice vectors as rows) in Å.
    Returns edge_vectors (E, 3) = r_sender + shift - r_receiver, senders (E,), receivers (E,)."""
    from ase.neighborlist import primitive_neighbor_list

    receivers, senders, vectors = primitive_neighbor_list(
        "ijD", (True, True, True), np.asarray(cell), np.asarray(positions), r_cut,
        self_interaction=False)
    return vectors, senders, receivers
