"""Equivariant layers: the NequIP interaction block with the external field coupled
inside the message passing."""

import e3nn_jax as e3nn
import e3nn_jax.haiku as e3hk
import haiku as hk
import jax
import jax.numpy as jnp


def gate_input_irreps(irreps_out):
    """Irreps a layer must produce so that `e3nn.gate` returns `irreps_out`: the scalars of
    `irreps_out`, then one even gate scalar per non-scalar irrep, then the non-scalars."""
    irreps_out = e3nn.Irreps(irreps_out)
    scalars = irreps_out.filter(keep=["0e", "0o"])
    nonscalars = irreps_out.filter(drop=["0e", "0o"])
    return scalars + e3nn.Irreps(f"{nonscalars.num_irreps}x0e") + nonscalars


def gate(x):
    """Gated nonlinearity: silu / tanh on even / odd scalars, sigmoid gates on the rest."""
    return e3nn.gate(x, even_act=jax.nn.silu, odd_act=jnp.tanh,
                     even_gate_act=jax.nn.sigmoid, odd_gate_act=jnp.tanh)


class FieldInteraction(hk.Module):
    """One NequIP interaction block in which the node features also couple to the field.

    h_i' = gate( Linear[ sum_j R(r_ij) (h_j (x) Y(r_ij)) / sqrt(n_avg)  (+)  h_i (x) F_i ]
                 + SelfConnection_{species_i}(h_i) )

    The self-connection has one weight set per species (NequIP), or one shared set when
    `num_species` is None.

    The node-level tensor product h_i (x) F_i is what makes the message passing itself
    field dependent (as in MACE-Field / ENequIP): it is polynomial in F, so the energy stays
    analytic at F = 0, and it costs O(N), not O(edges).
    """

    def __init__(self, irreps_out, num_species, avg_num_neighbors, radial_hidden,
                 radial_layers, name=None):
        super().__init__(name=name)
        self.irreps_out = e3nn.Irreps(irreps_out)
        self.num_species = num_species
        self.avg_num_neighbors = avg_num_neighbors
        self.radial_hidden = radial_hidden
        self.radial_layers = radial_layers

    def __call__(self, h, species, edge_sh, edge_radial, senders, receivers, field):
        """h: (N, irreps) node features; species: (N,) indices into the species table;
        edge_sh: (E, irreps) spherical harmonics of the unit edge vectors; edge_radial:
        (E, num_basis) radial embedding, zero for padded edges; senders, receivers: (E,)
        valid atom indices; field: (N, 1x1o) field at each atom, V/Å, or None."""
        pre_gate = gate_input_irreps(self.irreps_out)
        if self.num_species is None:
            self_connection = e3hk.Linear(pre_gate, force_irreps_out=True, name="self_connection")(h)
        else:
            self_connection = e3hk.Linear(pre_gate, num_indexed_weights=self.num_species,
                                          force_irreps_out=True, name="self_connection")(species, h)

        h = e3hk.Linear(h.irreps, name="linear_up")(h)
        h_src = h[senders]
        messages = e3nn.concatenate(
            [h_src.filter(pre_gate), e3nn.tensor_product(h_src, edge_sh, filter_ir_out=pre_gate)]
        ).regroup()
        weights = e3hk.MultiLayerPerceptron(
            [self.radial_hidden] * self.radial_layers + [messages.irreps.num_irreps],
            jax.nn.silu, output_activation=False, name="radial_mlp",
        )(edge_radial)
        messages = messages * weights
        aggregated = e3nn.scatter_sum(messages, dst=receivers, output_size=h.shape[0])
        aggregated = aggregated / jnp.sqrt(self.avg_num_neighbors)

        if field is None:  # no field (tensor models): messages only
            mixed = aggregated
        else:
            field_coupling = e3nn.tensor_product(h, field, filter_ir_out=pre_gate)
            mixed = e3nn.concatenate([aggregated, field_coupling]).regroup()
        return gate(e3hk.Linear(pre_gate, force_irreps_out=True, name="linear_down")(mixed) + self_connection)
