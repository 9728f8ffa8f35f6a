"""Training on the user's own data: molecules of different sizes and periodic cells in fields in
one data set, labels missing per structure, extended XYZ and HDF5 giving the same model, and
the periodic dipole compared modulo the polarization quantum."""

import dataclasses

import jax
import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule

import jaxmd_efield as jef
from jaxmd_efield import checkpoint, data as data_io, training
from conftest import TINY, xtb_samples

SETTINGS = training.TrainSettings(batch_size=4, steps=4, learning_rate=5e-3, warmup_steps=1,
                                  eval_every=4, checkpoint_every=4, seed=0, response_every=2)
WEIGHTS = dict(energy=100.0, forces=1.0, dipole=10.0, polarizability=1.0, born_charges=0.1)


@pytest.fixture(scope="module")
def mixed():
    """8 waters and 8 ethanols with GFN2-xTB labels; two waters without dipole, one ethanol
    without forces."""
    samples = xtb_samples(seed=1, count=8, name="H2O") + xtb_samples(seed=2, count=8)
    for k, sample in enumerate(samples[8:]):
        sample["trajectory"] += 2
    del samples[1]["dipole"], samples[2]["dipole"], samples[9]["forces"]
    return data_io.from_samples(samples)


def test_extended_xyz_and_hdf5_of_the_same_data_train_the_same_model(mixed, tmp_path):
    data_io.write_dataset(str(tmp_path / "mine.xyz"), mixed)
    from_xyz, _ = data_io.read_dataset(str(tmp_path / "mine.xyz"), species=TINY.species)
    data_io.write_dataset(str(tmp_path / "mine.h5"), from_xyz)
    from_h5, _ = data_io.read_dataset(str(tmp_path / "mine.h5"))
    assert from_xyz["num_atoms"].tolist() == [3] * 8 + [9] * 8
    assert from_xyz["has_dipole"].sum() == 14 and from_xyz["has_forces"].sum() == 15
    task = training.EnergyTask(TINY, WEIGHTS)
    a = training.train(task, from_xyz, from_xyz, SETTINGS, str(tmp_path / "a"), progress=False)
    b = training.train(task, from_h5, from_h5, SETTINGS, str(tmp_path / "b"), progress=False)
    assert a["compilations"] == 2  # with and without response terms, for molecules of two sizes
    for x, y in zip(jax.tree_util.tree_leaves(a["ema_params"]), jax.tree_util.tree_leaves(b["ema_params"])):
        np.testing.assert_array_equal(x, y)

    # the trainer's predictions of a mixed set are the batch predictor's, structure by structure
    model = checkpoint.Model(TINY, a["ema_params"])
    rows = task.rows(from_h5)
    batched = training.predict_all(task, model.params, rows, 4, response=True)
    frames = data_io.to_atoms(from_h5)
    single = jef.predict(model, frames, field=from_h5["field"], response=True)
    start = data_io.offsets(from_h5["num_atoms"])
    for k, result in enumerate(single):
        for key, value in result.items():
            got = batched[key][start[k]:start[k + 1]] if key in data_io.PER_ATOM else batched[key][k]
            np.testing.assert_allclose(got, value, rtol=1e-9, atol=1e-10, err_msg=f"{k} {key}")


def test_the_loss_uses_only_the_labels_a_structure_has(mixed):
    task = training.EnergyTask(TINY, WEIGHTS)
    rows = task.rows(mixed)
    batch = task.batch(rows, np.arange(8, 12), 4)  # ethanols; the second has no forces
    params = task.init(jax.random.PRNGKey(0), batch)
    jitted = jax.jit(lambda b: task.loss(params, b, response=True)[0])
    loss = lambda b: float(jitted(b))  # noqa: E731
    reference = loss(batch)
    garbage = dict(batch, forces=batch["forces"].copy())
    garbage["forces"][9:18] = 1e3  # the ethanol without forces
    assert loss(garbage) == reference
    garbage["forces"][:9] = 1e3  # one that has them
    assert loss(garbage) > reference + 1.0
    water = task.batch(rows, np.arange(0, 4), 4)  # waters 1 and 2 have no dipole
    garbage = dict(water, dipole=water["dipole"].copy())
    garbage["dipole"][1:3] = 50.0
    assert loss(garbage) == loss(water)


def water_cells(count, seed):
    """Periodic triclinic cells of two distorted waters in random fields, labelled by a random
    model with a random dipole offset (labels, not physics: this tests the bookkeeping)."""
    rng = np.random.default_rng(seed)
    cell = np.array([[5.0, 0.0, 0.0], [1.2, 4.6, 0.0], [-0.8, 0.7, 5.3]])
    frames = []
    for _ in range(count):
        w = molecule("H2O")
        atoms = Atoms(numbers=list(w.numbers) * 2,
                      positions=np.concatenate([w.positions + [0.5, 0.5, 0.5], w.positions + [2.5, 2.6, 2.4]])
                      + rng.normal(scale=0.05, size=(6, 3)), cell=cell, pbc=True)
        frames.append(atoms)
    return frames, rng.normal(size=(count, 3)) * 0.15


def test_periodic_cells_in_a_field_train_modulo_the_polarization_quantum(tmp_path):
    frames, fields = water_cells(8, seed=3)
    task = training.EnergyTask(TINY, dict(energy=1.0, forces=1.0, dipole=10.0))
    data = data_io.from_atoms(frames)
    data["field"] = fields
    unlabelled = training.EnergyTask(TINY, {})
    model_params = task.init(jax.random.PRNGKey(2), unlabelled.batch(unlabelled.rows(data), np.arange(4), 4))
    labels = jef.predict(checkpoint.Model(TINY, model_params), frames, field=fields)
    rng = np.random.default_rng(4)
    data.update(energy=np.array([r["energy"] for r in labels]) + rng.normal(size=8) * 0.01,
                forces=np.concatenate([r["forces"] for r in labels]) + rng.normal(size=(48, 3)) * 0.01,
                dipole=np.array([r["dipole"] for r in labels]) + rng.normal(size=(8, 3)) * 0.05)
    quanta = data["dipole"] + np.einsum("ga,gab->gb", rng.integers(-3, 4, size=(8, 3)), data["cell"])
    shifted = dict(data, dipole=quanta)

    rows, rows_shifted = task.rows(data), task.rows(shifted)
    batch, batch_shifted = (task.batch(r, np.arange(4), 4) for r in (rows, rows_shifted))
    loss_fn = jax.jit(lambda b: task.loss(model_params, b))
    loss, terms = loss_fn(batch)
    loss_shifted, terms_shifted = loss_fn(batch_shifted)
    assert float(terms["mse_dipole"]) > 0 and float(terms_shifted["mse_dipole"]) < 0.1
    np.testing.assert_allclose(float(loss_shifted), float(loss), rtol=1e-10)
    predictions = training.predict_all(task, model_params, rows, 4)
    np.testing.assert_allclose(task.metrics(predictions, rows_shifted)["dipole_mae_eA"],
                               task.metrics(predictions, rows)["dipole_mae_eA"], rtol=1e-10)

    settings = dataclasses.replace(SETTINGS, response_every=0)
    a = training.train(task, data, data, settings, str(tmp_path / "a"), progress=False)
    b = training.train(task, shifted, shifted, settings, str(tmp_path / "b"), progress=False)
    for x, y in zip(jax.tree_util.tree_leaves(a["ema_params"]), jax.tree_util.tree_leaves(b["ema_params"])):
        np.testing.assert_allclose(x, y, rtol=1e-8, atol=1e-12)
