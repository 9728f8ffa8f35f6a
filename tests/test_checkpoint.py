"""Checkpoints and exported model files: safe format (no pickle), exact round trips, and clear
errors (naming the file, saying what to do) for missing, unreadable or non-fitting files."""

import dataclasses
import json
import re

import jax
import numpy as np
import optax
import pytest

from jaxmd_efield import checkpoint
from conftest import TINY

RUN = dict(data="a.h5", training=dict(learning_rate=0.005, steps=10), model=dict(num_layers=2))


def assert_clear_error(call, path, *patterns):
    """`call()` raises a ValueError whose message names `path` and matches every pattern."""
    with pytest.raises(ValueError) as err:
        call()
    for pattern in (re.escape(str(path)),) + patterns:
        assert re.search(pattern, str(err.value)), (pattern, str(err.value))


def training_state(shape=(2, 3)):
    """A small state of the trainer's form: params, EMA, an optax chain state, step, seconds."""
    params = {"linear": {"w": np.arange(np.prod(shape), dtype=float).reshape(shape) / 7,
                         "b": np.full(shape[-1], 0.1)}}
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
    opt_state = optimizer.init(params)
    _, opt_state = optimizer.update(jax.tree_util.tree_map(np.ones_like, params), opt_state, params)
    return dict(params=params, ema_params=jax.tree_util.tree_map(lambda x: x / 3, params),
                opt_state=opt_state, step=17, train_seconds=12.25)


def test_checkpoint_round_trip_is_exact_and_pickle_free(tmp_path):
    path = str(tmp_path / "checkpoint.npz")
    state = training_state()
    checkpoint.save_checkpoint(path, state, RUN)
    with np.load(path, allow_pickle=False) as archive:  # plain arrays only
        assert "['opt_state'][1][0].mu['linear']['w']" in archive.files
        assert all(archive[k].dtype != object for k in archive.files)
    for template in (training_state(), jax.eval_shape(training_state)):
        loaded = checkpoint.load_checkpoint(path, template, RUN)
        assert jax.tree_util.tree_structure(loaded) == jax.tree_util.tree_structure(state)
        assert type(loaded["step"]) is int and loaded["train_seconds"] == 12.25
        jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, state)


@pytest.mark.parametrize("damage", ["missing", "empty", "truncated", "flipped", "garbage", "no header"])
def test_unreadable_checkpoints_are_clear_errors(tmp_path, damage):
    path = tmp_path / "checkpoint.npz"
    checkpoint.save_checkpoint(str(path), training_state(), RUN)
    content = path.read_bytes()
    if damage == "missing":
        path.unlink()
    elif damage == "no header":
        np.savez(path, w=np.ones(3))
    else:
        flipped = content[:600] + bytes(b ^ 0xFF for b in content[600:700]) + content[700:]
        path.write_bytes(dict(empty=b"", truncated=content[:len(content) // 2], flipped=flipped,
                              garbage=b"not a checkpoint" * 8)[damage])
    assert_clear_error(lambda: checkpoint.load_checkpoint(str(path), training_state(), RUN), path,
                       "start without --resume")


def test_checkpoint_must_fit_the_template(tmp_path):
    path = str(tmp_path / "checkpoint.npz")
    checkpoint.save_checkpoint(path, training_state(), RUN)
    template = training_state()
    assert_clear_error(lambda: checkpoint.load_checkpoint(path, training_state((2, 4))), path,
                       re.escape("['ema_params']['linear']['w'] has shape (2, 3), expected (2, 4)"),
                       "another model or optimiser: start without --resume")
    template["params"] = dict(template["params"], extra={"w": np.zeros(2)})
    assert_clear_error(lambda: checkpoint.load_checkpoint(path, template), path,
                       re.escape("missing ['params']['extra']['w'] (2,)"))
    del template["params"]["linear"]
    assert_clear_error(lambda: checkpoint.load_checkpoint(path, template), path,
                       re.escape("unexpected ['params']['linear']['b'] (3,)"))


def test_checkpoint_of_another_run_config_is_refused(tmp_path):
    path = str(tmp_path / "checkpoint.npz")
    checkpoint.save_checkpoint(path, training_state(), RUN)
    changed = dict(RUN, training=dict(RUN["training"], learning_rate=0.001), loss=dict(energy=1.0))
    assert_clear_error(lambda: checkpoint.load_checkpoint(path, training_state(), changed), path,
                       re.escape("another configuration: loss.energy: (absent) -> 1.0; "
                                 "training.learning_rate: 0.005 -> 0.001. Resume with"))


def tiny_params(config, kind="energy"):
    """Zero parameters of the shapes a fresh network of `config` and `kind` has."""
    params = {}
    for key, shape in checkpoint.parameter_shapes(config, kind).items():
        module, name = key.split("::")
        params.setdefault(module, {})[name] = np.zeros(shape)
    return params


def test_model_files_are_checked_against_their_config(tmp_path):
    params = tiny_params(TINY)
    good = tmp_path / "model.npz"
    checkpoint.save_model(str(good), TINY, params, dict(steps=3))
    model = checkpoint.load_model(str(good))
    assert model.config == TINY and model.metadata == dict(steps=3)
    jax.tree_util.tree_map(np.testing.assert_array_equal, model.params, params)

    content = good.read_bytes()
    (tmp_path / "truncated.npz").write_bytes(content[:len(content) // 2])
    np.savez(tmp_path / "headerless.npz", **{"a::b": np.ones(3)})
    checkpoint.save_model(str(tmp_path / "layers.npz"), dataclasses.replace(TINY, num_layers=3), params)
    wrong = jax.tree_util.tree_map(lambda x: x, params)
    module = next(m for m in wrong if "species_embedding" in m)
    wrong[module]["embeddings"] = np.zeros((4, 8))
    checkpoint.save_model(str(tmp_path / "shape.npz"), TINY, wrong)
    checkpoint.save_model(str(tmp_path / "kind.npz"), TINY, params, kind="tensor")
    header = dict(kind="scalar", config=TINY.to_dict(), metadata={})
    np.savez(tmp_path / "unknown_kind.npz", __header__=np.array(json.dumps(header)))
    for name, message in [("missing.npz", "no model file at"),
                          ("truncated.npz", "is not a readable model file"),
                          ("headerless.npz", r"JSON __header__ lacks \['config', 'metadata'\]"),
                          ("layers.npz", r"arrays do not fit \(.*missing [^;]*interaction_2/"),
                          ("shape.npz", r"embeddings has shape \(4, 8\), expected \(3, 8\)"),
                          ("kind.npz", r"missing [^;]*born_head"),
                          ("unknown_kind.npz", r"kind must be one of \('energy', 'tensor'\), got 'scalar'")]:
        assert_clear_error(lambda: checkpoint.load_model(str(tmp_path / name)), tmp_path / name,
                           message, "export the model again")
