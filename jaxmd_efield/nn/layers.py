"""Equivariant layers: the NequIP interaction block with the external field coupled
inside the message passing."""

import e3nn_jax as e3nn
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from jaxmd_efield.nn import dense


def gate_input_irreps(irreps_out):
    """Irreps a layer must produce so that `e3nn.gate` returns `irreps_out`: the scalars of
    `irreps_out`, then one even gate scalar per non-scalar irrep, then the non-scalars."""
    irreps_out = e3nn.Irreps(irreps_out)
    scalars = irreps_out.filter(keep=["0e", "0o"])
    nonscalars = irreps_out.filter(drop=["0e", "0o"])
    return scalars + e3nn.Irreps(f"{nonscalars.num_irreps}x0e") + nonscalars


class FieldInteraction(hk.Module):
    """One NequIP interaction block in which the node features also couple to the field.

    h_i' = gate( Linear[ sum_j R(r_ij) (h_j (x) Y(r_ij)) / sqrt(n_avg)  (+)  h_i (x) F_i ]
                 + SelfConnection_{species_i}(h_i) )

    The self-connection has one weight set per species (NequIP), or one shared set when
    `num_species` is None. The sum over edges runs in chunks of `edge_chunk` edges, each
    recomputed in the backward pass (`dense.sum_over_edge_chunks`), when there are more.

    The node-level tensor product h_i (x) F_i is what makes the message passing itself
    field dependent (as in MACE-Field / ENequIP): it is polynomial in F, so the energy stays
    analytic at F = 0, and it costs O(N), not O(edges).
    """

    def __init__(self, irreps_out, num_species, avg_num_neighbors, radial_hidden,
                 radial_layers, edge_chunk, name=None):
        super().__init__(name=name)
        self.irreps_out = e3nn.Irreps(irreps_out)
        self.num_species = num_species
        self.avg_num_neighbors = avg_num_neighbors
        self.radial_hidden = radial_hidden
        self.radial_layers = radial_layers
        self.edge_chunk = edge_chunk

    def __call__(self, h, irreps_h, species, edge_sh, irreps_sh, edge_radial, senders, receivers,
                 field, edge_input_shift=None, edge_sum=None):
        """h: node features by degree ({l: (N, 2l+1, C_l)}, `dense`) with irreps `irreps_h`;
        species: (N,) indices into the species table; edge_sh: (E, irreps_sh.dim) spherical
        harmonics of the unit edge vectors (starting with Y_0 = 1); edge_radial: (E, num_basis)
        radial embedding, zero for padded edges; senders, receivers: (E,) valid atom indices;
        field: (N, 3) field at each atom, V/Å, or None.

        The sum over edges is linear in its node inputs `edge_inputs` (the part of linear_up that
        the messages read, one (N, 2l+1, U) array per product group): for the polarizability
        (`response`) it can be shifted (`edge_input_shift`, same structure, added on the edge
        path only) or replaced (`edge_sum`, {l: (N, 2l+1, C_l)}: then no edge is evaluated and
        edge_sh, edge_radial may be None).

        Returns the new features, their irreps, and (edge_inputs, edge_sum) as computed."""
        pre_gate = gate_input_irreps(self.irreps_out)
        dtype = h[0].dtype
        messages = dense.ChannelwiseProduct(irreps_h, irreps_sh, pre_gate, with_x=True)
        plans = [messages] if field is None else [messages, dense.ChannelwiseProduct(irreps_h, "1x1o", pre_gate)]

        self_connection, _, reached = dense.LinearMatrix(
            pre_gate, True, self.num_species, name="self_connection")(irreps_h, dtype)
        if self.num_species is None:
            out = {l: h[l] @ w for l, w in self_connection.items()}
        else:  # (N, 2l+1, species, C_out), then each atom's own species
            one_hot = jax.nn.one_hot(species, self.num_species, dtype=dtype)[:, None, :, None]
            out = {l: jnp.sum(jnp.einsum("nmi,sio->nmso", h[l], w) * one_hot, axis=2)
                   for l, w in self_connection.items()}

        # linear_up writes each product's input groups side by side, by degree
        pieces = [(plan, l, starts) for plan in plans for l, starts in zip(plan.x_degrees, plan.x_starts)]
        up, _, _ = dense.LinearMatrix(irreps_h, name="linear_up")(irreps_h, dtype, cols={
            l: np.concatenate([s for _, l_, s in pieces if l_ == l]) for l in {l for _, l, _ in pieces}})
        h_up, inputs, offset = {l: h[l] @ w for l, w in up.items()}, {id(p): [] for p in plans}, {}
        for plan, l, starts in pieces:
            start = offset.get(l, 0)
            inputs[id(plan)].append(h_up[l][..., start:start + len(starts)])
            offset[l] = start + len(starts)

        xs, num_nodes = inputs[id(messages)], h[0].shape[0]
        summed = edge_sum
        if summed is None:
            radial = dense.RadialMLP([self.radial_hidden] * self.radial_layers + [messages.num_weights],
                                     messages.weight_index, name="radial_mlp")(edge_radial.shape[-1], dtype)
            shifted = xs if edge_input_shift is None else [x + d for x, d in zip(xs, edge_input_shift)]

            def message_sum(edge_arrays):
                sh, radial_features, senders_, receivers_ = edge_arrays
                weights = dense.radial_mlp(radial, jax.nn.silu, radial_features)
                z = messages([x.at[senders_].get(mode=dense.IN_BOUNDS) for x in shifted], sh, weights)
                return {l: jax.ops.segment_sum(x, receivers_, num_nodes, mode=dense.IN_BOUNDS)
                        for l, x in z.items()}

            summed = dense.sum_over_edge_chunks(message_sum, (edge_sh, edge_radial, senders, receivers),
                                                self.edge_chunk)
        mixed = [{l: x / jnp.sqrt(self.avg_num_neighbors) for l, x in summed.items()}]
        rows, irreps_mixed = [messages.z_starts], messages.z_irreps
        if field is not None:
            coupling = plans[1]
            mixed.append(coupling(inputs[id(coupling)], field))
            rows.append({l: irreps_mixed.dim + s for l, s in coupling.z_starts.items()})
            irreps_mixed = irreps_mixed + coupling.z_irreps
        degrees = sorted({l for m in mixed for l in m})
        down, _, reached_down = dense.LinearMatrix(pre_gate, True, name="linear_down")(
            irreps_mixed, dtype, rows={l: np.concatenate([r[l] for r in rows if l in r]) for l in degrees})
        out = dense.add(out, {l: jnp.concatenate([m[l] for m in mixed if l in m], -1) @ w
                              for l, w in down.items()})
        h_out, irreps_out = dense.gate(out, pre_gate, reached | reached_down)
        return h_out, irreps_out, (xs, summed)
