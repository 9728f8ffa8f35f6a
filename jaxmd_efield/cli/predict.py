"""Predict with a trained model for every structure of a file, and score it against the
file's labels where it has them.

  jaxmd-efield-predict ethanol-gfn2 structures.xyz --out predicted.xyz [--field 0 0 0.1]
  jaxmd-efield-predict runs/my_model/model.npz test.xyz --out predicted.xyz --response

The model is a shipped name (ethanol-gfn2, becs-eps) or an exported model.npz. The input is any
file ase.io.read reads (extended XYZ, ...): molecules and/or fully periodic cells of any sizes
and species of the model, packed many to a call (one compilation for the whole file). The field
of each structure is --field if given, else the structure's own `field` (V/Å, as
jaxmd_efield.data reads it), else zero.

The output (extended XYZ) is the input structures with the predictions added under the prefix
(default `jef_`): energy models give jef_energy (eV), jef_forces (eV/Å), jef_dipole (e·Å) and,
with --response, jef_polarizability (e·Å²/V, 9 numbers row-major) and jef_born_charges (e, 9 per
atom); tensor models give jef_born_charges and jef_dielectric. If the input carries reference
labels (energy, forces, dipole, ...), the mean absolute errors are printed and, with
--metrics, written as JSON.
"""

import argparse
import json

import numpy as np


def parser():
    p = argparse.ArgumentParser(prog="jaxmd-efield-predict", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="shipped model name or path to an exported model .npz")
    p.add_argument("structures", help="input file (any format ase.io.read reads)")
    p.add_argument("--out", required=True, help="output extended XYZ file")
    p.add_argument("--field", type=float, nargs=3, metavar=("FX", "FY", "FZ"),
                   help="field for every structure, V/Å (energy models)")
    p.add_argument("--response", action="store_true",
                   help="energy models: also polarizability and Born charges (about 3x the cost)")
    p.add_argument("--index", default=":", help="which structures of the input (ASE index syntax)")
    p.add_argument("--max-atoms", type=int, default=1024, help="atoms per packed batch")
    p.add_argument("--prefix", default="jef_", help="name prefix of the predictions in the output")
    p.add_argument("--metrics", help="write the errors against the input's labels here (JSON)")
    return p


def main(argv=None):
    """Command-line entry point; returns the metrics dict (empty without reference labels)."""
    import ase.io

    from jaxmd_efield import checkpoint, data as data_io, evaluate, training

    args = parser().parse_args(argv)
    model = checkpoint.load_pretrained(args.model)
    frames = ase.io.read(args.structures, args.index)
    frames = frames if isinstance(frames, list) else [frames]
    data = data_io.from_atoms(frames, source=args.structures)  # labels, fields; predict checks species
    field = args.field if args.field is not None else (data["field"] if model.kind == "energy" else None)
    results = evaluate.predict(model, frames, field=field, response=args.response,
                               max_atoms=args.max_atoms)
    for atoms, result in zip(frames, results):
        atoms.calc = None
        for key, value in result.items():
            value = np.asarray(value, float)
            if key in ("forces", "born_charges"):
                atoms.arrays[args.prefix + key] = value.reshape(len(atoms), -1)
            else:
                atoms.info[args.prefix + key] = value.item() if value.ndim == 0 else value.ravel()
    ase.io.write(args.out, frames, format="extxyz")
    print(f"wrote predictions for {len(frames)} structures to {args.out}")

    metrics = {}
    if model.kind == "energy":
        predictions = {key: np.concatenate([np.atleast_1d(r[key]) if key in data_io.PER_ATOM
                                            else np.asarray(r[key])[None] for r in results])
                       for key in results[0]}
        metrics = training.EnergyTask.metrics(predictions, data)
    if metrics:
        print("against the input's labels: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    if args.metrics:
        with open(args.metrics, "w") as f:
            json.dump(metrics, f, indent=1)
    return metrics


def cli():
    """The console script: `main` with JAX's persistent compilation cache on."""
    from jaxmd_efield.compilation import use_persistent_cache

    use_persistent_cache()
    main()


if __name__ == "__main__":
    cli()
