"""Readout heads: per-atom quantities from node features."""

import e3nn_jax as e3nn
import e3nn_jax.haiku as e3hk
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from jaxmd_efield.nn import dense


class FieldEnergyHead(hk.Module):
    """Per-atom energy with explicit field terms, eV:

        E_i = e_i(h_i) - mu_i(h_i) . F_i - 1/2 F_i . alpha_i(h_i) . F_i

    e_i from an MLP on the scalars, mu_i a 1o vector (e·Å) and alpha_i a 0e + 2e symmetric
    tensor (e·Å²/V) read out linearly. These terms give the dipole and polarizability a
    direct path besides the field dependence of the features themselves.
    """

    def __init__(self, hidden, name=None):
        super().__init__(name=name)
        self.hidden = hidden

    def __call__(self, h, irreps_h, field):
        """h: node features by degree (`dense`) with irreps `irreps_h`; field: (N, 3) V/Å.
        Returns (N,) energies."""
        even_scalars = np.array([ir == e3nn.Irrep("0e") for mul, ir in irreps_h.filter(keep=["0e", "0o"])
                                 for _ in range(mul)])
        e0 = e3hk.MultiLayerPerceptron([self.hidden, 1], jax.nn.silu, output_activation=False,
                                       name="scalar_mlp")(h[0][:, 0, even_scalars])
        field = e3nn.IrrepsArray("1o", field)
        dipole = dense.linear(h, irreps_h, "1o", name="dipole")
        field_sq = e3nn.tensor_product(field, field, filter_ir_out=["0e", "2e"])
        polarizability = dense.linear(h, irreps_h, field_sq.irreps, name="polarizability")
        energy = e0[:, 0] - jnp.sum(dipole.array * field.array, -1) \
            - 0.5 * jnp.sum(polarizability.array * field_sq.array, -1)
        return energy


class BornChargeHead(hk.Module):
    """Per-atom Born effective charges, (N, 3, 3) in e with index order (atom, field,
    displacement): a general (not symmetric) tensor from 0e + 1e + 2e features (the irreps of
    polar x polar), plus a per-species isotropic offset. The acoustic sum rule is imposed by the
    caller (`sum_rule_projection`)."""

    def __init__(self, num_species, name=None):
        super().__init__(name=name)
        self.num_species = num_species

    def __call__(self, h, irreps_h, species):
        basis = e3nn.reduced_tensor_product_basis("ij", i="1o", j="1o")  # (3, 3, 9): 0e+1e+2e
        features = dense.linear(h, irreps_h, basis.irreps, name="tensor")
        offset = hk.Embed(self.num_species, 1, name="species_offset")(species)[:, 0]
        return jnp.einsum("abk,nk->nab", basis.array, features.array) + offset[:, None, None] * jnp.eye(3)


class DielectricHead(hk.Module):
    """Electronic dielectric tensor of each structure, (G, 3, 3):

        eps_inf = 1 + mean_i [softplus(s_i) I + sum_c v_ic v_ic^T]

    over the atoms i of the structure, with s_i a scalar and v_ic (c = 1..num_vectors) polar and
    axial vectors read from the node features. Symmetric, with eps_inf - 1 positive
    semidefinite by construction, and intensive (a mean, so a supercell gives the same tensor).
    """

    def __init__(self, num_vectors=4, name=None):
        super().__init__(name=name)
        self.num_vectors = num_vectors

    def __call__(self, h, irreps_h, node_graph, node_mask, num_graphs):
        """h: node features by degree with irreps `irreps_h`; node_graph: (N,) structure index
        of each atom; node_mask: (N,) real atoms."""
        k = self.num_vectors
        out = dense.linear(h, irreps_h, f"0e + {k}x1o + {k}x1e", name="tensor")
        scalar = jax.nn.softplus(out.filter("0e").array[:, 0])
        vectors = jnp.concatenate([out.filter("1o").array, out.filter("1e").array], -1).reshape(-1, 2 * k, 3)
        per_atom = scalar[:, None, None] * jnp.eye(3) + jnp.einsum("nca,ncb->nab", vectors, vectors)
        weight = node_mask.astype(per_atom.dtype)
        total = jax.ops.segment_sum(per_atom * weight[:, None, None], node_graph, num_graphs)
        count = jax.ops.segment_sum(weight, node_graph, num_graphs)
        return jnp.eye(3) + total / jnp.maximum(count, 1.0)[:, None, None]


def sum_rule_projection(born, node_graph, node_mask, num_graphs):
    """Subtract each structure's mean Born charge from its atoms: sum_i Z_i = 0 exactly (the
    acoustic sum rule of a neutral cell). Padded atoms are left at zero."""
    weight = node_mask.astype(born.dtype)[:, None, None]
    total = jax.ops.segment_sum(born * weight, node_graph, num_graphs)
    count = jax.ops.segment_sum(weight[:, 0, 0], node_graph, num_graphs)
    return (born - (total / jnp.maximum(count, 1.0)[:, None, None])[node_graph]) * weight
