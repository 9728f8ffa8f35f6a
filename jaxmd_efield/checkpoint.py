"""Checkpoints (full training state, for --resume) and exported models (config + params, for
shipping and `load_pretrained`). Both are .npz files of plain arrays with a JSON `__header__`
(read without pickle), written atomically: write to a temporary file, then rename, so a killed
run never leaves a half-written file under the final name. Reading checks what it reads: an
unreadable file, or arrays that do not fit the model, is a ValueError naming the file."""

import dataclasses
import functools
import json
import os
import zipfile
import zlib

import jax
import numpy as np

from jaxmd_efield.nn.nequip import EFieldNequIPConfig, energy_network
from jaxmd_efield.nn.tensor import tensor_network

PRETRAINED_DIR = os.path.join(os.path.dirname(__file__), "pretrained")
#: what np.load and json raise for a truncated or corrupt .npz
_UNREADABLE = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error)
_RESUME_ADVICE = "start without --resume (resume=False), or point --out at the run's directory"


def _atomic_write(path, write):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_npz(path, what, advice, required):
    """(JSON header, {key: array}) of an .npz written by this module; a missing or unreadable
    file, or a header without the `required` entries, is a ValueError naming `path` with
    `advice` (what to do)."""
    if not os.path.isfile(path):
        raise ValueError(f"no {what} at {path}: {advice}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
        header = json.loads(str(arrays.pop("__header__"))) if "__header__" in arrays else {}
    except _UNREADABLE as err:
        raise ValueError(f"{path} is not a readable {what} (truncated or corrupt: {err}); "
                         f"{advice}") from err
    missing = [key for key in required if key not in header]
    if missing:
        raise ValueError(f"{path} is not a {what}: its JSON __header__ lacks {missing}; {advice}")
    return header, arrays


def _check_shapes(path, found, expected, advice):
    """ValueError naming `path` and the first keys missing from, unexpected in, or of another
    shape in `found` ({key: shape}) than in `expected`."""
    problems = [f"missing {k} {s}" for k, s in expected.items() if k not in found]
    problems += [f"unexpected {k} {s}" for k, s in found.items() if k not in expected]
    problems += [f"{k} has shape {found[k]}, expected {s}" for k, s in expected.items()
                 if k in found and found[k] != s]
    if problems:
        raise ValueError(f"{path}: {len(problems)} arrays do not fit ({'; '.join(problems[:5])}"
                         f"{'; ...' if len(problems) > 5 else ''}); {advice}")


def save_checkpoint(path, state, run_config):
    """Write a training state as .npz: the arrays of its pytrees (params, ema_params,
    opt_state) keyed by their `jax.tree_util.keystr` paths, and a JSON header with its numbers
    (step, train_seconds) and `run_config` (JSON-able: what the run was made from)."""
    state = jax.device_get(state)
    numbers = {k: v for k, v in state.items() if isinstance(v, (int, float))}
    leaves = jax.tree_util.tree_flatten_with_path({k: v for k, v in state.items() if k not in numbers})[0]
    arrays = {jax.tree_util.keystr(key): np.asarray(value) for key, value in leaves}
    header = json.dumps(dict(numbers=numbers, run_config=run_config))
    _atomic_write(path, lambda f: np.savez(f, __header__=np.array(header), **arrays))


def load_checkpoint(path, template, run_config=None):
    """The training state saved by `save_checkpoint` at `path`, its arrays restored into the
    structure of `template` (the state a fresh run starts from, or its `jax.eval_shape`).

    ValueError, naming the file and what to do, for a missing or unreadable file, arrays that
    do not fit the template (keys and shapes), or, given `run_config`, a run config other than
    the saved one (listing the differences)."""
    header, arrays = _read_npz(path, "training checkpoint", _RESUME_ADVICE, ("numbers", "run_config"))
    if run_config is not None:
        _check_same_run(path, header["run_config"], run_config)
    numbers = header["numbers"]
    leaves, treedef = jax.tree_util.tree_flatten_with_path(
        {k: v for k, v in template.items() if k not in numbers})
    expected = {jax.tree_util.keystr(key): np.shape(leaf) for key, leaf in leaves}
    _check_shapes(path, {k: v.shape for k, v in arrays.items()}, expected,
                  "the checkpoint is of another model or optimiser: " + _RESUME_ADVICE)
    return dict(jax.tree_util.tree_unflatten(treedef, [arrays[k] for k in expected]), **numbers)


def _flatten(config, prefix=""):
    """Nested dicts as {"section.key": value}."""
    if not isinstance(config, dict) or not config:
        return {prefix[:-1]: config}
    return {k: v for key, value in config.items() for k, v in _flatten(value, f"{prefix}{key}.").items()}


def _check_same_run(path, saved, run_config):
    """ValueError listing the entries (old -> new) in which `run_config` differs from the
    `saved` one (compared as JSON)."""
    old, new = _flatten(saved), _flatten(json.loads(json.dumps(run_config)))
    absent = "(absent)"
    changes = [f"{k}: {old.get(k, absent)} -> {new.get(k, absent)}"
               for k in sorted(set(old) | set(new)) if old.get(k, absent) != new.get(k, absent)]
    if changes:
        raise ValueError(f"{path} was written by a run with another configuration: "
                         f"{'; '.join(changes)}. Resume with the original configuration, or start "
                         "a new run without --resume (in another output directory)")


KINDS = ("energy", "tensor")


@dataclasses.dataclass(frozen=True)
class Model:
    """A trained model: its kind ("energy": the field-dependent energy network,
    `energy.efield_nequip_neighbor_list`; "tensor": Born charges and eps_inf,
    `tensor.born_dielectric_neighbor_list`), static config, parameters and metadata
    (training data, steps, metrics)."""

    config: EFieldNequIPConfig
    params: dict
    metadata: dict = dataclasses.field(default_factory=dict)
    kind: str = "energy"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"model kind must be one of {KINDS}, got {self.kind!r}")


def save_model(path, config: EFieldNequIPConfig, params, metadata=None, kind="energy"):
    """Export a trained model as .npz: flattened params, the kind, config and metadata as JSON."""
    if kind not in KINDS:
        raise ValueError(f"model kind must be one of {KINDS}, got {kind!r}")
    flat = {f"{module}::{name}": np.asarray(value)
            for module, names in jax.device_get(params).items() for name, value in names.items()}
    header = json.dumps(dict(kind=kind, config=config.to_dict(), metadata=metadata or {}))
    _atomic_write(path, lambda f: np.savez_compressed(f, __header__=np.array(header), **flat))


@functools.lru_cache(maxsize=8)
def parameter_shapes(config: EFieldNequIPConfig, kind="energy"):
    """{"module::name": shape} of the parameters of a fresh network of `config` and `kind`,
    from an abstract init (`jax.eval_shape`, on a 2-atom graph with one edge each way; about
    2 s for the shipped models, so cached)."""
    graph = (np.zeros(2, np.int32), np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]),
             np.array([0, 1]), np.array([1, 0]), np.ones(2, bool))
    network, inputs = (energy_network(config), graph + (np.zeros((2, 3)),)) if kind == "energy" \
        else (tensor_network(config), graph + (np.zeros(2, np.int32), np.ones(2, bool)))
    params = jax.eval_shape(network.init, jax.random.PRNGKey(0), *inputs)
    return {f"{module}::{name}": value.shape for module, names in params.items()
            for name, value in names.items()}


def load_model(path):
    """The `Model` saved by `save_model`. A missing, unreadable or headerless file, or
    parameters that do not fit its config (names and shapes of `parameter_shapes`), is a
    ValueError naming the file."""
    advice = "export the model again (checkpoint.save_model, train.py --export) or load another file"
    header, arrays = _read_npz(path, "model file", advice, ("config", "metadata"))
    config, kind = EFieldNequIPConfig.from_dict(header["config"]), header.get("kind", "energy")
    if kind not in KINDS:
        raise ValueError(f"{path}: model kind must be one of {KINDS}, got {kind!r}; {advice}")
    _check_shapes(path, {k: v.shape for k, v in arrays.items()}, parameter_shapes(config, kind),
                  f"these parameters are not those of its {kind} model config; {advice}")
    params = {}
    for key, value in arrays.items():
        module, name = key.split("::")
        params.setdefault(module, {})[name] = value
    return Model(config, params, header["metadata"], kind)


def load_pretrained(name):
    """A `Model` shipped inside the package, `load_pretrained("ethanol-gfn2")` (energy model)
    or `load_pretrained("becs-eps")` (Born charges and eps_inf), or any exported model given by
    its .npz path."""
    if name.endswith(".npz"):
        return load_model(name)
    path = os.path.join(PRETRAINED_DIR, f"{name}.npz")
    if not os.path.exists(path):
        available = sorted(f[:-4] for f in os.listdir(PRETRAINED_DIR) if f.endswith(".npz")) \
            if os.path.isdir(PRETRAINED_DIR) else []
        raise ValueError(f"no pretrained model {name!r}; available: {available}")
    return load_model(path)
