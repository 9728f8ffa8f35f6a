"""jax_md energy-function builders for field-dependent models."""

import jax
import jax.numpy as jnp
from jax_md import partition

from jaxmd_efield import graph
from jaxmd_efield.nn.nequip import EFieldNequIPConfig, energy_network


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
    neighbor_fn, structure_inputs = graph.neighbor_list_inputs(
        displacement_fn, box, species, config, neighbor_list_fn, fractional_coordinates, nl_kwargs)
    network = energy_network(config)
    # jitted once here so that eager calls (and eager derivatives) run as one compiled program,
    # not op by op; under an outer jit they are inlined
    init, apply = jax.jit(network.init), jax.jit(network.apply)
    apply_with_edge_terms = jax.jit(energy_network(config, edge_terms=True).apply)

    def network_inputs(R, neighbor, field, kwargs):
        R, field, problems, species_idx, *edge_arrays = structure_inputs(R, neighbor, field, kwargs)
        node_field = jnp.broadcast_to(field, (R.shape[0], 3))
        return (R, field, problems), (species_idx, *edge_arrays, node_field)

    def init_fn(key, R, neighbor, field=None):
        return init(key, *network_inputs(R, neighbor, field, {})[1])

    def energy_fn(params, R, neighbor, field=None, **kwargs):
        checked, inputs = network_inputs(R, neighbor, field, kwargs)
        return graph.guard(jnp.sum(apply(params, *inputs)), *checked)

    def with_edge_terms(params, R, neighbor, field=None, edge_input_shifts=None, edge_sums=None,
                        **kwargs):
        """(energy_fn's energy, each block's (edge_inputs, edge_sum)), with the edge sums
        shifted or replaced (`nn.nequip.node_features`): `response.field_response` finds it
        (also through functools.partial) and computes the polarizability from it."""
        checked, inputs = network_inputs(R, neighbor, field, kwargs)
        energies, terms = apply_with_edge_terms(params, *inputs, edge_input_shifts, edge_sums)
        return graph.guard(jnp.sum(energies), *checked), terms

    energy_fn.with_edge_terms = with_edge_terms
    return neighbor_fn, init_fn, energy_fn
