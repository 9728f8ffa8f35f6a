"""The command-line tools pip installs: --help explains every option; data generation for
several molecules; prediction on a labelled extended XYZ file."""

import pathlib
import subprocess
import sys

import ase.io
import numpy as np
import pytest

from jaxmd_efield import checkpoint, data as data_io, training
from jaxmd_efield.cli import make_data, predict
from conftest import TINY, xtb_samples

BIN = pathlib.Path(sys.executable).parent


@pytest.mark.parametrize("script, options", [
    ("jaxmd-efield-make-data", ["--molecules", "--out", "--n-trajectories", "--samples-per-trajectory",
                                "--response-fraction", "--field-max", "--temperature", "--seed",
                                "--workers", "--config"]),
    ("jaxmd-efield-train", ["--config", "--out", "--resume", "--steps", "--export", "names", "loss",
                            "init_from"]),
    ("jaxmd-efield-predict", ["--out", "--field", "--response", "--index", "--max-atoms", "--prefix",
                              "--metrics"]),
])
def test_installed_console_scripts_explain_their_options(script, options):
    """pip install (setup.py entry points) puts the tools beside the interpreter."""
    result = subprocess.run([str(BIN / script), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for option in options:
        assert option in result.stdout, option


def test_generator_makes_several_molecules(tmp_path):
    out = make_data.main(["--molecules", "H2O", "NH3", "--n-trajectories", "1", "--samples-per-trajectory",
                          "2", "--response-fraction", "0.5", "--out", str(tmp_path / "two.xyz")])
    data, _ = data_io.read_dataset(out)
    assert data_io.formulas(data).tolist() == ["H2O", "H2O", "H3N", "H3N"]
    assert data["trajectory"].tolist() == [0, 0, 1, 1] and data["num_atoms"].tolist() == [3, 3, 4, 4]
    assert np.all(np.linalg.norm(data["field"], axis=1) <= 0.5) and data["forces"].shape == (14, 3)
    with pytest.raises(ValueError, match="'H2Oo' is neither a file nor an ase.build.molecule name"):
        make_data.main(["--molecules", "H2Oo", "--out", str(tmp_path / "x.xyz")])


@pytest.mark.slow  # CLI end to end, ~80 s of compilation: `make test-slow`
def test_predict_writes_predictions_and_scores_the_labels(tmp_path):
    data = data_io.from_samples(xtb_samples(seed=5, count=3, name="H2O") + xtb_samples(seed=6, count=2))
    data_io.write_dataset(str(tmp_path / "in.xyz"), data)
    data, _ = data_io.read_dataset(str(tmp_path / "in.xyz"))
    task = training.EnergyTask(TINY, dict(energy=1.0))
    params = task.init(np.array([0, 7], np.uint32), task.batch(task.rows(data), np.arange(4), 4))
    checkpoint.save_model(str(tmp_path / "m.npz"), TINY, params)
    metrics = predict.main([str(tmp_path / "m.npz"), str(tmp_path / "in.xyz"), "--out",
                            str(tmp_path / "out.xyz"), "--response"])
    frames = ase.io.read(tmp_path / "out.xyz", ":")
    assert frames[0].arrays["jef_forces"].shape == (3, 3) and frames[4].arrays["jef_born_charges"].shape == (9, 9)
    assert {"jef_energy", "jef_dipole", "jef_polarizability"} <= set(frames[3].info)
    expected = task.metrics(training.predict_all(task, params, data, 4, response=True), data)
    assert set(metrics) == set(expected) and "polarizability_mae_percent" in metrics
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, rel=1e-6), key
