"""The network as it was first written, with e3nn-jax primitives (IrrepsArray, e3nn_jax.haiku.Linear,
e3nn.tensor_product, e3nn.gate) path by path: the oracle that `jaxmd_efield.nn.dense` must match
(same parameters, same numbers). Slow to compile and run; used by tests/test_dense.py only."""

import e3nn_jax as e3nn
import e3nn_jax.haiku as e3hk
import haiku as hk
import jax
import jax.numpy as jnp

from jaxmd_efield.nn.heads import sum_rule_projection
from jaxmd_efield.nn.layers import gate_input_irreps
from jaxmd_efield.nn.radial import bessel_embedding


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

    def __call__(self, h, field):
        """h: (N, irreps) node features; field: (N, 1x1o) V/Å. Returns (N,) energies."""
        e0 = e3hk.MultiLayerPerceptron([self.hidden, 1], jax.nn.silu, output_activation=False,
                                       name="scalar_mlp")(h.filter("0e"))
        dipole = e3hk.Linear("1o", force_irreps_out=True, name="dipole")(h)
        field_sq = e3nn.tensor_product(field, field, filter_ir_out=["0e", "2e"])
        polarizability = e3hk.Linear(field_sq.irreps, force_irreps_out=True,
                                     name="polarizability")(h)
        energy = e0 - e3nn.dot(dipole, field) - 0.5 * e3nn.dot(polarizability, field_sq)
        return energy.array[:, 0]


class BornChargeHead(hk.Module):
    """Per-atom Born effective charges, (N, 3, 3) in e with index order (atom, field,
    displacement): a general (not symmetric) tensor from 0e + 1e + 2e features (the irreps of
    polar x polar), plus a per-species isotropic offset. The acoustic sum rule is imposed by the
    caller (`sum_rule_projection`)."""

    def __init__(self, num_species, name=None):
        super().__init__(name=name)
        self.num_species = num_species

    def __call__(self, h, species):
        basis = e3nn.reduced_tensor_product_basis("ij", i="1o", j="1o")  # (3, 3, 9): 0e+1e+2e
        features = e3hk.Linear(basis.irreps, force_irreps_out=True, name="tensor")(h)
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

    def __call__(self, h, node_graph, node_mask, num_graphs):
        """node_graph: (N,) structure index of each atom; node_mask: (N,) real atoms."""
        k = self.num_vectors
        out = e3hk.Linear(f"0e + {k}x1o + {k}x1e", force_irreps_out=True, name="tensor")(h)
        scalar = jax.nn.softplus(out.filter("0e").array[:, 0])
        vectors = jnp.concatenate([out.filter("1o").array, out.filter("1e").array], -1).reshape(-1, 2 * k, 3)
        per_atom = scalar[:, None, None] * jnp.eye(3) + jnp.einsum("nca,ncb->nab", vectors, vectors)
        weight = node_mask.astype(per_atom.dtype)
        total = jax.ops.segment_sum(per_atom * weight[:, None, None], node_graph, num_graphs)
        count = jax.ops.segment_sum(weight, node_graph, num_graphs)
        return jnp.eye(3) + total / jnp.maximum(count, 1.0)[:, None, None]


def node_features(cfg, species, edge_vectors, senders, receivers, edge_mask, field=None):
    """Species embedding, then `cfg.num_layers` interaction blocks: the NequIP backbone shared
    by the energy and tensor networks. Call it inside a haiku module (its submodules are named
    species_embedding and interaction_k there). field: (N, 1x1o) IrrepsArray or None.
    Returns the node features (N, cfg.hidden_irreps)."""
    num_species = len(cfg.species)
    hidden = e3nn.Irreps(cfg.hidden_irreps)
    lengths = jnp.linalg.norm(edge_vectors, axis=-1)
    edge_radial = bessel_embedding(lengths, cfg.r_cut, cfg.num_basis, cfg.envelope_p)
    edge_radial = jnp.where(edge_mask[:, None], edge_radial, 0.0)
    edge_sh = e3nn.spherical_harmonics(e3nn.Irreps.spherical_harmonics(cfg.sh_lmax),
                                       edge_vectors, normalize=True, normalization="component")
    num_scalars = hidden.filter(keep=["0e"]).num_irreps
    h = e3nn.IrrepsArray(f"{num_scalars}x0e",
                         hk.Embed(num_species, num_scalars, name="species_embedding")(species)
                         .astype(edge_vectors.dtype))
    for layer in range(cfg.num_layers):
        h = FieldInteraction(hidden, num_species if cfg.species_self_connection else None,
                             cfg.avg_num_neighbors, cfg.radial_hidden, cfg.radial_layers,
                             name=f"interaction_{layer}")(
            h, species, edge_sh, edge_radial, senders, receivers, field)
    return h


class EFieldNequIP(hk.Module):
    """E(3)-equivariant NequIP energy network whose features depend on an external field.

    Invariant under joint rotations and reflections of the edge vectors and the field.
    """

    def __init__(self, config, name=None):
        super().__init__(name=name)
        self.config = config

    def __call__(self, species, edge_vectors, senders, receivers, edge_mask, field):
        """Per-atom energies, eV, shape (N,).

        species: (N,) int indices into `config.species`.
        edge_vectors: (E, 3) r_j - r_i for the edge j -> i, Å.
        senders, receivers: (E,) atom indices j and i, in range for every edge.
        edge_mask: (E,) bool, False for padded edges (whose vectors must be nonzero).
        field: (N, 3) external field at each atom, V/Å.
        """
        cfg = self.config
        field = e3nn.IrrepsArray("1o", field)
        h = node_features(cfg, species, edge_vectors, senders, receivers, edge_mask, field)
        energy = FieldEnergyHead(cfg.readout_hidden, name="energy_head")(h, field)
        num_species = len(cfg.species)
        shift = jnp.zeros(num_species) if cfg.energy_shift is None else jnp.asarray(cfg.energy_shift)
        scale = jnp.broadcast_to(jnp.asarray(cfg.energy_scale), (num_species,))
        return scale[species] * energy + shift[species]


def energy_network(config):
    """The haiku-transformed network: `init(key, *inputs)` and `apply(params, *inputs)` with
    the inputs of `EFieldNequIP.__call__`. Builders and the trainer share it, so parameters
    move between them unchanged."""
    return hk.without_apply_rng(hk.transform(lambda *inputs: EFieldNequIP(config)(*inputs)))


class BornDielectricNequIP(hk.Module):
    """Born charges (N, 3, 3), e, obeying the acoustic sum rule exactly, and eps_inf
    (G, 3, 3), symmetric with eps_inf - 1 positive semidefinite, for G structures in one graph.
    The backbone config's energy fields are unused."""

    def __init__(self, config, name=None):
        super().__init__(name=name)
        self.config = config

    def __call__(self, species, edge_vectors, senders, receivers, edge_mask, node_graph,
                 node_mask, num_graphs):
        h = node_features(self.config, species, edge_vectors, senders, receivers, edge_mask)
        born = BornChargeHead(len(self.config.species), name="born_head")(h, species)
        born = sum_rule_projection(born, node_graph, node_mask, num_graphs)
        dielectric = DielectricHead(name="dielectric_head")(h, node_graph, node_mask, num_graphs)
        return born, dielectric


def tensor_network(config, num_graphs=1):
    """haiku-transformed `BornDielectricNequIP` (num_graphs static)."""
    return hk.without_apply_rng(hk.transform(
        lambda *inputs: BornDielectricNequIP(config)(*inputs, num_graphs)))
