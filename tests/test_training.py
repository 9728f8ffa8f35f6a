"""Training library and CLI on a tiny real GFN2-xTB data set made here."""

import dataclasses
import functools
import importlib.util
import json
import pathlib

import jax
import jax.numpy as jnp
import h5py
import numpy as np
import pytest
import yaml
from jax_md import space

import jaxmd_efield as jef
from jaxmd_efield import checkpoint, data as data_io, training
from conftest import TINY, xtb_samples

ROOT = pathlib.Path(__file__).parents[1]
SETTINGS = training.TrainSettings(batch_size=4, steps=12, learning_rate=5e-3, warmup_steps=2,
                                  eval_every=6, checkpoint_every=3, seed=0, response_every=3)
WEIGHTS = dict(energy=100.0, forces=1.0, dipole=10.0, polarizability=1.0, born_charges=0.1)


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "training" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """24 distorted ethanols in random fields with xTB labels, every 3rd with response (HDF5)."""
    path = str(tmp_path_factory.mktemp("data") / "tiny.h5")
    data_io.write_dataset(path, data_io.from_samples(xtb_samples()), attrs=dict(note="test"))
    return path


def test_dataset_round_trip_and_bad_data(tiny_data, tmp_path):
    data, attrs = data_io.read_dataset(tiny_data, species=(1, 6, 8))
    assert attrs["note"] == "test" and data["positions"].shape == (24 * 9, 3)
    assert data["has_polarizability"].sum() == 8 and "has_energy" not in data
    with pytest.raises(ValueError, match=r"atomic numbers \[6, 8\] are not in the model's species "
                                         r"\(1,\) \(first in structure 0\)"):
        data_io.validate(data, species=(1,))
    bad = {k: v for k, v in data.items() if k != "num_atoms"}
    with pytest.raises(ValueError, match="missing"):
        data_io.validate(bad)
    with pytest.raises(ValueError, match="shape"):
        data_io.validate(dict(data, dipole=data["dipole"][:, :2]))
    forces = data["forces"].copy()
    forces[9 * 5 + 2] = np.nan
    with pytest.raises(ValueError, match=r"forces is NaN or inf in 1 structures \(first: structure 5\)"):
        data_io.validate(dict(data, forces=forces))
    born = data["born_charges"].copy()
    born[9:18] = np.nan  # structure 1 has no response: ignored
    data_io.validate(dict(data, born_charges=born))
    with pytest.raises(ValueError, match="unknown entries"):
        data_io.validate(dict(data, charges=data["energy"]))
    with pytest.raises(FileNotFoundError):
        data_io.read_dataset(str(tmp_path / "nope.h5"))
    content = pathlib.Path(tiny_data).read_bytes()
    (tmp_path / "cut.h5").write_bytes(content[:len(content) // 2])
    with pytest.raises(ValueError, match=f"{tmp_path / 'cut.h5'} is not a readable HDF5 data set "
                                         r"\(truncated or corrupt.*write it again"):
        data_io.read_dataset(str(tmp_path / "cut.h5"))


def test_older_one_molecule_hdf5_layout_is_read(tiny_data, tmp_path):
    """Files written before the ragged layout (the shipped model's data) read as the same data."""
    data, _ = data_io.read_dataset(tiny_data)
    old = dict(numbers=data["numbers"][:9], has_response=data["has_polarizability"],
               **{k: data[k].reshape(24, 9, *data[k].shape[1:]) if k in data_io.PER_ATOM else data[k]
                  for k in ("positions", "field", "energy", "forces", "dipole", "polarizability",
                            "born_charges", "trajectory")})
    with h5py.File(tmp_path / "old.h5", "w") as f:
        for key, value in old.items():
            f.create_dataset(key, data=value)
    again, _ = data_io.read_dataset(str(tmp_path / "old.h5"))
    assert set(again) == set(data)
    for key in data:
        np.testing.assert_array_equal(again[key], data[key], err_msg=key)


def test_train_compiles_once_and_resume_reproduces(tiny_data, tmp_path):
    data, _ = data_io.read_dataset(tiny_data)
    task = training.EnergyTask(TINY, WEIGHTS)
    whole = training.train(task, data, data, SETTINGS, str(tmp_path / "a"), progress=False)
    assert whole["step"] == SETTINGS.steps and whole["compilations"] == 2  # with / without response
    training.train(task, data, data, SETTINGS, str(tmp_path / "b"), progress=False, stop_after=7)
    template = {k: whole[k] for k in ("params", "ema_params", "opt_state", "step", "train_seconds")}
    assert checkpoint.load_checkpoint(str(tmp_path / "b" / "checkpoint.npz"), template)["step"] == 7
    with pytest.raises(ValueError, match="training.learning_rate: 0.005 -> 0.001"):
        training.train(task, data, data, dataclasses.replace(SETTINGS, learning_rate=1e-3),
                       str(tmp_path / "b"), resume=True, progress=False)
    with pytest.raises(ValueError, match="no training checkpoint at .*start without --resume"):
        training.train(task, data, data, SETTINGS, str(tmp_path / "c"), resume=True, progress=False)
    resumed = training.train(task, data, data, SETTINGS, str(tmp_path / "b"), resume=True,
                             progress=False)
    for a, b in zip(jax.tree_util.tree_leaves(whole["ema_params"]),
                    jax.tree_util.tree_leaves(resumed["ema_params"])):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    with open(tmp_path / "b" / "metrics.csv") as f:
        assert [line.split(",")[0] for line in f.read().split()[1:]] == ["6", "12"]


def test_batched_predictions_match_the_jax_md_builder(tiny_data):
    """Trainer and builder share parameters: predictions on a padded batch equal the builder's
    energy, forces, dipole, polarizability and Born charges."""
    data, _ = data_io.read_dataset(tiny_data)
    task = training.EnergyTask(TINY, WEIGHTS)
    params = task.init(jax.random.PRNGKey(3), task.batch(task.rows(data), np.arange(4), 4))
    batch_pred = training.predict_all(task, params, data_io.subset(data, range(5)), batch_size=4,
                                      response=True)
    neighbor_fn, _, energy_fn = jef.efield_nequip_neighbor_list(
        space.free()[0], 10.0, data["numbers"][:9], TINY, disable_cell_list=True)
    response = jax.jit(jef.response.field_response(functools.partial(energy_fn, params)))
    for k in range(5):
        R = jnp.asarray(data["positions"][9 * k:9 * k + 9])
        out = response(R, field=data["field"][k], neighbor=neighbor_fn.allocate(R))
        for key in ("energy", "forces", "dipole", "polarizability", "born_charges"):
            pred = batch_pred[key][9 * k:9 * k + 9] if key in data_io.PER_ATOM else batch_pred[key][k]
            np.testing.assert_allclose(pred, out[key], atol=1e-9, err_msg=key)


@pytest.mark.slow  # CLI end to end, ~80 s of compilation: `make test-slow`
def test_cli_trains_exports_and_reports(tiny_data, tmp_path):
    config = dict(data=tiny_data, output=str(tmp_path / "run"), split=dict(fractions=[0.5, 0.25, 0.25], seed=0),
                  model=dict(dataclasses.asdict(TINY), species=list(TINY.species)), loss=WEIGHTS,
                  training=dict(dataclasses.asdict(SETTINGS), steps=6))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    load_script("train").main(["--config", str(path), "--export", str(tmp_path / "exported.npz")])
    run = tmp_path / "run"
    for name in ("checkpoint.npz", "metrics.csv", "summary.json", "parity_test.png", "model.npz"):
        assert (run / name).exists(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["compilations_of_train_step"] == 2 and summary["steps"] == 6
    assert {"energy_mae_meV_per_atom", "forces_mae_meV_per_A", "dipole_mae_eA",
            "polarizability_mae_percent", "born_charges_mae_e"} <= set(summary["test"])
    model = checkpoint.load_model(str(tmp_path / "exported.npz"))
    assert model.config.energy_shift is not None and model.metadata["steps"] == 6
    with np.load(run / "checkpoint.npz") as saved:
        assert {k for k in saved.files if k.startswith("['ema_params']")} == {
            f"['ema_params']['{module}']['{name}']" for module in model.params for name in model.params[module]}
    path.write_text(yaml.safe_dump(dict(config, loss=dict(WEIGHTS, energy=1.0))))
    with pytest.raises(ValueError, match=r"another configuration: loss.energy: 100.0 -> 1.0; "
                                         r"training.steps: 6 -> 7\. Resume"):
        load_script("train").main(["--config", str(path), "--resume", "--steps", "7"])

    # fine-tuning: init_from starts from the exported model (its config, its parameters)
    finetune = dict(config, init_from=str(tmp_path / "exported.npz"), output=str(tmp_path / "ft"),
                    model=None, training=dict(config["training"], steps=2, learning_rate=1e-12))
    path.write_text(yaml.safe_dump(finetune))
    load_script("train").main(["--config", str(path)])
    tuned = checkpoint.load_model(str(tmp_path / "ft" / "model.npz"))
    assert tuned.config == model.config
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-9), tuned.params, model.params)
    path.write_text(yaml.safe_dump(dict(finetune, task="tensor")))
    with pytest.raises(ValueError, match="holds a model of kind 'energy', but the config's task is 'tensor'"):
        load_script("train").main(["--config", str(path)])


def test_cli_refuses_unknown_config_keys(tmp_path):
    """A misspelt key (here huber_delta, which only the tensor task has) would be silently
    ignored; the shipped training configs pass."""
    for name in ("ethanol_gfn2", "ethanol_gfn2_finetune", "becs_eps", "molecules_gfn2",
                 "molecules_gfn2_finetune", "molecules_gfn2_ethanol"):
        path = ROOT / "training" / "configs" / f"{name}.yaml"
        load_script("train").check_config(yaml.safe_load(path.read_text()), path)
    config = dict(data="d.h5", output=str(tmp_path), split=dict(fractions=[0.5, 0.5], seed=0),
                  model=dict(species=[1]), loss=dict(energy=1.0), training=dict(steps=2))
    path = tmp_path / "config.yaml"
    for section, bad, where in [(None, "huber_delta", "the top level"), ("split", "sead", "section 'split'"),
                                ("model", "num_layer", "section 'model'"),
                                ("training", "learning_rat", "section 'training'")]:
        path.write_text(yaml.safe_dump({**config, bad: 1} if section is None else
                                       {**config, section: {**config[section], bad: 1}}))
        with pytest.raises(ValueError, match=rf"{path}: unknown keys \['{bad}'\] in {where} \(task 'energy'\); "
                                             r"allowed: \[.*\]"):
            load_script("train").main(["--config", str(path)])


def test_data_generator_is_reproducible(tmp_path):
    make = load_script("make_ethanol_data")
    args = ["--n-trajectories", "2", "--samples-per-trajectory", "2", "--response-fraction", "0.5",
            "--workers", "1"]
    first = make.main(args + ["--out", str(tmp_path / "a.h5")])
    second = make.main(args + ["--out", str(tmp_path / "b.h5")])
    a, attrs = data_io.read_dataset(first, species=(1, 6, 8))
    b, _ = data_io.read_dataset(second)
    assert a["energy"].shape == (4,) and json.loads(attrs["config"])["n_trajectories"] == 2
    for key in a:  # tblite's OpenMP reductions differ in the last bits between runs
        np.testing.assert_allclose(a[key], b[key], rtol=1e-6, atol=1e-9, err_msg=key)
    assert np.all(np.linalg.norm(a["field"], axis=1) <= 0.5)


def test_energy_and_forces_only_data(tiny_data, tmp_path):
    """A user's data with energies and forces only: trains with those weights, and asking for a
    dipole loss is a clear error."""
    data, _ = data_io.read_dataset(tiny_data)
    plain = {k: data[k] for k in data_io.STRUCTURE + ("energy", "forces")}
    with pytest.raises(ValueError, match=r"need \['born_charges', 'dipole', 'polarizability'\], which no "
                                         "structure of the data has"):
        training.train(training.EnergyTask(TINY, WEIGHTS), plain, plain, SETTINGS,
                       str(tmp_path / "x"), progress=False)
    task = training.EnergyTask(TINY, dict(energy=1.0, forces=1.0))
    state = training.train(task, plain, plain, dataclasses.replace(SETTINGS, steps=2, eval_every=2),
                           str(tmp_path / "y"), progress=False)
    metrics = task.metrics(training.predict_all(task, state["ema_params"], plain, 4), plain)
    assert set(metrics) == {"energy_mae_meV_per_atom", "forces_mae_meV_per_A"}
