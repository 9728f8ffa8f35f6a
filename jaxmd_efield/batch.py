"""Many structures per call: molecules and periodic cells packed into padded graphs.

Every place that evaluates structures outside a jax_md neighbor list goes through here: the
trainer (both tasks), batch prediction (`evaluate.predict`) and the ASE calculator. A structure
(an `ase.Atoms`: a molecule, or a fully periodic cell of any size and shape) is turned once into
a `Graph` on the host: species indices, positions, its cell and its
edges within the cutoff, with the integer lattice shifts of every periodic image (ASE's neighbor
list). `pack` concatenates graphs into one padded batch whose sizes (atoms, edges, structures)
are rounded up to a few bucket sizes, so that any mix of structures compiles a handful of
programs, not one per structure; `edge_vectors` turns a batch back into differentiable edge
vectors, so positions, cells and fields stay arguments of the compiled program.

Padding (what every consumer may rely on): at least one padding atom and one padding structure
exist; padding atoms belong to the last (padding) structure and have `node_mask` False;
padding edges join the last atom to itself with `edge_mask` False; padding structures have
`graph_mask` False and a zero cell.
"""

import math
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from jaxmd_efield.graph import species_indices


class Graph(NamedTuple):
    """One structure on the host (numpy). species: (N,) indices into the model's species table;
    positions (N, 3) Å; cell (3, 3) Å, lattice vectors as rows (zeros for a molecule); senders,
    receivers (E,); shifts (E, 3) integer lattice shifts: the edge vector is
    positions[sender] + shifts @ cell - positions[receiver]; field (3,) V/Å."""

    species: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    senders: np.ndarray
    receivers: np.ndarray
    shifts: np.ndarray
    field: np.ndarray


def structure_graph(atoms, r_cut, species_table, field=None, name="structure"):
    """`Graph` of an `ase.Atoms` (a molecule: no periodic direction; or a fully periodic cell)
    with the edges within `r_cut` (Å) over every periodic image. `field` (3,) V/Å, default
    zero. Bad input is a ValueError naming the structure (`name`)."""
    from ase.neighborlist import primitive_neighbor_list

    pbc = np.asarray(atoms.pbc, bool)
    if pbc.any() and not pbc.all():
        raise ValueError(f"{name}: periodic in some directions only ({pbc.tolist()}) is not "
                         "supported: use a molecule (pbc all False) or a fully periodic cell")
    positions = np.asarray(atoms.positions, float)
    cell = np.asarray(atoms.cell.array, float) if pbc.all() else np.zeros((3, 3))
    if pbc.all() and abs(np.linalg.det(cell)) < 1e-6:
        raise ValueError(f"{name}: periodic with a singular cell {cell.tolist()}")
    if len(atoms) == 0 or not np.all(np.isfinite(positions)):
        raise ValueError(f"{name}: " + ("has no atoms" if len(atoms) == 0 else
                                        "positions contain NaN or inf"))
    field = np.zeros(3) if field is None else np.asarray(field, float)
    if field.shape != (3,) or not np.all(np.isfinite(field)):
        raise ValueError(f"{name}: the field must be a finite 3-vector in V/Å, got {field.tolist()}")
    try:
        species = species_indices(atoms.numbers, species_table)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None
    receivers, senders, shifts = primitive_neighbor_list(
        "ijS", pbc, cell, positions, float(r_cut), self_interaction=False)
    return Graph(species, positions, cell, senders.astype(np.int32), receivers.astype(np.int32),
                 shifts.astype(float), field)


def bucket(n, minimum=8):
    """The smallest budget >= n in the sequence minimum * 2^(k/2) (rounded up to a multiple of
    8): padding wastes at most ~41 %, and sizes seen by one program repeat often."""
    if n <= minimum:
        return minimum
    size = minimum * 2 ** (math.ceil(2 * math.log2(n / minimum)) / 2)
    return int(8 * math.ceil(math.ceil(size - 1e-9) / 8))


def sizes(graphs):
    """(atoms, edges) of each graph, as two integer arrays."""
    return (np.array([len(g.species) for g in graphs]), np.array([len(g.senders) for g in graphs]))


def group(graphs, max_atoms=1024, max_edges=None, max_structures=64):
    """Indices of `graphs` in consecutive groups, each within `max_atoms` atoms, `max_edges`
    edges (default 32 per atom of the budget) and `max_structures` structures; a structure larger
    than the budgets gets a group of its own."""
    max_edges = 32 * max_atoms if max_edges is None else max_edges
    groups, current, atoms, edges = [], [], 0, 0
    for k, (n, e) in enumerate(zip(*sizes(graphs))):
        if current and (len(current) == max_structures or atoms + n > max_atoms
                        or edges + e > max_edges):
            groups.append(np.array(current))
            current, atoms, edges = [], 0, 0
        current.append(k)
        atoms, edges = atoms + n, edges + e
    return groups + [np.array(current)] if current else groups


def needed(graphs):
    """(atoms, edges, structures) a batch of `graphs` needs, with one padding atom and structure."""
    n_atoms, n_edges = sizes(graphs)
    return int(n_atoms.sum()) + 1, int(n_edges.sum()), len(graphs) + 1


def budget(*batches):
    """The bucketed (atoms, edges, structures) budget that fits every batch of graphs given:
    pack every batch of a call with it, and the call compiles once."""
    return tuple(bucket(max(x)) for x in zip(*(needed(graphs) for graphs in batches)))


def pack(graphs, budget=None):
    """One padded batch (a dict of numpy arrays) of `graphs`; `budget` (atoms, edges,
    structures), each including the padding, defaults to the buckets of what is needed.

    Keys: species, positions, node_graph, node_mask (A,...); senders, receivers, shifts,
    edge_mask (E,...); cell, field, graph_mask (G,...); see the module docstring for padding."""
    need = needed(graphs)
    budget = tuple(bucket(x) for x in need) if budget is None else tuple(budget)
    if any(b < x for b, x in zip(budget, need)):
        raise ValueError(f"budget {budget} (atoms, edges, structures) is too small for "
                         f"{need} (with one padding atom and structure)")
    n_atoms, n_edges = sizes(graphs)
    A, E, G = budget
    offsets = np.concatenate([[0], np.cumsum(n_atoms)])
    node_graph = np.full(A, G - 1, np.int32)
    node_graph[:offsets[-1]] = np.repeat(np.arange(len(graphs)), n_atoms)
    senders = np.full(E, A - 1, np.int32)
    senders[:n_edges.sum()] = np.concatenate([g.senders + o for g, o in zip(graphs, offsets)])
    receivers = np.full(E, A - 1, np.int32)
    receivers[:n_edges.sum()] = np.concatenate([g.receivers + o for g, o in zip(graphs, offsets)])

    def stack(values, total, shape, dtype=float):
        out = np.zeros((total, *shape), dtype)
        out[:sum(len(v) for v in values)] = np.concatenate(values)
        return out

    return dict(
        species=stack([g.species for g in graphs], A, (), np.int32),
        positions=stack([g.positions for g in graphs], A, (3,)),
        node_graph=node_graph, node_mask=np.arange(A) < offsets[-1],
        senders=senders, receivers=receivers,
        shifts=stack([g.shifts for g in graphs], E, (3,)),
        edge_mask=np.arange(E) < n_edges.sum(),
        cell=stack([g.cell[None] for g in graphs], G, (3, 3)),
        field=stack([g.field[None] for g in graphs], G, (3,)),
        graph_mask=np.arange(G) < len(graphs))


def edge_vectors(batch, positions=None, cell=None):
    """Edge vectors (E, 3) in Å, r_sender + shift . cell - r_receiver, of a packed batch
    (jnp; differentiable in `positions` (A, 3) and `cell` (G, 3, 3), which default to the
    batch's). Padding edges get a harmless nonzero vector."""
    positions = batch["positions"] if positions is None else positions
    cell = batch["cell"] if cell is None else cell
    senders, receivers = batch["senders"], batch["receivers"]
    image = jnp.einsum("ea,eab->eb", batch["shifts"].astype(positions.dtype),
                       cell[batch["node_graph"][senders]])
    vectors = positions[senders] + image - positions[receivers]
    return jnp.where(batch["edge_mask"][:, None], vectors, 1.0)


def shard(batch, devices=None):
    """A packed batch (or any dict of arrays with leading atom, edge or structure axes) placed
    on `devices` (default: all of jax.devices()) with its atom and edge axes split over them
    (`jax.sharding.NamedSharding`; structure-level arrays replicated), so that a jitted model
    call runs on all devices: a batch of many structures is split roughly by structure (data
    parallel), one large structure by its edges. XLA partitions the computation and inserts the
    communication; results equal the single-device ones. Returned unchanged on one device; an
    axis the devices do not divide stays whole."""
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    devices = jax.devices() if devices is None else list(devices)
    if len(devices) == 1:
        return batch
    mesh = Mesh(np.array(devices), ("devices",))
    split, whole = NamedSharding(mesh, PartitionSpec("devices")), NamedSharding(mesh, PartitionSpec())
    long_axes = {len(batch["node_mask"]), len(batch["edge_mask"])} - {len(batch["graph_mask"])}
    return {k: jax.device_put(v, split if len(v) in long_axes and len(v) % len(devices) == 0 else whole)
            for k, v in batch.items()}


PER_ATOM = ("forces", "born_charges")  # outputs with one entry per atom; the rest per structure


def unpack(batch, outputs, count):
    """Per-structure results of the first `count` structures of a packed batch: per-atom outputs
    (`PER_ATOM`, leading axis A) are cut at each structure's atoms, the others (leading axis G)
    indexed. Returns a list of dicts of numpy arrays."""
    node_graph = np.asarray(batch["node_graph"])
    outputs = {k: np.asarray(v) for k, v in outputs.items()}
    return [{k: v[node_graph == g] if k in PER_ATOM else v[g] for k, v in outputs.items()}
            for g in range(count)]
