"""Dipole and polarizability of ethanol against field strength, model vs GFN2-xTB.

For each field strength along z (V/Å) the geometry is relaxed in that field with the model
(ASE BFGS on EFieldCalculator), then the model's dipole and polarizability are compared with
GFN2-xTB's at the same geometry (polarizability by central differences in the field).

    python simulations/field_scan.py [--max-field 0.5] [--points 6] [--out outputs/field_scan]
"""

import argparse
import json
import os

import ase.optimize
import numpy as np
from ase.build import molecule

import jaxmd_efield as jef
from jaxmd_efield.reference import xtb_field_derivatives, xtb_in_field


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ethanol-gfn2")
    parser.add_argument("--max-field", type=float, default=0.5, help="V/Å")
    parser.add_argument("--points", type=int, default=6)
    parser.add_argument("--out", default="outputs/field_scan")
    args = parser.parse_args(argv)
    model = jef.load_pretrained(args.model)
    atoms = molecule("CH3CH2OH")
    atoms.calc = calc = jef.EFieldCalculator(model)
    rows = []
    print("| F_z V/Å | mu_z model | mu_z xTB | alpha_iso model | alpha_iso xTB | alpha_zz model | alpha_zz xTB |")
    print("|---|---|---|---|---|---|---|")
    for strength in np.linspace(0.0, args.max_field, args.points):
        field = np.array([0.0, 0.0, strength])
        calc.set(field=field)
        ase.optimize.BFGS(atoms, logfile=None).run(fmax=0.005, steps=300)
        mu = calc.get_property("dipole", atoms)
        alpha = calc.get_property("polarizability", atoms)
        ref_mu = xtb_in_field(atoms.numbers, atoms.positions, field)["dipole"]
        ref_alpha = xtb_field_derivatives(atoms.numbers, atoms.positions, field)["polarizability"]
        rows.append(dict(field=float(strength), dipole=mu.tolist(), dipole_xtb=ref_mu.tolist(),
                         polarizability=alpha.tolist(), polarizability_xtb=ref_alpha.tolist()))
        print(f"| {strength:.2f} | {mu[2]:.4f} | {ref_mu[2]:.4f} | {np.trace(alpha) / 3:.4f} | "
              f"{np.trace(ref_alpha) / 3:.4f} | {alpha[2, 2]:.4f} | {ref_alpha[2, 2]:.4f} |")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "field_scan.json"), "w") as f:
        json.dump(rows, f, indent=1)
    plot(rows, os.path.join(args.out, "field_scan.png"))
    print(f"wrote {args.out}/field_scan.png (units: e·Å, e·Å²/V)")
    return rows


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = [r["field"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    ax1.plot(f, [r["dipole"][2] for r in rows], "o-", label="model")
    ax1.plot(f, [r["dipole_xtb"][2] for r in rows], "kx--", label="GFN2-xTB")
    ax1.set(xlabel="field F_z (V/Å)", ylabel="dipole mu_z (e·Å)")
    ax2.plot(f, [np.trace(r["polarizability"]) / 3 for r in rows], "o-", label="model, isotropic")
    ax2.plot(f, [np.trace(r["polarizability_xtb"]) / 3 for r in rows], "kx--", label="GFN2-xTB")
    ax2.set(xlabel="field F_z (V/Å)", ylabel="polarizability (e·Å²/V)")
    for ax in (ax1, ax2):
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    from jaxmd_efield.compilation import use_persistent_cache

    use_persistent_cache()  # a second run loads compiled programs instead of compiling
    main()
