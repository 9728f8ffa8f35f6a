"""Accuracy of the shipped becs-eps tensor model on its validation split, beside baselines.

Recomputes the model's train/validation split from its own training config (seeded), predicts
every validation crystal with packed batches (the trainer's `predict_all`), and compares with
two baselines fitted on the training split: each element's mean Born-charge tensor (with the
acoustic sum rule restored per crystal, as the model does) and the constant mean eps_inf tensor.
Prints the table and writes results/becs_eps_accuracy.json.

    python benchmarks/becs_eps_accuracy.py [--model becs-eps] [--data ../shared/data/becs_eps.xyz]
"""

import argparse
import json
import os

import numpy as np

import jaxmd_efield as jef
from jaxmd_efield import data as data_io, training


def per_element_mean_born(train, crystals):
    """Each crystal's Born charges as its elements' mean training tensors, minus their mean
    over the crystal (sum rule)."""
    numbers, born = np.concatenate(train["numbers"]), np.concatenate(train["born_charges"])
    means = {z: born[numbers == z].mean(0) for z in np.unique(numbers)}
    out = []
    for zs in crystals["numbers"]:
        z = np.array([means.get(z, np.zeros((3, 3))) for z in zs])
        out.append(z - z.mean(0))
    return np.concatenate(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="becs-eps")
    parser.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                       "shared", "data", "becs_eps.xyz"))
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                      "becs_eps_accuracy.json"))
    args = parser.parse_args(argv)
    model = jef.load_pretrained(args.model)
    cfg = model.metadata["training_config"]
    crystals = data_io.read_crystals(args.data)
    train_idx, val_idx = data_io.split_indices(len(crystals["dielectric"]), cfg["split"]["fractions"],
                                               cfg["split"]["seed"])[:2]
    train, val = data_io.select(crystals, train_idx), data_io.select(crystals, val_idx)

    batch_size = cfg["training"]["batch_size"]
    all_rows = training.crystal_rows(crystals, model.config)
    task = training.TensorTask(model.config, cfg["loss"], *training.TensorTask.budgets(all_rows, batch_size))
    rows = data_io.select(all_rows, val_idx)
    results = {"model": task.metrics(training.predict_all(task, model.params, rows, batch_size), rows)}
    mean_eps = np.broadcast_to(train["dielectric"].mean(0), val["dielectric"].shape)
    results["baselines"] = task.metrics(
        dict(born_charges=per_element_mean_born(train, val), dielectric=mean_eps), rows)

    print(f"{len(val_idx)} validation crystals ({sum(len(z) for z in val['numbers'])} atoms); "
          f"baselines fitted on {len(train_idx)} training crystals")
    print(f"| {'quantity':44s} | {'model':>9s} | {'baseline':>9s} |")
    print(f"|{'-' * 46}|{'-' * 11}|{'-' * 11}|")
    for key, value in results["model"].items():
        print(f"| {key:44s} | {value:9.4f} | {results['baselines'][key]:9.4f} |")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(dict(results, model_name=args.model, n_validation=len(val_idx),
                       n_train=len(train_idx)), f, indent=1)
    return results


if __name__ == "__main__":
    main()
