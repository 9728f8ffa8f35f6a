"""Batches split over devices (`batch.shard`): prediction and training on 4 forced host devices
equal one device (1e-6 relative, float64). Run in a subprocess, since the device count is fixed
when jax starts."""

import os
import pathlib
import subprocess
import sys

import pytest

SCRIPT = r"""
import jax, numpy as np
jax.config.update("jax_enable_x64", True)
assert len(jax.devices()) == 4
from ase import Atoms
from ase.build import molecule
import jaxmd_efield as jef
from jaxmd_efield import batch, checkpoint, data as data_io, training

# edge_chunk 64: the batches' message sums run in rematerialized chunks of edges split over devices
TINY = jef.EFieldNequIPConfig(species=(1, 6, 8), r_cut=4.0, hidden_irreps="8x0e + 4x1o + 2x1e",
                              num_layers=2, num_basis=6, radial_hidden=8, readout_hidden=8, edge_chunk=64)
rng = np.random.default_rng(0)
cell = np.array([[6.0, 0.0, 0.0], [1.0, 5.5, 0.0], [-0.5, 0.8, 6.2]])
waters = Atoms("OH2" * 6, positions=rng.uniform(0, 5.5, size=(18, 3)), cell=cell, pbc=True)
structures = [molecule("CH3CH2OH"), molecule("H2O"), waters, molecule("CH3OH")]
for atoms in structures:
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
fields = rng.normal(size=(4, 3)) * 0.1
one = [jax.devices()[0]]

# prediction: one large periodic cell and molecules, every observable
task = training.EnergyTask(TINY, {})
data = data_io.from_atoms(structures)
data["field"] = fields
params = task.init(jax.random.PRNGKey(0), task.batch(task.rows(data), np.arange(4), 4))
model = checkpoint.Model(TINY, params)
packed = batch.pack(jef.evaluate.graphs(model, structures, fields))
assert len(batch.shard(packed)["senders"].sharding.device_set) == 4 and len(packed["senders"]) > 4 * 64
split = jef.predict(model, structures, field=fields, response=True)
single = jef.predict(model, structures, field=fields, response=True, devices=one)
for a, b in zip(split, single):
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-6, atol=1e-10, err_msg=key)

# training: data parallel over 4 devices gives the updates of one device
labels = jef.predict(model, structures * 4, field=np.tile(fields, (4, 1)))
samples = [dict(numbers=a.numbers, positions=a.positions + rng.normal(scale=0.02, size=a.positions.shape),
                cell=a.cell.array if a.pbc.all() else np.zeros((3, 3)), pbc=bool(a.pbc.all()), field=F,
                energy=r["energy"] + rng.normal() * 0.01, forces=r["forces"], dipole=r["dipole"])
           for a, F, r in zip(structures * 4, np.tile(fields, (4, 1)), labels)]
data = data_io.from_samples(samples)
task = training.EnergyTask(TINY, dict(energy=1.0, forces=1.0, dipole=1.0))
settings = training.TrainSettings(batch_size=4, steps=3, learning_rate=1e-2, warmup_steps=1,
                                  eval_every=3, checkpoint_every=3)
runs = [training.train(task, data, data, settings, f"{out}/{name}", progress=False, devices=devices)
        for name, devices in (("split", None), ("one", one))]
for a, b in zip(*(jax.tree_util.tree_leaves(r["ema_params"]) for r in runs)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12)
print("split over 4 devices equals one device")
"""


@pytest.mark.slow  # a subprocess with 4 forced host devices: `make test-slow`
def test_prediction_and_training_split_over_devices_equal_one_device(tmp_path):
    env = dict(os.environ, XLA_FLAGS=" ".join([os.environ.get("XLA_FLAGS", ""),
                                               "--xla_force_host_platform_device_count=4"]))
    script = tmp_path / "devices.py"
    script.write_text(f"out = {str(tmp_path)!r}\n" + SCRIPT)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                            cwd=pathlib.Path(__file__).parent, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "split over 4 devices equals one device" in result.stdout
