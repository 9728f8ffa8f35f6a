"""Model evaluation on packed batches (`batch.pack`) and batch prediction over many structures.

The observables follow DESIGN.md and `response`: energy (eV), forces -dE/dR (eV/Å), dipole
-dE/dF (e·Å), polarizability -d2E/dF2 (e·Å²/V), Born charges Z_iab = df_ib/dF_a (e, index order
atom, field, displacement); tensor models give born_charges (e) and dielectric (eps_inf).
Structures in one batch are independent, so one reverse pass gives every structure's forces and
dipole, and three forward tangents of a field shift shared by all structures give every
structure's polarizability and Born charges.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from jaxmd_efield import batch as batching
from jaxmd_efield.nn.nequip import EFieldNequIPConfig, energy_network
from jaxmd_efield.nn.tensor import tensor_network


def _positions(batch):
    """The batch's positions in the default float type (float32 unless x64 is enabled)."""
    return jnp.asarray(batch["positions"], jnp.asarray(0.0).dtype)


def energy_inputs(batch, positions=None, field=None):
    """The energy network's inputs from a packed batch; `positions` (A, 3) and `field` (G, 3)
    default to the batch's."""
    positions = _positions(batch) if positions is None else positions
    field = jnp.asarray(batch["field"], positions.dtype) if field is None else field
    return (batch["species"], batching.edge_vectors(batch, positions), batch["senders"],
            batch["receivers"], batch["edge_mask"], field[batch["node_graph"]])


def energy_observables(config: EFieldNequIPConfig, response=False):
    """fn(params, batch) -> dict of energy (G,), forces (A, 3), dipole (G, 3) and, with
    `response`, polarizability (G, 3, 3) and born_charges (A, 3, 3), for a packed batch (padding
    entries are zero or meaningless; `batch.unpack` drops them)."""
    network = energy_network(config)

    def energies(params, batch, positions, field):
        atom_energies = network.apply(params, *energy_inputs(batch, positions, field))
        atom_energies = jnp.where(batch["node_mask"], atom_energies, 0.0)
        return jax.ops.segment_sum(atom_energies, batch["node_graph"], len(batch["graph_mask"]))

    def fn(params, batch):
        positions = _positions(batch)
        field = jnp.asarray(batch["field"], positions.dtype)

        def gradients(field_shift):
            def total(R, F):
                e = energies(params, batch, R, F + field_shift)
                return e.sum(), e
            (_, e), (dE_dR, dE_dF) = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(
                positions, field)
            return (-dE_dR, -dE_dF), dict(energy=e, forces=-dE_dR, dipole=-dE_dF)

        if not response:
            return gradients(jnp.zeros(3, positions.dtype))[1]
        (dforces, ddipole), out = jax.jacfwd(gradients, has_aux=True)(jnp.zeros(3, positions.dtype))
        return dict(out, polarizability=ddipole, born_charges=jnp.moveaxis(dforces, -1, 1))

    return fn


def tensor_inputs(batch):
    """The tensor network's inputs from a packed batch."""
    return (batch["species"], batching.edge_vectors(batch, _positions(batch)), batch["senders"],
            batch["receivers"], batch["edge_mask"], batch["node_graph"], batch["node_mask"])


def tensor_observables(config: EFieldNequIPConfig):
    """fn(params, batch) -> dict of born_charges (A, 3, 3) and dielectric (G, 3, 3) of a tensor
    model for a packed batch."""
    def fn(params, batch):
        network = tensor_network(config, num_graphs=len(batch["graph_mask"]))
        born, dielectric = network.apply(params, *tensor_inputs(batch))
        return dict(born_charges=born, dielectric=dielectric)
    return fn


@functools.lru_cache(maxsize=None)
def compiled(config: EFieldNequIPConfig, kind, response=False):
    """The jitted `energy_observables` (kind "energy") or `tensor_observables` (kind "tensor")
    of a configuration. Memoised: every model, calculator and call with this configuration
    shares one function, whose parameters, positions, cells and fields are arguments, so new
    calculators and new structures compile again only for new bucket sizes (and a new float
    type)."""
    if kind == "energy":
        return jax.jit(energy_observables(config, response))
    if kind == "tensor":
        return jax.jit(tensor_observables(config))
    raise ValueError(f"unknown model kind {kind!r} (energy or tensor)")


def graphs(model, structures, field=None):
    """`batch.Graph`s of ase.Atoms `structures` for `model`; `field` (V/Å) None, one 3-vector
    for all or one per structure (S, 3). Errors name the structure."""
    fields = np.zeros((len(structures), 3)) if field is None else np.asarray(field, float)
    if fields.shape == (3,):
        fields = np.tile(fields, (len(structures), 1))
    if fields.shape != (len(structures), 3):
        raise ValueError(f"field must be None, a 3-vector or one 3-vector per structure "
                         f"({len(structures)}, 3) in V/Å, got shape {fields.shape}")
    if model.kind == "tensor" and np.any(fields != 0):
        raise ValueError("a tensor model (Born charges, eps_inf) takes no field")
    return [batching.structure_graph(atoms, model.config.r_cut, model.config.species, f,
                                     name=f"structure {k} ({atoms.get_chemical_formula()})")
            for k, (atoms, f) in enumerate(zip(structures, fields))]


def predict(model, structures, field=None, response=False, max_atoms=1024, progress=None,
            devices=None):
    """Predictions of a trained `model` for a list of ase.Atoms (molecules and/or fully
    periodic cells, any sizes and species of the model), packed many to a call.

    field: None (zero), one 3-vector for all structures or (S, 3), V/Å (energy models).
    response: energy models also give polarizability and born_charges (one more forward pass).
    max_atoms: atoms per packed batch (a larger structure gets a batch of its own).
    progress: show a progress bar (default: when there are more than 100 structures).
    devices: every batch is split over these (default: all of jax.devices(); `batch.shard`),
    so a structure too large for one device runs on several.

    Returns one dict per structure, in order: energy (eV, float), forces (N, 3) eV/Å, dipole (3,)
    e·Å [, polarizability (3, 3) e·Å²/V, born_charges (N, 3, 3) e] for energy models;
    born_charges (N, 3, 3) e and dielectric (3, 3) for tensor models.
    """
    if not isinstance(structures, (list, tuple)):
        raise TypeError(f"structures must be a list of ase.Atoms, got {type(structures).__name__}")
    fn = compiled(model.config, model.kind, bool(response) and model.kind == "energy")
    all_graphs = graphs(model, structures, field)
    results = []
    groups = [[all_graphs[k] for k in indices]
              for indices in batching.group(all_graphs, max_atoms=max_atoms)]
    budget = batching.budget(*groups)  # one shape for every batch: one compilation
    show = len(structures) > 100 if progress is None else progress
    for graphs_in_batch in tqdm(groups, desc="predict", unit="batch", disable=not show):
        packed = batching.pack(graphs_in_batch, budget)
        outputs = fn(model.params, batching.shard(packed, devices))
        results += batching.unpack(packed, outputs, len(graphs_in_batch))
    for r in results:
        if "energy" in r:
            r["energy"] = float(r["energy"])
    return results
