"""The tensor network: Born effective charges (per atom) and eps_inf (per structure) on the
shared NequIP backbone."""

import haiku as hk

from jaxmd_efield.nn.heads import BornChargeHead, DielectricHead, sum_rule_projection
from jaxmd_efield.nn.nequip import EFieldNequIPConfig, node_features


class BornDielectricNequIP(hk.Module):
    """Born charges (N, 3, 3), e, obeying the acoustic sum rule exactly, and eps_inf
    (G, 3, 3), symmetric with eps_inf - 1 positive semidefinite, for G structures in one graph.
    The backbone config's energy fields are unused."""

    def __init__(self, config: EFieldNequIPConfig, name=None):
        super().__init__(name=name)
        self.config = config

    def __call__(self, species, edge_vectors, senders, receivers, edge_mask, node_graph,
                 node_mask, num_graphs):
        h, irreps, _ = node_features(self.config, species, edge_vectors, senders, receivers, edge_mask)
        born = BornChargeHead(len(self.config.species), name="born_head")(h, irreps, species)
        born = sum_rule_projection(born, node_graph, node_mask, num_graphs)
        dielectric = DielectricHead(name="dielectric_head")(h, irreps, node_graph, node_mask, num_graphs)
        return born, dielectric


def tensor_network(config: EFieldNequIPConfig, num_graphs=1):
    """haiku-transformed `BornDielectricNequIP` (num_graphs static)."""
    return hk.without_apply_rng(hk.transform(
        lambda *inputs: BornDielectricNequIP(config)(*inputs, num_graphs)))
