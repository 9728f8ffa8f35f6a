"""Training: one trainer loop with pluggable tasks.

A task knows its model and data: `rows(data)` (the arrays it uses, prepared once),
`num_rows(rows)`, `batches(rows, order, batch_size, drop_remainder)` (how an ordering of rows is
cut into batches), `batch(rows, indices, batch_size)` (one batch of fixed shapes, so the step
compiles once), `init(key, batch)`, `loss(params, batch, response) -> (loss, metrics)`,
`predict(params, batch, response) -> dict`, `unbatch(predictions, rows, indices)` and
`metrics(predictions, data)`. Two tasks exist: `EnergyTask` (field-dependent energy of
molecules) and `TensorTask` (Born charges and eps_inf of crystals). The trainer owns the rest:
optax optimiser with warm-up + cosine learning rate, gradient clipping, EMA of parameters,
deterministic data order (so --resume reproduces an uninterrupted run), validation metrics,
atomic checkpoints (which --resume refuses if the run's configuration changed), a CSV metrics
log, a progress bar and parity plots.
"""

import csv
import dataclasses
import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from jaxmd_efield import batch as batching, checkpoint, data as data_io, evaluate, graph
from jaxmd_efield import response as response_fns
from jaxmd_efield.nn.nequip import EFieldNequIPConfig, energy_network
from jaxmd_efield.nn.tensor import tensor_network


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings (the `training:` section of a training config)."""

    batch_size: int = 16
    steps: int = 10000
    learning_rate: float = 5e-3
    warmup_steps: int = 200
    final_lr_fraction: float = 0.01
    grad_clip: float = 10.0
    ema_decay: float = 0.999
    eval_every: int = 500
    checkpoint_every: int = 500
    seed: int = 0
    #: every k-th step trains on a batch of the rows with response labels (polarizability,
    #: Born charges) and includes those loss terms, which cost about 3x; 0: never.
    response_every: int = 0


def _weighted_mean(x, weight):
    weight = weight.reshape(weight.shape + (1,) * (x.ndim - 1))
    return jnp.sum(x * weight) / jnp.maximum(jnp.sum(weight) * x[0].size, 1.0)


class EnergyTask:
    """Field-dependent energy model on molecules and periodic cells in fields (a `data` set:
    any sizes and species of the model, every label optional per structure): loss on energy
    per atom, forces, dipole and, where structures have them, polarizability and Born charges
    (squared errors, each averaged over the structures or atoms that carry the label). The
    dipole of a periodic cell is compared modulo the polarization quantum
    (`response.fold_polarization`).

    Each structure becomes a `batch.Graph` once (edges within the cutoff, in its own field);
    batches of `batch_size` structures are `batch.pack`ed under one bucketed budget that fits
    any `batch_size` structures of the data, so the step compiles once, and evaluated by
    `evaluate.energy_observables`, as `predict` does."""

    def __init__(self, config: EFieldNequIPConfig, loss_weights):
        self.config = config
        self.weights = {k: float(v) for k, v in loss_weights.items() if v}
        unknown = set(self.weights) - set(data_io.LABELS)
        if unknown:
            raise ValueError(f"unknown loss terms {sorted(unknown)}")
        self.response = bool({"polarizability", "born_charges"} & set(self.weights))

    def rows(self, data):
        """The data set with every structure's graph and edge count (computed once: rows of
        rows are rows). Structures of species outside the model, and a nonzero loss weight on a
        label no structure has, are ValueErrors."""
        if "graphs" in data:
            return data
        data_io.validate(data, self.config.species)
        missing = sorted(k for k in self.weights if not data_io.has(data, k).any())
        if missing:
            raise ValueError(f"the loss weights {sorted(self.weights)} need {missing}, which no "
                             "structure of the data has: set those weights to 0 or add the labels")
        from ase import Atoms

        start = data_io.offsets(data["num_atoms"])
        graphs = [batching.structure_graph(
            Atoms(numbers=data["numbers"][start[k]:start[k + 1]],
                  positions=data["positions"][start[k]:start[k + 1]],
                  cell=data["cell"][k], pbc=bool(data["pbc"][k])),
            self.config.r_cut, self.config.species, data["field"][k], name=f"structure {k}")
            for k in range(len(data["num_atoms"]))]
        return dict(data, graphs=graphs, num_edges=batching.sizes(graphs)[1])

    @staticmethod
    def num_rows(rows):
        return len(rows["num_atoms"])

    def response_rows(self, rows):
        """Indices of the structures with a response label the loss uses."""
        return np.flatnonzero(sum((data_io.has(rows, k) for k in ("polarizability", "born_charges")
                                   if k in self.weights), np.zeros(self.num_rows(rows), bool)))

    @staticmethod
    def batches(rows, order, batch_size, drop_remainder):
        """Consecutive chunks of `batch_size` rows of `order`."""
        stop = len(order) - len(order) % batch_size if drop_remainder else len(order)
        return [order[i:i + batch_size] for i in range(0, stop, batch_size)]

    @staticmethod
    def budget(rows, batch_size):
        """The bucketed (atoms, edges, structures) budget that fits any `batch_size` structures
        of `rows`: one shape for every batch, so the step compiles once."""
        largest = lambda x: int(np.sort(x)[-batch_size:].sum())  # noqa: E731
        return (batching.bucket(largest(rows["num_atoms"]) + 1),
                batching.bucket(largest(rows["num_edges"])), batching.bucket(batch_size + 1))

    def batch(self, rows, indices, batch_size):
        """`batch.pack` of the structures `indices` under `budget`, with their labels: energy,
        dipole, polarizability (G,...), forces, born_charges (A,...), has_<label> (G,), and
        weight (1 for real structures), num_atoms and periodic (G,)."""
        A, _, G = budget = self.budget(rows, batch_size)
        out = batching.pack([rows["graphs"][k] for k in indices], budget)
        n = len(indices)
        per_structure = dict(weight=np.ones(n), num_atoms=rows["num_atoms"][indices],
                             periodic=rows["pbc"][indices])
        atoms = data_io.atom_indices(rows["num_atoms"], indices)
        per_atom = {}
        for label in data_io.LABELS:
            if label in self.weights or label in rows:
                per_structure[f"has_{label}"] = data_io.has(rows, label)[indices]
            if label in rows:
                (per_atom if label in data_io.PER_ATOM else per_structure)[label] = \
                    rows[label][atoms if label in data_io.PER_ATOM else indices]
        padded = lambda v, size: np.concatenate(  # noqa: E731
            [v, np.zeros((size - len(v), *np.shape(v)[1:]), np.asarray(v).dtype)])
        return dict(out, **{k: padded(v, G) for k, v in per_structure.items()},
                    **{k: padded(v, A) for k, v in per_atom.items()})

    def init(self, key, batch):
        return energy_network(self.config).init(key, *evaluate.energy_inputs(batch))

    def predict(self, params, batch, response=None):
        """energy, dipole (G,...), forces (A, 3); with response also polarizability (G, 3, 3)
        and born_charges (A, 3, 3): `evaluate.energy_observables`."""
        response = self.response if response is None else response
        return evaluate.energy_observables(self.config, response)(params, batch)

    def loss(self, params, batch, response=False):
        """Weighted squared errors; the polarizability and Born-charge terms only if `response`."""
        pred = self.predict(params, batch, response=response and self.response)
        errors = {k: pred[k] - batch[k] for k in self.weights if k in pred and k in batch}
        if "energy" in errors:
            errors["energy"] = errors["energy"] / jnp.maximum(batch["num_atoms"], 1)
        if "dipole" in errors:
            errors["dipole"] = response_fns.fold_polarization(errors["dipole"], batch["cell"],
                                                              batch["periodic"])
        terms = {}
        for label, error in errors.items():
            weight = batch["weight"] * batch[f"has_{label}"]
            if label in data_io.PER_ATOM:
                weight = batch["node_mask"] * weight[batch["node_graph"]]
            terms[label] = _weighted_mean(error ** 2, weight)
        total = sum(self.weights[k] * v for k, v in terms.items())
        return total, {f"mse_{k}": v for k, v in terms.items()}

    @staticmethod
    def unbatch(predictions, rows, indices):
        """Per-structure predictions of one batch: (B,...) and per-atom (atoms of B, ...)."""
        return _unbatch(predictions, int(rows["num_atoms"][indices].sum()), len(indices))

    @staticmethod
    def metrics(predictions, data):
        """Mean absolute errors over the structures (or their atoms) that carry each label:
        energy per atom (meV/atom), forces (meV/Å), dipole (e·Å; folded for periodic cells),
        polarizability (e·Å²/V and % of the mean isotropic polarizability), Born charges (e).
        `predictions` are laid out like the data set `data` (per-atom entries concatenated)."""
        owner = np.repeat(np.arange(len(data["num_atoms"])), data["num_atoms"])
        out = {}

        def error(label):
            rows = data_io.has(data, label)
            if label in data_io.PER_ATOM:
                rows = rows[owner]
            if label not in predictions or not rows.any():
                return None
            return np.asarray(predictions[label])[rows] - np.asarray(data[label])[rows], rows

        if (e := error("energy")) is not None:
            out["energy_mae_meV_per_atom"] = 1e3 * np.mean(np.abs(e[0]) / data["num_atoms"][e[1]])
        if (e := error("forces")) is not None:
            out["forces_mae_meV_per_A"] = 1e3 * np.mean(np.abs(e[0]))
        if (e := error("dipole")) is not None:
            folded = response_fns.fold_polarization(e[0], np.asarray(data["cell"])[e[1]],
                                                    np.asarray(data["pbc"])[e[1]])
            out["dipole_mae_eA"] = np.mean(np.abs(np.asarray(folded)))
        if (e := error("polarizability")) is not None:
            reference = np.asarray(data["polarizability"])[e[1]]
            out["polarizability_mae_eA2_per_V"] = np.mean(np.abs(e[0]))
            out["polarizability_mae_percent"] = 100 * np.mean(np.abs(e[0])) / np.mean(
                np.abs(np.trace(reference, axis1=1, axis2=2) / 3))
        if (e := error("born_charges")) is not None:
            out["born_charges_mae_e"] = np.mean(np.abs(e[0]))
        return {k: float(v) for k, v in out.items()}


def _unbatch(predictions, num_real_atoms, num_structures):
    """The real atoms' and structures' entries of a packed batch's predictions."""
    return {k: np.asarray(v)[:num_real_atoms if k in batching.PER_ATOM else num_structures]
            for k, v in predictions.items()}


def crystal_rows(crystals, config: EFieldNequIPConfig):
    """What `TensorTask` trains on: the `batch.Graph` of every crystal of a `data.read_crystals`
    dict (edges within `config.r_cut` over every periodic image, computed once on the host), atom
    and edge counts, and the labels. `data.select` cuts it into splits like the crystals."""
    from ase import Atoms

    graphs = [batching.structure_graph(Atoms(numbers=z, positions=R, cell=cell, pbc=True),
                                       config.r_cut, config.species, name=f"crystal {k}")
              for k, (z, R, cell) in enumerate(zip(crystals["numbers"], crystals["positions"],
                                                   crystals["cell"]))]
    num_atoms, num_edges = batching.sizes(graphs)
    return dict(graphs=graphs, num_atoms=num_atoms, num_edges=num_edges,
                born_charges=crystals["born_charges"], dielectric=crystals["dielectric"])


class TensorTask:
    """Born effective charges (per atom) and eps_inf (per crystal) of periodic crystals.

    Loss: `born_charges` weight x mean over Z* components (e) of rho(error), plus `dielectric`
    weight x mean over crystals of rho(relative Frobenius error |eps - eps_ref|_F / |eps_ref|_F),
    with rho(x) = x^2 or, given `huber_delta`, the Huber function (x^2 / 2 within delta, then
    linear: closer to the mean absolute error we report, and less pulled by outliers). The
    relative eps error is deliberate: eps_inf spans 1.7 to ~560 (near-metals), and an absolute
    loss would let the few crystals with eps in the hundreds dominate; relative errors weigh
    every crystal alike and are what we report.

    Batches hold up to `batch_size` crystals packed greedily under fixed node and edge budgets
    (`max_nodes`, `max_edges`), padded to exactly those sizes, so the step compiles once.
    """

    response = False

    def __init__(self, config: EFieldNequIPConfig, loss_weights, max_nodes, max_edges,
                 huber_delta=None):
        self.config = config
        self.penalty = jnp.square if huber_delta is None else \
            functools.partial(optax.huber_loss, delta=float(huber_delta))
        self.weights = {k: float(v) for k, v in loss_weights.items() if v}
        unknown = set(self.weights) - {"born_charges", "dielectric"}
        if unknown:
            raise ValueError(f"unknown loss terms {sorted(unknown)}")
        self.max_nodes, self.max_edges = int(max_nodes), int(max_edges)

    def rows(self, crystals):
        """The `crystal_rows` of a `data.read_crystals` dict (computed once: rows of rows are
        rows); a crystal larger than the batch budgets is a ValueError."""
        rows = crystals if "graphs" in crystals else crystal_rows(crystals, self.config)
        too_big = np.flatnonzero((rows["num_atoms"] > self.max_nodes) | (rows["num_edges"] > self.max_edges))
        if len(too_big):
            k = too_big[0]
            raise ValueError(f"{len(too_big)} crystals exceed the batch budget of {self.max_nodes} "
                             f"atoms and {self.max_edges} edges (first: crystal {k} with "
                             f"{rows['num_atoms'][k]} atoms and {rows['num_edges'][k]} edges)")
        return rows

    @staticmethod
    def budgets(rows, batch_size, slack=1.3):
        """Node and edge budgets for batches of `batch_size` crystals of `crystal_rows`:
        `slack` x the mean batch, and at least the largest crystal."""
        atoms, edges = rows["num_atoms"], rows["num_edges"]
        return (int(max(atoms.max(), np.ceil(slack * batch_size * atoms.mean()))),
                int(max(edges.max(), np.ceil(slack * batch_size * edges.mean()))))

    @staticmethod
    def num_rows(rows):
        return len(rows["dielectric"])

    def batches(self, rows, order, batch_size, drop_remainder):
        """Greedy packing of `order` (`batch.group`): a batch closes when the next crystal would
        exceed `batch_size` crystals or the node or edge budget (a partial last batch is kept)."""
        graphs = [rows["graphs"][k] for k in order]
        return [np.asarray(order)[g] for g in batching.group(
            graphs, max_atoms=self.max_nodes, max_edges=self.max_edges, max_structures=batch_size)]

    def batch(self, rows, indices, batch_size):
        """`batch.pack` of the crystals `indices` under the fixed budgets (so the step compiles
        once), with their labels: born_charges (A, 3, 3), dielectric (G, 3, 3) and weight (G,)
        (1 for real crystals). Padding structures get eps = 2 I, not the I they predict: the
        relative error's norm has no gradient at zero, and NaN x weight 0 is still NaN."""
        out = batching.pack([rows["graphs"][k] for k in indices],
                            (self.max_nodes + 1, self.max_edges, batch_size + 1))
        born = np.zeros((self.max_nodes + 1, 3, 3))
        born[:out["node_mask"].sum()] = np.concatenate([rows["born_charges"][k] for k in indices])
        dielectric = np.tile(2 * np.eye(3), (batch_size + 1, 1, 1))
        dielectric[:len(indices)] = rows["dielectric"][indices]
        return dict(out, born_charges=born, dielectric=dielectric,
                    weight=out["graph_mask"].astype(float))

    def init(self, key, batch):
        return tensor_network(self.config, num_graphs=len(batch["weight"])).init(
            key, *evaluate.tensor_inputs(batch))

    def predict(self, params, batch, response=None):
        """born_charges (A, 3, 3) (zero for padding) and dielectric (G, 3, 3)."""
        return evaluate.tensor_observables(self.config)(params, batch)

    def loss(self, params, batch, response=False):
        pred = self.predict(params, batch)
        node_weight = batch["node_mask"].astype(pred["born_charges"].dtype)
        terms = dict(born_charges=_weighted_mean(self.penalty(pred["born_charges"] - batch["born_charges"]),
                                                 node_weight),
                     dielectric=_weighted_mean(self.penalty(_relative_frobenius(pred["dielectric"],
                                                                                batch["dielectric"])),
                                               batch["weight"]))
        total = sum(self.weights.get(k, 0.0) * v for k, v in terms.items())
        return total, {f"loss_{k}": v for k, v in terms.items()}

    @staticmethod
    def unbatch(predictions, rows, indices):
        return _unbatch(predictions, int(rows["num_atoms"][indices].sum()), len(indices))

    @staticmethod
    def metrics(predictions, data):
        """Born charges: component MAE (e) over all atoms; eps_inf: component MAE, mean and
        median relative Frobenius error, and the fractions of crystals below 25 % and 10 %."""
        ref_born = np.concatenate(data["born_charges"]) if isinstance(data["born_charges"], list) \
            else data["born_charges"]
        rel = np.asarray(_relative_frobenius(predictions["dielectric"], data["dielectric"]))
        return dict(born_charges_mae_e=float(np.mean(np.abs(predictions["born_charges"] - ref_born))),
                    dielectric_mae=float(np.mean(np.abs(predictions["dielectric"] - data["dielectric"]))),
                    dielectric_rel_frobenius_mean=float(rel.mean()),
                    dielectric_rel_frobenius_median=float(np.median(rel)),
                    dielectric_fraction_below_25_percent=float(np.mean(rel < 0.25)),
                    dielectric_fraction_below_10_percent=float(np.mean(rel < 0.10)))


def _relative_frobenius(eps, ref):
    """|eps - ref|_F / |ref|_F for stacks (G, 3, 3)."""
    return jnp.linalg.norm(eps - ref, axis=(-2, -1)) / jnp.linalg.norm(ref, axis=(-2, -1))


@functools.lru_cache(maxsize=16)
def _jitted_predict(task, response):
    """One compiled predictor per (task, response), reused by every evaluation."""
    return jax.jit(lambda params, batch: task.predict(params, batch, response=response))


def predict_all(task, params, data, batch_size, response=None, devices=None):
    """Predictions for every row of `data` (padded batches of a fixed shape; split over
    `devices`, default all, with `batch.shard`)."""
    rows = task.rows(data)
    if response is None:
        response = task.response and len(task.response_rows(rows)) > 0
    predict = _jitted_predict(task, response)
    chunks = []
    for idx in task.batches(rows, np.arange(task.num_rows(rows)), batch_size, drop_remainder=False):
        out = jax.device_get(predict(params, batching.shard(task.batch(rows, idx, batch_size), devices)))
        chunks.append(task.unbatch(out, rows, idx))
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


@functools.lru_cache(maxsize=8)
def _optimizer_and_step(task, settings):
    """Learning-rate schedule, optimiser, jitted train step and its trace counter for a
    (task, settings) pair, built once so that repeated or resumed runs in one process reuse the
    compiled step. The counter counts traces of the step's body, i.e. compilations."""
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, settings.learning_rate, settings.warmup_steps, max(settings.steps, settings.warmup_steps + 1),
        settings.learning_rate * settings.final_lr_fraction)
    optimizer = optax.chain(optax.clip_by_global_norm(settings.grad_clip), optax.adam(schedule))

    traces = [0]

    @functools.partial(jax.jit, static_argnames="response")
    def train_step(params, ema_params, opt_state, step, batch, response):
        traces[0] += 1  # Python side effect: runs only while tracing
        (loss, terms), grads = jax.value_and_grad(task.loss, has_aux=True)(params, batch, response)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        decay = jnp.minimum(settings.ema_decay, (1.0 + step) / (10.0 + step))
        ema_params = jax.tree_util.tree_map(lambda e, p: decay * e + (1 - decay) * p, ema_params, params)
        return params, ema_params, opt_state, loss, terms

    return schedule, optimizer, train_step, traces


def train(task, train_data, val_data, settings: TrainSettings, out_dir, resume=False,
          progress=True, stop_after=None, init_params=None, run_config=None, devices=None):
    """Train `task`; writes checkpoint.npz and metrics.csv to `out_dir`.

    Deterministic for given data, settings and seed: batch order of epoch e comes from
    (seed, e), so a run resumed from any checkpoint ends where an uninterrupted one would.
    `run_config` (JSON-able, e.g. a training YAML config as a dict) is stored in the checkpoint
    with its `training` entry set to `settings` and `model` to the task's model config;
    `resume` refuses (ValueError) a checkpoint that is missing, unreadable, of another run
    config (listing what differs) or of other parameter shapes.
    `stop_after` ends the run early after that many steps (to test resuming).
    `init_params` starts from given parameters (fine-tuning a trained model: a warm restart
    with a fresh optimiser and schedule) instead of a random initialisation.
    `devices` (default: all of jax.devices()): every batch is split over them (`batch.shard`:
    data parallel, parameters replicated; XLA reduces the gradients), giving the updates of one
    device.
    Returns the final state dict (params, ema_params, opt_state, step, ...); its
    `compilations` counts the compilations of the train step: one per step kind (with and
    without response terms), so any more would be a recompilation.
    """
    os.makedirs(out_dir, exist_ok=True)
    ckpt_path = os.path.join(out_dir, "checkpoint.npz")
    run_config = dict(run_config or {}, training=dataclasses.asdict(settings),
                      model=task.config.to_dict())
    rows = task.rows(train_data)
    val_data = task.rows(val_data)
    m = task.num_rows(rows)
    if m < settings.batch_size:
        raise ValueError(f"{m} training rows are fewer than one batch ({settings.batch_size})")

    response_every = settings.response_every if task.response else 0
    response_rows = task.response_rows(rows) if response_every else np.zeros(0, int)
    if response_every and len(response_rows) < settings.batch_size:
        raise ValueError(f"response_every needs at least one batch ({settings.batch_size}) of rows "
                         f"with response labels, the training split has {len(response_rows)}")

    def is_response_step(step):
        return bool(response_every) and step % response_every == response_every - 1

    pools = (np.arange(m), response_rows)
    epoch_ends = ([], [])  # per stream: cumulative number of batches at the end of each epoch

    @functools.lru_cache(maxsize=4)
    def epoch_plan(stream, epoch):
        """The batches (row indices) of one epoch of a stream, from (seed, stream, epoch)."""
        pool = pools[stream]
        order = pool[np.random.default_rng([settings.seed, stream, epoch]).permutation(len(pool))]
        return task.batches(rows, order, settings.batch_size, drop_remainder=True)

    def batch_at(step):
        """The batch of `step`, a function of (seed, step) alone."""
        stream, index = (1, step // response_every) if is_response_step(step) else (0, step)
        ends = epoch_ends[stream]
        while not ends or ends[-1] <= index:
            ends.append((ends[-1] if ends else 0) + len(epoch_plan(stream, len(ends))))
        epoch = int(np.searchsorted(ends, index, side="right"))
        position = index - (ends[epoch - 1] if epoch else 0)
        return batching.shard(task.batch(rows, epoch_plan(stream, epoch)[position], settings.batch_size),
                              devices)

    schedule, optimizer, train_step, traces = _optimizer_and_step(task, settings)

    def initial_state():
        params = task.init(jax.random.PRNGKey(settings.seed), batch_at(0)) \
            if init_params is None else jax.tree_util.tree_map(jnp.asarray, init_params)
        return dict(params=params, ema_params=params, opt_state=optimizer.init(params), step=0,
                    train_seconds=0.0)

    if resume:
        state = checkpoint.load_checkpoint(ckpt_path, jax.eval_shape(initial_state), run_config)
    else:
        state = initial_state()
        with open(os.path.join(out_dir, "metrics.csv"), "w"):
            pass

    end = settings.steps if stop_after is None else min(settings.steps, stop_after)
    bar = tqdm(total=settings.steps, initial=state["step"], disable=not progress, desc="training",
               unit="step")
    running = []
    while state["step"] < end:
        start = time.perf_counter()
        params, ema, opt_state, loss, terms = train_step(
            state["params"], state["ema_params"], state["opt_state"], state["step"],
            batch_at(state["step"]), is_response_step(state["step"]))
        if not np.isfinite(float(loss)):
            raise FloatingPointError(f"loss is {float(loss)} at step {state['step']}")
        state.update(params=params, ema_params=ema, opt_state=opt_state, step=state["step"] + 1,
                     train_seconds=state["train_seconds"] + time.perf_counter() - start)
        running.append(float(loss))
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(running[-50:]):.3g}")
        step = state["step"]
        if step % settings.eval_every == 0 or step == settings.steps:
            metrics = task.metrics(predict_all(task, state["ema_params"], val_data, settings.batch_size,
                                               devices=devices), val_data)
            _append_csv(os.path.join(out_dir, "metrics.csv"),
                        dict(step=step, lr=float(schedule(step)), train_loss=np.mean(running), **metrics))
            running = []
            bar.write(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
        if step % settings.checkpoint_every == 0 or step == end:
            checkpoint.save_checkpoint(ckpt_path, state, run_config)
    bar.close()
    state["compilations"] = traces[0]
    return state


def _append_csv(path, row):
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def parity_plots(predictions, data, path, title=""):
    """Predicted vs reference for every quantity present, one panel each, saved as PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = dict(energy="energy (eV)", forces="forces (eV/Å)", dipole="dipole (e·Å)",
                  polarizability="polarizability (e·Å²/V)", born_charges="Born charges (e)",
                  dielectric="eps_inf components")
    keys = [k for k in labels if k in predictions]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.6))
    for ax, key in zip(np.atleast_1d(axes), keys):
        ref = np.array(data[key] if not isinstance(data[key], list) else np.concatenate(data[key]))
        pred = np.array(predictions[key])  # copies: the energies are shifted below
        if f"has_{key}" in data:  # only the structures (their atoms) that carry the label
            rows = np.asarray(data[f"has_{key}"], bool)
            rows = np.repeat(rows, data["num_atoms"]) if key in data_io.PER_ATOM else rows
            ref, pred = ref[rows], pred[rows]
        if key == "energy":  # relative to the mean reference energy of each molecule
            formulas = data_io.formulas(data)[data_io.has(data, "energy")]
            for formula in set(formulas):
                same = formulas == formula
                pred[same], ref[same] = pred[same] - ref[same].mean(), ref[same] - ref[same].mean()
        ref, pred = ref.ravel(), pred.ravel()
        ax.plot(ref, pred, ".", ms=2, alpha=0.5)
        lims = [min(ref.min(), pred.min()), max(ref.max(), pred.max())]
        ax.plot(lims, lims, "k-", lw=0.8)
        if key == "dielectric":  # eps_inf spans 1.7 to several hundred
            ax.set_xscale("symlog", linthresh=1.0)
            ax.set_yscale("symlog", linthresh=1.0)
        ax.set_xlabel(f"reference {labels[key]}")
        ax.set_ylabel("model")
        ax.set_title(f"MAE {np.mean(np.abs(pred - ref)):.3g}", fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def energy_statistics(data, species):
    """Per-species energy shift (least squares of E on composition over the structures with an
    energy, minimum-norm: one molecule gives equal shares) and a scale (RMS force component), from
    a training data set."""
    owner = np.repeat(np.arange(len(data["num_atoms"])), data["num_atoms"])
    counts = np.zeros((len(data["num_atoms"]), len(species)))
    np.add.at(counts, (owner, graph.species_indices(data["numbers"], species)), 1.0)
    rows = data_io.has(data, "energy")
    shift, *_ = np.linalg.lstsq(counts[rows], np.asarray(data["energy"])[rows], rcond=None)
    forces = np.asarray(data["forces"])[data_io.has(data, "forces")[owner]]
    return tuple(float(s) for s in shift), float(np.sqrt(np.mean(forces ** 2)))


def save_summary(path, summary):
    with open(path, "w") as f:
        json.dump(summary, f, indent=1)
