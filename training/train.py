"""Train a model from a YAML config.

    python training/train.py --config training/configs/ethanol_gfn2.yaml [--out DIR] [--resume]
        [--steps N] [--export PATH]

Writes to the output directory: checkpoint.pkl (full state, for --resume), metrics.csv
(validation metrics every eval_every steps), summary.json (test-split metrics, timing,
recompilation count), parity_test.png, and model.npz (the EMA parameters and the model config,
loadable with jaxmd_efield.checkpoint.load_model; --export copies it elsewhere, e.g. into
jaxmd_efield/pretrained/).
"""

import argparse
import dataclasses
import os
import shutil
import time

import numpy as np
import yaml

from jaxmd_efield import checkpoint, data as data_io, training
from jaxmd_efield.nn.nequip import EFieldNequIPConfig


def split_data(data, fractions, seed):
    """Train/validation/test dicts, split by sampling trajectory where the data record it (so
    correlated frames of one trajectory never straddle two splits), else by configuration."""
    groups = data.get("trajectory", np.arange(len(data["energy"])))
    unique = np.unique(groups)
    parts = data_io.split_indices(len(unique), fractions, seed)
    per_row = [k for k in data if k != "numbers"]
    out = []
    for part in parts:
        rows = np.flatnonzero(np.isin(groups, unique[part]))
        out.append({**{k: data[k][rows] for k in per_row}, "numbers": data["numbers"]})
    return out


def domain_breakdown(task, predictions, data):
    """Test metrics in bins of field strength (V/Å) and sampling temperature (K), to show the
    model is accurate over the whole sampled domain, not only near F = 0."""
    field = np.linalg.norm(data["field"], axis=1)
    bins = {f"|F| {lo}-{hi} V/Å": (field >= lo) & (field < hi)
            for lo, hi in [(0.0, 0.1), (0.1, 0.25), (0.25, 0.5)]}
    if "temperature" in data:
        bins.update({f"T {lo}-{hi} K": (data["temperature"] >= lo) & (data["temperature"] < hi)
                     for lo, hi in [(300, 450), (450, 650), (650, 800)]})
    out = {}
    for name, rows in bins.items():
        if rows.sum():
            pick = lambda d: {k: v[rows] for k, v in d.items() if k != "numbers"}  # noqa: E731
            out[name] = dict(n=int(rows.sum()), **task.metrics(pick(predictions),
                                                              dict(pick(data), numbers=data["numbers"])))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", help="output directory (default: the config's `output`)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pkl")
    parser.add_argument("--steps", type=int, help="override training.steps")
    parser.add_argument("--export", help="also write the trained model here (.npz)")
    args = parser.parse_args(argv)
    with open(args.config) as f:
        cfg = yaml.safe_load(f)
    out = args.out or cfg["output"]
    settings = training.TrainSettings(**cfg.get("training", {}))
    if args.steps:
        settings = dataclasses.replace(settings, steps=args.steps)

    model = dict(cfg["model"])
    data, _ = data_io.read_dataset(cfg["data"], species=model["species"])
    train_data, val_data, test_data = split_data(data, cfg["split"]["fractions"], cfg["split"]["seed"])
    if model.get("energy_shift") is None:
        model["energy_shift"], model["energy_scale"] = training.energy_statistics(
            train_data, model["species"])
    config = EFieldNequIPConfig.from_dict(model)
    task = training.EnergyTask(config, data["numbers"], cfg["loss"])
    print(f"{len(train_data['energy'])} train / {len(val_data['energy'])} validation / "
          f"{len(test_data['energy'])} test configurations from {cfg['data']}")

    start = time.perf_counter()
    state = training.train(task, train_data, val_data, settings, out, resume=args.resume)
    wall = time.perf_counter() - start
    predictions = training.predict_all(task, state["ema_params"], test_data, settings.batch_size)
    test_metrics = task.metrics(predictions, test_data)
    training.parity_plots(predictions, test_data, os.path.join(out, "parity_test.png"),
                          title=f"test split ({len(test_data['energy'])} configurations)")
    summary = dict(test=test_metrics, test_by_domain=domain_breakdown(task, predictions, test_data),
                   steps=state["step"], train_seconds=state["train_seconds"],
                   wall_seconds_this_run=wall, compilations_of_train_step=state["compilations"],
                   n_train=len(train_data["energy"]), n_validation=len(val_data["energy"]),
                   n_test=len(test_data["energy"]), config=cfg)
    training.save_summary(os.path.join(out, "summary.json"), summary)
    metadata = dict(test_metrics=test_metrics, steps=state["step"], data=cfg["data"],
                    training_config=cfg)
    checkpoint.save_model(os.path.join(out, "model.npz"), config, state["ema_params"], metadata)
    if args.export:
        shutil.copyfile(os.path.join(out, "model.npz"), args.export)
    print("test split: " + ", ".join(f"{k} {v:.4g}" for k, v in test_metrics.items()))
    print(f"train_step compiled {state['compilations']} time(s): once per step kind (with and "
          "without response terms) means zero recompilations")


if __name__ == "__main__":
    main()
