"""The field-dependent NequIP energy network and its configuration."""

import dataclasses
from typing import Optional, Tuple, Union

import e3nn_jax as e3nn
import haiku as hk
import jax.numpy as jnp
import numpy as np

from jaxmd_efield.nn.heads import FieldEnergyHead
from jaxmd_efield.nn.layers import FieldInteraction
from jaxmd_efield.nn.radial import bessel_embedding


@dataclasses.dataclass(frozen=True)
class EFieldNequIPConfig:
    """Static configuration of :class:`EFieldNequIP` (hashable, so it can be closed over
    or passed as a static argument).

    species: atomic numbers the model knows, e.g. (1, 6, 8); the model's species table.
    r_cut: radial cutoff, Å.
    hidden_irreps: node feature irreps; must contain 0e and 1o (positions and the field
        are polar vectors), 2e for an anisotropic polarizability readout.
    sh_lmax: highest degree of the edge spherical harmonics (parity (-1)^l).
    num_layers: interaction blocks.
    num_basis: Bessel radial functions.
    radial_hidden, radial_layers: width and depth of the radial MLPs.
    readout_hidden: width of the scalar readout MLP.
    avg_num_neighbors: normalisation of the aggregated messages.
    envelope_p: exponent p of the polynomial cutoff envelope.
    species_self_connection: one self-connection weight set per species (NequIP); False
        shares one set, far fewer parameters for long species tables (64 elements in
        ~1000 crystals overfit with per-species sets).
    edge_chunk: edges per chunk of the message sum in systems with more edges than this: the
        per-edge intermediates of one chunk at a time are kept, and recomputed in the backward
        pass, so memory stays linear and small (16 kB per edge otherwise at the width of
        `benchmarks/bench_md_step.py`). Changes the memory and speed, not the result.
    energy_shift: per-species atomic energy shift, eV (same order as `species`), or None.
    energy_scale: atomic energy scale, eV: one number, or one per species.
    """

    species: Tuple[int, ...]
    r_cut: float = 4.0
    hidden_irreps: str = "32x0e + 8x0o + 8x1o + 8x1e + 4x2e + 4x2o"
    sh_lmax: int = 2
    num_layers: int = 3
    num_basis: int = 8
    radial_hidden: int = 32
    radial_layers: int = 2
    readout_hidden: int = 16
    avg_num_neighbors: float = 8.0
    envelope_p: int = 6
    species_self_connection: bool = True
    edge_chunk: int = 2048
    energy_shift: Optional[Tuple[float, ...]] = None
    energy_scale: Union[float, Tuple[float, ...]] = 1.0

    def __post_init__(self):
        object.__setattr__(self, "species", tuple(int(z) for z in self.species))
        for name in ("energy_shift", "energy_scale"):
            value = getattr(self, name)
            if value is None or np.ndim(value) == 0:
                continue
            object.__setattr__(self, name, tuple(float(v) for v in value))
            if len(value) != len(self.species):
                raise ValueError(f"{name} has {len(value)} entries for {len(self.species)} species")
        if len(set(self.species)) != len(self.species) or not self.species:
            raise ValueError(f"species must be distinct atomic numbers, got {self.species}")
        irreps = e3nn.Irreps(self.hidden_irreps)
        for needed in ("0e", "1o"):
            if needed not in irreps:
                raise ValueError(f"hidden_irreps {irreps} must contain {needed}: the energy is "
                                 "read from 0e and the field (a polar vector) couples through 1o")
        not_positive = [name for name in ("r_cut", "avg_num_neighbors", "sh_lmax", "num_layers",
                                          "num_basis", "radial_hidden", "readout_hidden",
                                          "envelope_p", "edge_chunk") if not getattr(self, name) > 0]
        if not_positive:
            raise ValueError("these settings must be positive: " + ", ".join(
                f"{name}={getattr(self, name)!r}" for name in not_positive))

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        d = dict(d)
        for key in ("species", "energy_shift", "energy_scale"):
            if isinstance(d.get(key), list):
                d[key] = tuple(d[key])
        return cls(**d)


def node_features(cfg, species, edge_vectors, senders, receivers, edge_mask, field=None,
                  edge_input_shifts=None, edge_sums=None):
    """Species embedding, then `cfg.num_layers` interaction blocks: the NequIP backbone shared
    by the energy and tensor networks. Call it inside a haiku module (its submodules are named
    species_embedding and interaction_k there). field: (N, 3) V/Å, or None.
    edge_input_shifts, edge_sums: one entry per block for `FieldInteraction` (None: none);
    with edge_sums given no edge is evaluated. Returns the node features by degree
    ({l: (N, 2l+1, C_l)}, `dense`), their irreps, and each block's (edge_inputs, edge_sum)."""
    num_species = len(cfg.species)
    hidden = e3nn.Irreps(cfg.hidden_irreps)
    edge_radial = edge_sh = None
    if edge_sums is None:
        lengths = jnp.linalg.norm(edge_vectors, axis=-1)
        edge_radial = bessel_embedding(lengths, cfg.r_cut, cfg.num_basis, cfg.envelope_p)
        edge_radial = jnp.where(edge_mask[:, None], edge_radial, 0.0)
        edge_sh = e3nn.spherical_harmonics(e3nn.Irreps.spherical_harmonics(cfg.sh_lmax),
                                           edge_vectors, normalize=True, normalization="component").array
    num_scalars = hidden.filter(keep=["0e"]).num_irreps
    h = {0: hk.Embed(num_species, num_scalars, name="species_embedding")(species)
         .astype(edge_vectors.dtype)[:, None, :]}
    irreps = e3nn.Irreps(f"{num_scalars}x0e")
    terms = []
    for layer in range(cfg.num_layers):
        h, irreps, block_terms = FieldInteraction(
            hidden, num_species if cfg.species_self_connection else None, cfg.avg_num_neighbors,
            cfg.radial_hidden, cfg.radial_layers, cfg.edge_chunk, name=f"interaction_{layer}")(
            h, irreps, species, edge_sh, e3nn.Irreps.spherical_harmonics(cfg.sh_lmax), edge_radial,
            senders, receivers, field, None if edge_input_shifts is None else edge_input_shifts[layer],
            None if edge_sums is None else edge_sums[layer])
        terms.append(block_terms)
    return h, irreps, terms


class EFieldNequIP(hk.Module):
    """E(3)-equivariant NequIP energy network whose features depend on an external field.

    Invariant under joint rotations and reflections of the edge vectors and the field.
    """

    def __init__(self, config: EFieldNequIPConfig, name=None):
        super().__init__(name=name)
        self.config = config

    def __call__(self, species, edge_vectors, senders, receivers, edge_mask, field,
                 edge_input_shifts=None, edge_sums=None, edge_terms=False):
        """Per-atom energies, eV, shape (N,).

        species: (N,) int indices into `config.species`.
        edge_vectors: (E, 3) r_j - r_i for the edge j -> i, Å.
        senders, receivers: (E,) atom indices j and i, in range for every edge.
        edge_mask: (E,) bool, False for padded edges (whose vectors must be nonzero).
        field: (N, 3) external field at each atom, V/Å.
        edge_input_shifts, edge_sums: the edge sums shifted or replaced (`node_features`), and
        with `edge_terms` the return value is (energies, each block's (edge_inputs, edge_sum)):
        what `response.edge_lagrangian` needs for the polarizability.
        """
        cfg = self.config
        h, irreps, terms = node_features(cfg, species, edge_vectors, senders, receivers, edge_mask,
                                         field, edge_input_shifts, edge_sums)
        energy = FieldEnergyHead(cfg.readout_hidden, name="energy_head")(h, irreps, field)
        num_species = len(cfg.species)
        shift = jnp.zeros(num_species) if cfg.energy_shift is None else jnp.asarray(cfg.energy_shift)
        scale = jnp.broadcast_to(jnp.asarray(cfg.energy_scale), (num_species,))
        energies = scale[species] * energy + shift[species]
        return (energies, terms) if edge_terms else energies


def energy_network(config: EFieldNequIPConfig, edge_terms=False):
    """The haiku-transformed network: `init(key, *inputs)` and `apply(params, *inputs)` with
    the inputs of `EFieldNequIP.__call__`. Builders and the trainer share it, so parameters
    move between them unchanged. With `edge_terms`, apply takes edge_input_shifts and
    edge_sums after the inputs and returns (energies, edge terms): `EFieldNequIP.__call__`."""
    return hk.without_apply_rng(hk.transform(
        lambda *inputs: EFieldNequIP(config)(*inputs, edge_terms=edge_terms)))
