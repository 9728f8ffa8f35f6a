"""Training the Born-charge / eps_inf model: crystal data, packed batches, resume, CLI, export
and the ASE calculator, on a small synthetic extended-XYZ set in the DFPT file's format."""

import dataclasses
import json

import ase.io
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from jax_md import custom_partition

import jaxmd_efield as jef
from jaxmd_efield import data as data_io, training
from conftest import TINY
from test_training import load_script

CONFIG = dataclasses.replace(TINY, species=(3, 8, 9, 11, 12, 17), r_cut=3.5)
WEIGHTS = dict(born_charges=1.0, dielectric=1.0)
SETTINGS = training.TrainSettings(batch_size=3, steps=8, learning_rate=5e-3, warmup_steps=2,
                                  eval_every=4, checkpoint_every=2, seed=0)


def synthetic_crystals(count, seed=0):
    """Strained, rattled rock-salt cells (primitive and 2x1x1 supercells of LiF, NaCl, MgO) with
    labels of the right form: Born charges summing to zero, eps_inf symmetric > 1."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(count):
        formula, a = [("LiF", 4.0), ("NaCl", 5.6), ("MgO", 4.2)][k % 3]
        atoms = bulk(formula, "rocksalt", a=a).repeat((1 + k % 2, 1, 1))
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.03 * rng.normal(size=(3, 3))), scale_atoms=True)
        atoms.positions += 0.05 * rng.normal(size=atoms.positions.shape)
        born = rng.normal(size=(len(atoms), 3, 3)) + np.where(atoms.numbers[:, None, None] < 12, 1.0, -1.0) * np.eye(3)
        born -= born.mean(0)
        m = rng.normal(size=(3, 3))
        atoms.arrays["becs"] = born.reshape(-1, 9)
        atoms.info["eps"] = (np.eye(3) * (2 + k) + m @ m.T).ravel()
        frames.append(atoms)
    return frames


@pytest.fixture(scope="module")
def xyz(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("crystals") / "crystals.xyz")
    ase.io.write(path, synthetic_crystals(12), format="extxyz")
    return path


def test_read_crystals_and_bad_files(xyz, tmp_path):
    crystals = data_io.read_crystals(xyz, species=CONFIG.species)
    assert len(crystals["numbers"]) == 12 and crystals["dielectric"].shape == (12, 3, 3)
    assert crystals["born_charges"][1].shape == (4, 3, 3)
    np.testing.assert_allclose(crystals["born_charges"][1].sum(0), 0.0, atol=1e-7)  # 8 decimals in the file
    with pytest.raises(ValueError, match=r"atomic numbers \[17\] are not in"):
        data_io.read_crystals(xyz, species=(3, 8, 9, 11, 12))
    bad = synthetic_crystals(2)
    del bad[1].info["eps"]
    ase.io.write(tmp_path / "no_eps.xyz", bad, format="extxyz")
    with pytest.raises(ValueError, match="structure 1 .* needs per-atom `becs` and per-structure `eps`"):
        data_io.read_crystals(str(tmp_path / "no_eps.xyz"))
    bad = synthetic_crystals(1)
    bad[0].arrays["becs"][0, 4] = np.nan
    ase.io.write(tmp_path / "nan.xyz", bad, format="extxyz")
    with pytest.raises(ValueError, match="NaN or inf"):
        data_io.read_crystals(str(tmp_path / "nan.xyz"))
    bad = synthetic_crystals(1)
    bad[0].pbc = (True, True, False)
    ase.io.write(tmp_path / "slab.xyz", bad, format="extxyz")
    with pytest.raises(ValueError, match="periodic in all three directions"):
        data_io.read_crystals(str(tmp_path / "slab.xyz"))


def test_packed_batches_match_the_jax_md_builder(xyz):
    """Greedy packing keeps every crystal once and within the budgets, and predictions on packed,
    padded batches equal the jax_md builder's, crystal by crystal."""
    crystals = data_io.read_crystals(xyz)
    rows = training.crystal_rows(crystals, CONFIG)
    max_nodes, max_edges = training.TensorTask.budgets(rows, 3, slack=1.0)
    task = training.TensorTask(CONFIG, WEIGHTS, max_nodes, max_edges)
    assert task.rows(rows) is rows and task.rows(crystals)["num_edges"].tolist() == rows["num_edges"].tolist()
    plan = task.batches(rows, np.arange(12)[::-1], 3, drop_remainder=False)
    assert sorted(np.concatenate(plan).tolist()) == list(range(12)) and len(plan) > 4
    for idx in plan:
        assert len(idx) <= 3 and rows["num_atoms"][idx].sum() <= max_nodes
        assert rows["num_edges"][idx].sum() <= max_edges
    params = task.init(jax.random.PRNGKey(1), task.batch(rows, plan[0], 3))
    pred = training.predict_all(task, params, rows, 3)
    offsets = np.concatenate([[0], np.cumsum(rows["num_atoms"])])
    for k in (0, 4, 11):  # LiF, NaCl 2x1x1, MgO 2x1x1
        neighbor_fn, _, tensor_fn = jef.born_dielectric_neighbor_list(
            None, jnp.asarray(crystals["cell"][k].T), crystals["numbers"][k], CONFIG,
            neighbor_list_fn=custom_partition.neighbor_list_multi_image)
        R = jnp.asarray(crystals["positions"][k])
        born, eps = jax.jit(tensor_fn)(params, R, neighbor_fn.allocate(R))  # eager e3nn is slow
        np.testing.assert_allclose(pred["born_charges"][offsets[k]:offsets[k + 1]], born, atol=1e-10)
        np.testing.assert_allclose(pred["dielectric"][k], eps, atol=1e-10)
    rel = np.linalg.norm(pred["dielectric"] - crystals["dielectric"], axis=(1, 2)) / np.linalg.norm(
        crystals["dielectric"], axis=(1, 2))
    metrics = task.metrics(pred, rows)
    assert metrics["dielectric_rel_frobenius_mean"] == pytest.approx(rel.mean())
    assert metrics["dielectric_fraction_below_25_percent"] == pytest.approx(np.mean(rel < 0.25))
    with pytest.raises(ValueError, match="exceed the batch budget"):
        training.TensorTask(CONFIG, WEIGHTS, 3, max_edges).rows(crystals)


def test_resume_reproduces_an_uninterrupted_run(xyz, tmp_path):
    crystals = data_io.read_crystals(xyz)
    rows = training.crystal_rows(crystals, CONFIG)
    task = training.TensorTask(CONFIG, WEIGHTS, *training.TensorTask.budgets(rows, 3))
    full = training.train(task, rows, rows, SETTINGS, str(tmp_path / "a"), progress=False)
    training.train(task, rows, rows, SETTINGS, str(tmp_path / "b"), progress=False, stop_after=3)
    other = training.TensorTask(dataclasses.replace(CONFIG, radial_hidden=16), WEIGHTS, task.max_nodes,
                                task.max_edges)
    with pytest.raises(ValueError, match=r"another configuration: model.radial_hidden: 8 -> 16\. Resume"):
        training.train(other, rows, rows, SETTINGS, str(tmp_path / "b"), progress=False, resume=True)
    resumed = training.train(task, rows, rows, SETTINGS, str(tmp_path / "b"), progress=False, resume=True)
    assert resumed["step"] == full["step"] == 8
    jax.tree_util.tree_map(np.testing.assert_array_equal, resumed["ema_params"], full["ema_params"])
    assert full["compilations"] == 1
    first, last = np.genfromtxt(tmp_path / "a" / "metrics.csv", delimiter=",", names=True)[[0, -1]]
    assert last["born_charges_mae_e"] < first["born_charges_mae_e"]


def test_cli_exports_a_tensor_model_for_the_calculator(xyz, tmp_path):
    model_cfg = {k: v for k, v in dataclasses.asdict(CONFIG).items() if k != "species"}
    config = dict(task="tensor", data=xyz, output=str(tmp_path / "run"),
                  split=dict(fractions=[0.75, 0.25], seed=0), model=model_cfg, loss=WEIGHTS,
                  training=dict(dataclasses.asdict(SETTINGS), steps=4))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    load_script("train").main(["--config", str(path), "--export", str(tmp_path / "becs.npz")])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["n_train"] == 9 and summary["n_validation"] == 3
    assert {"born_charges_mae_e", "dielectric_mae", "dielectric_rel_frobenius_mean",
            "dielectric_fraction_below_10_percent"} <= set(summary["validation"])
    assert (tmp_path / "run" / "parity_validation.png").exists()

    model = jef.load_pretrained(str(tmp_path / "becs.npz"))
    assert model.kind == "tensor" and model.config.species == CONFIG.species
    atoms = bulk("MgO", "rocksalt", a=4.2)
    atoms.positions[1] += [0.1, 0.0, -0.05]
    atoms.calc = calc = jef.EFieldCalculator(model)
    born = calc.get_property("born_effective_charges", atoms)
    eps = calc.get_property("dielectric_tensor", atoms)
    neighbor_fn, _, tensor_fn = jef.born_dielectric_neighbor_list(
        None, jnp.asarray(atoms.cell.array.T), atoms.numbers, model.config,
        neighbor_list_fn=custom_partition.neighbor_list_multi_image)
    R = jnp.asarray(atoms.positions)
    ref_born, ref_eps = jax.jit(tensor_fn)(model.params, R, neighbor_fn.allocate(R))
    np.testing.assert_allclose(born, ref_born, atol=1e-6)
    np.testing.assert_allclose(eps, ref_eps, atol=1e-6)
    np.testing.assert_allclose(born.sum(0), 0.0, atol=1e-5)
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_potential_energy()
