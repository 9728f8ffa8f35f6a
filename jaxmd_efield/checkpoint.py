"""Checkpoints (full training state, for --resume) and exported models (config + params, for
shipping and `load_pretrained`). Both are written atomically: write to a temporary file, then
rename, so a killed run never leaves a half-written file under the final name."""

import dataclasses
import json
import os
import pickle

import jax
import numpy as np

from jaxmd_efield.nn.nequip import EFieldNequIPConfig

PRETRAINED_DIR = os.path.join(os.path.dirname(__file__), "pretrained")


def _atomic_write(path, write):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(path, state):
    """state: a dict of pytrees and plain values (params, ema_params, opt_state, step, ...)."""
    host_state = jax.device_get(state)
    _atomic_write(path, lambda f: pickle.dump(host_state, f, protocol=pickle.HIGHEST_PROTOCOL))


def load_checkpoint(path):
    with open(path, "rb") as f:
        return pickle.load(f)


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


def load_model(path):
    """The `Model` saved by `save_model`."""
    with np.load(path) as archive:
        header = json.loads(str(archive["__header__"]))
        params = {}
        for key in archive.files:
            if key != "__header__":
                module, name = key.split("::")
                params.setdefault(module, {})[name] = archive[key]
    return Model(EFieldNequIPConfig.from_dict(header["config"]), params, header["metadata"],
                 header.get("kind", "energy"))


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
