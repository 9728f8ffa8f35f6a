"""Train a model from a YAML config.

  jaxmd-efield-train --config training/configs/ethanol_gfn2.yaml [--out DIR] [--resume]
      [--steps N] [--export PATH]

The config (unknown keys, at any level, are refused):

  task        energy (default): a field-dependent energy model on molecules and/or periodic
              cells in fields, from a data set (HDF5 or extended XYZ, see jaxmd_efield.data);
              tensor: Born charges and eps_inf of crystals (extended XYZ with `becs`, `eps`)
  data        the data file
  train_data  (energy) a list of further data files whose structures all join the training split
              (never validation or test): more data for a model whose held-out set must stay
              the same, e.g. when fine-tuning with `init_from`
  names       (energy) label names in an extended XYZ file, if not the usual ones, e.g.
              {energy: REF_energy, forces: REF_forces}; see jaxmd_efield.data.ASE_NAMES
  output      output directory (or --out)
  split       {fractions: [train, validation, test], seed}: by sampling trajectory where the data
              record one, else by structure
  model       jaxmd_efield.EFieldNequIPConfig fields (species defaults to the data's elements;
              energy_shift / energy_scale to a fit on the training split)
  loss        weights of the loss terms: energy (per atom, eV), forces (eV/Å), dipole (e·Å,
              folded by the polarization quantum for periodic cells), polarizability (e·Å²/V),
              born_charges (e); tensor: born_charges, dielectric (relative). Each term averages
              over the structures that carry its label.
  training    jaxmd_efield.training.TrainSettings fields (batch_size, steps, learning_rate, ...)
  init_from   PATH.npz: fine-tune that exported model (its config and parameters; `model` is then
              ignored) with a fresh optimiser and schedule
  huber_delta (tensor) Huber loss instead of squared errors

Writes to the output directory: checkpoint.npz (full state, for --resume, which refuses a
checkpoint of another config or --steps), metrics.csv (validation metrics every eval_every
steps), summary.json (metrics of the test split, or of the validation split when there is no
test part, per molecule and per field and temperature range; timing; compilation count), a
parity PNG, and model.npz (the EMA parameters, kind and config, for jaxmd_efield.load_model and
jaxmd-efield-predict; --export copies it elsewhere).
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

#: the keys a config may have, by task, and those of its sections
COMMON = {"task", "data", "output", "init_from", "split", "model", "loss", "training"}
TOP_LEVEL = dict(energy=COMMON | {"names", "train_data"}, tensor=COMMON | {"huber_delta"})
SECTIONS = dict(split={"fractions", "seed"},
                model={f.name for f in dataclasses.fields(EFieldNequIPConfig)},
                training={f.name for f in dataclasses.fields(training.TrainSettings)},
                names=set(data_io.ASE_NAMES))


def check_config(cfg, path):
    """ValueError naming the config file `path` for an unknown task or unknown keys at its top
    level or in its split, model or training sections (the tasks check `loss`)."""
    kind = cfg.get("task", "energy")
    if kind not in checkpoint.KINDS:
        raise ValueError(f"{path}: task must be one of {checkpoint.KINDS}, got {kind!r}")
    sections = {"the top level": (cfg, TOP_LEVEL[kind])}
    sections.update({f"section {name!r}": (cfg.get(name) or {}, keys) for name, keys in SECTIONS.items()})
    for where, (section, allowed) in sections.items():
        unknown = sorted(set(section) - allowed)
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown} in {where} (task {kind!r}); allowed: "
                             f"{sorted(allowed)}")


def training_files(cfg):
    """The config's `train_data`: a list of paths (one path alone is a list of one)."""
    paths = cfg.get("train_data") or []
    return [paths] if isinstance(paths, str) else list(paths)


def split_data(data, fractions, seed):
    """Train/validation/test data sets, split by sampling trajectory where the data record it
    (so correlated frames of one trajectory never straddle two splits), else by structure."""
    groups = data.get("trajectory", np.arange(len(data["num_atoms"])))
    unique = np.unique(groups)
    return [data_io.subset(data, np.flatnonzero(np.isin(groups, unique[part])))
            for part in data_io.split_indices(len(unique), fractions, seed)]


def breakdown(task, predictions, data):
    """Test metrics per molecule (chemical formula) and in bins of field strength (V/Å) and
    sampling temperature (K), to show the model is accurate on every molecule and over the
    whole sampled domain, not only near F = 0."""
    field = np.linalg.norm(data["field"], axis=1)
    formulas = data_io.formulas(data)
    bins = {formula: formulas == formula for formula in sorted(set(formulas))} if len(set(formulas)) > 1 else {}
    bins.update({f"|F| {lo}-{hi} V/Å": (field >= lo) & (field < hi)
                 for lo, hi in [(0.0, 0.1), (0.1, 0.25), (0.25, 0.5)]})
    if "temperature" in data:
        bins.update({f"T {lo}-{hi} K": (data["temperature"] >= lo) & (data["temperature"] < hi)
                     for lo, hi in [(300, 450), (450, 650), (650, 800)]})
    out = {}
    for name, rows in bins.items():
        if rows.sum():
            rows = np.flatnonzero(rows)
            out[name] = dict(n=len(rows), **task.metrics(
                data_io.subset(predictions, rows, data["num_atoms"]),
                data_io.subset(data, rows)))
    return out


def energy_setup(cfg, start_model):
    """(task, config, {split name: data}) for the field-dependent energy model on a data set
    (HDF5 or extended XYZ; label names in the file as `names`)."""
    model = start_model.config.to_dict() if start_model else dict(cfg["model"])
    data, *extra = [data_io.read_dataset(path, species=model.get("species"), names=cfg.get("names"))[0]
                    for path in [cfg["data"], *training_files(cfg)]]
    model.setdefault("species", sorted(set(np.concatenate([d["numbers"] for d in [data, *extra]]).tolist())))
    splits = dict(zip(("train", "validation", "test"),
                      split_data(data, cfg["split"]["fractions"], cfg["split"]["seed"])))
    if extra:
        splits["train"] = data_io.concatenate([splits["train"], *extra])
    if model.get("energy_shift") is None:
        model["energy_shift"], model["energy_scale"] = training.energy_statistics(
            splits["train"], model["species"])
    config = EFieldNequIPConfig.from_dict(model)
    return training.EnergyTask(config, cfg["loss"]), config, splits


def tensor_setup(cfg, start_model, batch_size):
    """(task, config, {split name: data}) for the Born-charge / eps_inf model on an extended XYZ
    file of crystals (split by crystal). The species table defaults to the data's elements."""
    crystals = data_io.read_crystals(cfg["data"])
    model = start_model.config.to_dict() if start_model else dict(cfg["model"])
    model.setdefault("species", sorted(set(np.concatenate(crystals["numbers"]).tolist())))
    config = EFieldNequIPConfig.from_dict(model)
    rows = training.crystal_rows(crystals, config)
    task = training.TensorTask(config, cfg["loss"], *training.TensorTask.budgets(rows, batch_size),
                               cfg.get("huber_delta"))
    parts = data_io.split_indices(len(rows["dielectric"]), cfg["split"]["fractions"],
                                  cfg["split"]["seed"])
    return task, config, {name: data_io.select(rows, part)
                          for name, part in zip(("train", "validation", "test"), parts) if len(part)}


def parser():
    p = argparse.ArgumentParser(prog="jaxmd-efield-train", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="the YAML training config (see below)")
    p.add_argument("--out", help="output directory (default: the config's `output`)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.npz; ends where an uninterrupted run would")
    p.add_argument("--steps", type=int, help="override training.steps")
    p.add_argument("--export", help="also write the trained model here (.npz)")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    with open(args.config) as f:
        cfg = yaml.safe_load(f)
    check_config(cfg, args.config)
    out = args.out or cfg["output"]
    settings = training.TrainSettings(**cfg.get("training", {}))
    if args.steps:
        settings = dataclasses.replace(settings, steps=args.steps)
    kind = cfg.get("task", "energy")

    start_model = checkpoint.load_model(cfg["init_from"]) if cfg.get("init_from") else None
    if start_model and start_model.kind != kind:
        raise ValueError(f"init_from {cfg['init_from']} holds a model of kind {start_model.kind!r}, "
                         f"but the config's task is {kind!r}")
    task, config, splits = energy_setup(cfg, start_model) if kind == "energy" else \
        tensor_setup(cfg, start_model, settings.batch_size)
    sizes = {name: task.num_rows(task.rows(split)) for name, split in splits.items()}
    print(" / ".join(f"{n} {name}" for name, n in sizes.items()) + f" rows from {cfg['data']}"
          + "".join(f" + {path} (training only)" for path in training_files(cfg)))

    start = time.perf_counter()
    state = training.train(task, splits["train"], splits["validation"], settings, out,
                           resume=args.resume, init_params=start_model.params if start_model else None,
                           run_config=cfg)
    wall = time.perf_counter() - start
    report = "test" if "test" in splits else "validation"  # the split the metrics are given for
    rows = task.rows(splits[report])
    predictions = training.predict_all(task, state["ema_params"], rows, settings.batch_size)
    metrics = task.metrics(predictions, rows)
    training.parity_plots(predictions, rows,
                          os.path.join(out, f"parity_{report}.png"),
                          title=f"{report} split ({sizes[report]} rows)")
    summary = {report: metrics, "steps": state["step"], "train_seconds": state["train_seconds"],
               "wall_seconds_this_run": wall, "compilations_of_train_step": state["compilations"],
               **{f"n_{name}": n for name, n in sizes.items()}, "config": cfg}
    if kind == "energy":
        summary[f"{report}_breakdown"] = breakdown(task, predictions, splits[report])
    training.save_summary(os.path.join(out, "summary.json"), summary)
    metadata = {f"{report}_metrics": metrics, "steps": state["step"], "data": cfg["data"],
                "training_config": cfg}
    checkpoint.save_model(os.path.join(out, "model.npz"), config, state["ema_params"], metadata, kind)
    if args.export:
        shutil.copyfile(os.path.join(out, "model.npz"), args.export)
    print(f"{report} split: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    print(f"train_step compiled {state['compilations']} time(s): once per step kind (energy models "
          "have two, with and without response terms); any more would be recompilations")


def cli():
    """The console script: `main` with JAX's persistent compilation cache on, so a second run
    loads compiled programs instead of compiling them."""
    from jaxmd_efield.compilation import use_persistent_cache

    use_persistent_cache()
    main()


if __name__ == "__main__":
    cli()
