"""Training library and CLI on a tiny real GFN2-xTB data set made here."""

import dataclasses
import functools
import importlib.util
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from ase.build import molecule
from jax_md import space

import jaxmd_efield as jef
from jaxmd_efield import checkpoint, data as data_io, training
from jaxmd_efield.reference import xtb_field_derivatives, xtb_in_field
from conftest import TINY

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
    """24 distorted ethanols in random fields with xTB labels, every 3rd with response."""
    rng = np.random.default_rng(0)
    mol = molecule("CH3CH2OH")
    rows = []
    for k in range(24):
        R = mol.positions + rng.normal(scale=0.05, size=mol.positions.shape)
        F = rng.normal(size=3) * 0.15
        row = dict(positions=R, field=F, trajectory=k // 4, has_response=k % 3 == 0,
                   **xtb_in_field(mol.numbers, R, F))
        row.update(xtb_field_derivatives(mol.numbers, R, F) if row["has_response"] else
                   dict(polarizability=np.zeros((3, 3)), born_charges=np.zeros((9, 3, 3))))
        rows.append(row)
    data = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    data["numbers"] = mol.numbers
    path = str(tmp_path_factory.mktemp("data") / "tiny.h5")
    data_io.write_dataset(path, data, attrs=dict(note="test"))
    return path


def test_dataset_round_trip_and_bad_data(tiny_data, tmp_path):
    data, attrs = data_io.read_dataset(tiny_data, species=(1, 6, 8))
    assert attrs["note"] == "test" and data["positions"].shape == (24, 9, 3)
    with pytest.raises(ValueError, match=r"atomic numbers \[6, 8\] are not in"):
        data_io.validate(data, species=(1,))
    bad = {k: v for k, v in data.items() if k != "forces"}
    with pytest.raises(ValueError, match="missing"):
        data_io.validate(bad)
    with pytest.raises(ValueError, match="shape"):
        data_io.validate(dict(data, dipole=data["dipole"][:, :2]))
    energy = data["energy"].copy()
    energy[5] = np.nan
    with pytest.raises(ValueError, match="NaN or inf in 1 configurations"):
        data_io.validate(dict(data, energy=energy))
    born = data["born_charges"].copy()
    born[1] = np.nan  # row 1 has no response: ignored
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


def test_energy_task_refuses_data_of_other_atoms(tiny_data):
    """Data of another molecule with as many atoms would silently train with the wrong species."""
    data, _ = data_io.read_dataset(tiny_data)
    task = training.EnergyTask(TINY, data["numbers"], WEIGHTS)
    with pytest.raises(ValueError, match=r"the data are of atoms \[8, 6, 6, 1, 1, 1, 1, 1, 1\], but "
                                         r"the task was built for \[6, 6, 8, 1, 1, 1, 1, 1, 1\]"):
        task.rows(dict(data, numbers=data["numbers"][[2, 0, 1, 3, 4, 5, 6, 7, 8]]))


def test_train_compiles_once_and_resume_reproduces(tiny_data, tmp_path):
    data, _ = data_io.read_dataset(tiny_data)
    task = training.EnergyTask(TINY, data["numbers"], WEIGHTS)
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
    task = training.EnergyTask(TINY, data["numbers"], WEIGHTS)
    params = task.init(jax.random.PRNGKey(3), task.batch(task.rows(data), np.arange(4), 4))
    batch_pred = training.predict_all(task, params, {k: data[k][:5] for k in data if k != "numbers"},
                                      batch_size=4, response=True)
    neighbor_fn, _, energy_fn = jef.efield_nequip_neighbor_list(
        space.free()[0], 10.0, data["numbers"], TINY, disable_cell_list=True)
    response = jax.jit(jef.response.field_response(functools.partial(energy_fn, params)))
    for k in range(5):
        R = jnp.asarray(data["positions"][k])
        out = response(R, field=data["field"][k], neighbor=neighbor_fn.allocate(R))
        for key in ("energy", "forces", "dipole", "polarizability", "born_charges"):
            np.testing.assert_allclose(batch_pred[key][k], out[key], atol=1e-9, err_msg=key)


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
    for name in ("ethanol_gfn2", "ethanol_gfn2_finetune", "becs_eps"):
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
    plain = {k: data[k] for k in ("numbers", "positions", "field", "energy", "forces")}
    with pytest.raises(ValueError, match=r"need \['born_charges', 'dipole', 'polarizability', 'has_response'\]"):
        training.train(training.EnergyTask(TINY, data["numbers"], WEIGHTS), plain, plain, SETTINGS,
                       str(tmp_path / "x"), progress=False)
    task = training.EnergyTask(TINY, data["numbers"], dict(energy=1.0, forces=1.0))
    state = training.train(task, plain, plain, dataclasses.replace(SETTINGS, steps=2, eval_every=2),
                           str(tmp_path / "y"), progress=False)
    metrics = task.metrics(training.predict_all(task, state["ema_params"], plain, 4), plain)
    assert set(metrics) == {"energy_mae_meV_per_atom", "forces_mae_meV_per_A"}
