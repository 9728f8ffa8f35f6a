"""jax_md energy-function builders for field-dependent models."""

import jax
import jax.numpy as jnp
from jax_md import partition

from jaxmd_efield import graph
from jaxmd_efield.nn.nequip import EFieldNequIPConfig, energy_network


def _check_inputs(R, field, num_atoms):
    """Static (shape) checks; raise ValueError at trace time."""
    if R.ndim != 2 or R.shape != (num_atoms, 3):
        raise ValueError(f"positions must have shape ({num_atoms}, 3) for the {num_atoms} "
                         f"species given to the builder, got {R.shape}")
    if field.shape != (3,):
        raise ValueError(f"field must be a 3-vector in V/Å, got shape {field.shape}")


def _guard(energy, R, field, neighbor):
    """Never return a silently wrong energy. With concrete inputs, raise a ValueError for
    non-finite positions or field and for an overflowed neighbor list. Under jit, where no
    exception can be raised, return NaN instead, added as NaN * (sum R + sum F) so that forces,
    dipole and every derivative are NaN too, even when an overflowed list has no valid edge."""
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
    return energy + jnp.where(overflow | nonfinite, jnp.nan, 0.0) * (jnp.sum(R) + jnp.sum(field))


def efield_nequip_neighbor_list(displacement_fn, box, species, config: EFieldNequIPConfig,
                                neighbor_list_fn=partition.neighbor_list,
                                fractional_coordinates=False, **nl_kwargs):
    """Field-dependent NequIP energy with a neighbor list, in the style of
    `jax_md.energy.nequip_neighbor_list`.

    Args:
      displacement_fn: from `jax_md.space` (`free`, `periodic`, `periodic_general`). Used for
        `partition.neighbor_list`; multi-image lists use their explicit shifts instead.
      box: box passed to the neighbor list function (for `space.free`, any box enclosing the
        molecule; for multi-image lists the 3x3 matrix with lattice vectors as columns), Å.
      species: (N,) atomic numbers or chemical symbols of the atoms, all in `config.species`.
      config: `EFieldNequIPConfig`.
      neighbor_list_fn: `jax_md.partition.neighbor_list` (minimum image; box >= 2 r_cut) or
        `jax_md.custom_partition.neighbor_list_multi_image` (any cell size).
      fractional_coordinates: whether positions are fractional (passed to the neighbor list).
      **nl_kwargs: more neighbor-list options (`dr_threshold`, `capacity_multiplier`,
        `format`: Sparse by default; OrderedSparse and Dense work too).

    Returns:
      neighbor_fn: the jax_md neighbor list functions, cutoff `config.r_cut`.
      init_fn(key, R, neighbor, field=None) -> params.
      energy_fn(params, R, neighbor, field=None, **kwargs) -> energy in eV. `field` is the
        uniform external field in V/Å (None means zero); other kwargs (kT, ...) are passed to
        the displacement function (e.g. `box=`) and otherwise ignored, so
        `functools.partial(energy_fn, params)` drops into `jax_md.simulate` integrators with
        `field=` given per step.
    """
    species_idx = graph.species_indices(species, config.species)
    num_atoms = species_idx.shape[0]
    network = energy_network(config)
    nl_kwargs.setdefault("format", partition.Sparse)
    neighbor_fn = neighbor_list_fn(displacement_fn, box, config.r_cut,
                                   fractional_coordinates=fractional_coordinates, **nl_kwargs)

    def network_inputs(R, neighbor, field, kwargs):
        R = jnp.asarray(R)
        field = jnp.zeros(3, R.dtype) if field is None else jnp.asarray(field, R.dtype)
        _check_inputs(R, field, num_atoms)
        vectors, senders, receivers, mask = graph.edges(
            displacement_fn, R, neighbor, fractional_coordinates, **kwargs)
        node_field = jnp.broadcast_to(field, (num_atoms, 3))
        return R, field, (species_idx, vectors, senders, receivers, mask, node_field)

    def init_fn(key, R, neighbor, field=None):
        return network.init(key, *network_inputs(R, neighbor, field, {})[2])

    def energy_fn(params, R, neighbor, field=None, **kwargs):
        R, field, inputs = network_inputs(R, neighbor, field, kwargs)
        return _guard(jnp.sum(network.apply(params, *inputs)), R, field, neighbor)

    return neighbor_fn, init_fn, energy_fn
