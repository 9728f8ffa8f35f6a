"""The dense-contraction network (jaxmd_efield.nn.dense) against the e3nn-jax formulation it
replaces (tests/reference_nequip.py): same parameter tree, same numbers, for the energy and tensor
networks, the shipped models and configurations that exercise every layout case."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmd_efield as jef
import reference_nequip
from ase import Atoms
from ase.build import molecule

from conftest import TINY
from jaxmd_efield import batch
from jaxmd_efield.nn.nequip import energy_network
from jaxmd_efield.nn.tensor import tensor_network

ODD_LAYOUT = jef.EFieldNequIPConfig(  # sh lmax 1 (2e unreachable at first), unsimplified irreps,
    species=(1, 8), r_cut=3.0, num_layers=2, num_basis=4, radial_hidden=8,  # shared self-connection
    hidden_irreps="4x0e + 2x1o + 2x0o + 2x1o + 1x2e", sh_lmax=1, species_self_connection=False)
NUMBERS = molecule("CH3CH2OH").numbers


def graph_inputs(numbers, R, config, seed=0):
    g = batch.structure_graph(Atoms(numbers=numbers, positions=np.asarray(R)), config.r_cut, config.species)
    field = jax.random.normal(jax.random.PRNGKey(seed), (3,)) * 0.3
    return (g.species, jnp.asarray(g.positions[g.senders] - g.positions[g.receivers]), g.senders,
            g.receivers, jnp.ones(len(g.senders), bool), jnp.broadcast_to(field, (len(numbers), 3)))


def assert_same_network(new, old, params, inputs, rtol):
    assert jax.tree_util.tree_structure(jax.eval_shape(new.init, jax.random.PRNGKey(1), *inputs)) == \
        jax.tree_util.tree_structure(params)
    for a, b in zip(jax.tree_util.tree_leaves(jax.jit(new.apply)(params, *inputs)),
                    jax.tree_util.tree_leaves(jax.jit(old.apply)(params, *inputs))):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * float(jnp.max(jnp.abs(b))))


@pytest.mark.parametrize("config", [TINY, ODD_LAYOUT], ids=["tiny", "odd-layout"])
def test_energy_network_equals_e3nn_formulation(ethanol, config):
    numbers = np.where(np.isin(NUMBERS, config.species), NUMBERS, 1)
    inputs = graph_inputs(numbers, ethanol["R"], config)
    params = jax.jit(reference_nequip.energy_network(config).init)(jax.random.PRNGKey(0), *inputs)
    assert_same_network(energy_network(config), reference_nequip.energy_network(config), params,
                        inputs, rtol=1e-12)


def test_shipped_energy_model_unchanged_float32(ethanol):
    model = jef.load_pretrained("ethanol-gfn2")
    with jax.enable_x64(False):
        inputs = graph_inputs(NUMBERS, jnp.asarray(ethanol["R"], jnp.float32), model.config)
        assert_same_network(energy_network(model.config), reference_nequip.energy_network(model.config),
                            model.params, inputs, rtol=2e-6)


def test_tensor_network_equals_e3nn_formulation(ethanol):
    config = TINY
    species, vectors, senders, receivers, mask, _ = graph_inputs(NUMBERS, ethanol["R"], config)
    inputs = (species, vectors, senders, receivers, mask, jnp.zeros(len(species), int),
              jnp.ones(len(species), bool))
    params = jax.jit(reference_nequip.tensor_network(config).init)(jax.random.PRNGKey(0), *inputs)
    assert_same_network(tensor_network(config), reference_nequip.tensor_network(config), params,
                        inputs, rtol=1e-12)


def test_edge_chunks_change_nothing(ethanol):
    """The message sum in chunks of 16 edges (ethanol has 72: four full chunks and a padded one,
    each rematerialized) gives the energies and the derivatives in positions, field and
    parameters that one pass over all edges gives, to float64 rounding. (Chunking is the same
    program in float32; the shipped model in float32 is pinned by the tests above and
    tests/test_float32.py.)"""
    chunked = dataclasses.replace(TINY, edge_chunk=16)
    species, vectors, senders, receivers, mask, field = graph_inputs(NUMBERS, ethanol["R"], TINY)
    assert len(senders) > 4 * chunked.edge_chunk and len(senders) % chunked.edge_chunk
    params = jax.jit(energy_network(TINY).init)(jax.random.PRNGKey(0), species, vectors, senders,
                                                receivers, mask, field)

    def derivatives(config):
        def total(params, vectors, field):
            return jnp.sum(energy_network(config).apply(params, species, vectors, senders, receivers,
                                                        mask, field))
        return jax.jit(jax.value_and_grad(total, argnums=(0, 1, 2)))(params, vectors, field)

    for a, b in zip(jax.tree_util.tree_leaves(derivatives(chunked)), jax.tree_util.tree_leaves(derivatives(TINY))):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * float(jnp.max(jnp.abs(b))))
