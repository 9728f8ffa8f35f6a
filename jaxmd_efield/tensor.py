"""jax_md builder for the Born-charge / dielectric tensor model."""

import jax
import jax.numpy as jnp
from jax_md import partition

from jaxmd_efield import graph
from jaxmd_efield.nn.nequip import EFieldNequIPConfig
from jaxmd_efield.nn.tensor import tensor_network


def born_dielectric_neighbor_list(displacement_fn, box, species, config: EFieldNequIPConfig,
                                  neighbor_list_fn=partition.neighbor_list,
                                  fractional_coordinates=False, **nl_kwargs):
    """Born effective charges and eps_inf of one structure with a neighbor list, for use as an
    auxiliary observable in a simulation (jit-able inside `scan`). Arguments as
    `efield_nequip_neighbor_list` (periodic cells of any size through jax_md's multi-image list).

    Returns neighbor_fn, init_fn(key, R, neighbor) -> params, and
    tensor_fn(params, R, neighbor, **kwargs) -> (born_charges (N, 3, 3) in e, index order atom,
    field, displacement, summing to zero; dielectric (3, 3), eps_inf - 1 positive semidefinite).
    """
    neighbor_fn, structure_inputs = graph.neighbor_list_inputs(
        displacement_fn, box, species, config, neighbor_list_fn, fractional_coordinates, nl_kwargs)
    network = tensor_network(config, num_graphs=1)
    init, apply = jax.jit(network.init), jax.jit(network.apply)  # compiled once, as in energy.py

    def network_inputs(R, neighbor, kwargs):
        R, field, problems, species_idx, *edge_arrays = structure_inputs(R, neighbor, None, kwargs)
        n = R.shape[0]
        return ((R, field, problems),
                (species_idx, *edge_arrays, jnp.zeros(n, jnp.int32), jnp.ones(n, bool)))

    def init_fn(key, R, neighbor):
        return init(key, *network_inputs(R, neighbor, {})[1])

    def tensor_fn(params, R, neighbor, **kwargs):
        checked, inputs = network_inputs(R, neighbor, kwargs)
        born, dielectric = apply(params, *inputs)
        return graph.guard(born, *checked), graph.guard(dielectric[0], *checked)

    return neighbor_fn, init_fn, tensor_fn
