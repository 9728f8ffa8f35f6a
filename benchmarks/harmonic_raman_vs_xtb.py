"""Harmonic Raman of the shipped ethanol model (or any model and molecule) against GFN2-xTB's,
each at its own minimum.

GFN2-xTB: the molecule relaxed with xTB forces (ASE BFGS, fmax 1e-4 eV/Å), then
`reference.xtb_harmonic_raman` (central differences of forces and of the finite-field
polarizability). Model: the molecule relaxed with the model (EFieldCalculator, same optimiser),
then `spectra.harmonic_raman` (Hessian and d alpha / dR by autodiff). Modes are paired by their
largest overlap (mass-weighted eigenvectors, Hungarian assignment), so that near-degenerate
modes whose order differs are still compared with their counterparts. Prints the table and,
over the modes above 500 cm^-1, the Pearson correlation of the activities (target >= 0.95),
the activity of the strongest band (target within 20 %), RMS wavenumber and depolarization
differences; writes results/harmonic_raman_vs_xtb[_<molecule>].json.

    python benchmarks/harmonic_raman_vs_xtb.py [--model ethanol-gfn2] [--molecule CH3CH2OH]
"""

import argparse
import json
import os
import time

import ase.optimize
import jax.numpy as jnp
import numpy as np
from ase.build import molecule
from jax_md import space
from scipy.optimize import linear_sum_assignment

import jaxmd_efield as jef
from jaxmd_efield import spectra
from jaxmd_efield.reference import XTBFieldCalculator, xtb_harmonic_raman


def relaxed(name, calculator):
    atoms = molecule(name)
    atoms.calc = calculator
    ase.optimize.BFGS(atoms, logfile=None).run(fmax=1e-4, steps=1000)
    return atoms


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ethanol-gfn2", help="shipped name or model .npz")
    parser.add_argument("--molecule", default="CH3CH2OH", help="ase.build.molecule name")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args(argv)
    model = jef.load_pretrained(args.model)

    start = time.perf_counter()
    atoms = relaxed(args.molecule, XTBFieldCalculator())
    ref = xtb_harmonic_raman(atoms.numbers, atoms.positions, atoms.get_masses())
    xtb_seconds = time.perf_counter() - start

    start = time.perf_counter()
    mine = relaxed(args.molecule, jef.EFieldCalculator(model))
    neighbor_fn, _, energy_fn = jef.efield_nequip_neighbor_list(
        space.free()[0], 10.0, mine.numbers, model.config, disable_cell_list=True)
    R = jnp.asarray(mine.positions)
    ours = spectra.harmonic_raman(lambda R_, **kw: energy_fn(model.params, R_, **kw), R,
                                  mine.get_masses(), neighbor=neighbor_fn.allocate(R))
    model_seconds = time.perf_counter() - start

    # rigid-body motions: the finite-difference Hessian keeps none (projected out in both)
    overlap = np.abs(np.einsum("kia,lia->kl", ref["modes"], ours["modes"]))
    _, match = linear_sum_assignment(-overlap)
    w_ref, w = ref["frequencies"], ours["frequencies"][match]
    s_ref, s = ref["activities"], ours["activities"][match]
    p_ref, p = ref["depolarization"], ours["depolarization"][match]
    high = w_ref > 500
    pearson = float(np.corrcoef(s_ref[high], s[high])[0, 1])
    strongest = int(np.argmax(np.where(high, s_ref, -1)))
    strongest_ratio = float(s[strongest] / s_ref[strongest])
    rms = float(np.sqrt(np.mean((w[high] - w_ref[high]) ** 2)))
    depol = float(np.mean(np.abs(p[high] - p_ref[high])))
    print("| mode | GFN2-xTB cm^-1 | model cm^-1 | overlap | GFN2-xTB Å^4/amu | model Å^4/amu | "
          "GFN2-xTB rho | model rho |")
    print("|---|---|---|---|---|---|---|---|")
    for k in range(len(w_ref)):
        print(f"| {k + 1} | {w_ref[k]:.0f} | {w[k]:.0f} | {overlap[k, match[k]]:.2f} | {s_ref[k]:.2f} | "
              f"{s[k]:.2f} | {p_ref[k]:.2f} | {p[k]:.2f} |")
    print(f"modes above 500 cm^-1 ({int(high.sum())}): activity Pearson r = {pearson:.3f} (target >= 0.95); "
          f"strongest band ({w_ref[strongest]:.0f} cm^-1) model/xTB activity = {strongest_ratio:.3f} "
          f"(target 0.8-1.2); RMS wavenumber difference {rms:.1f} cm^-1; mean |rho difference| "
          f"{depol:.3f}")
    print(f"wall time: GFN2-xTB relaxation + finite differences {xtb_seconds:.1f} s, model relaxation "
          f"+ autodiff (with compilation) {model_seconds:.1f} s")
    os.makedirs(args.out, exist_ok=True)
    name = "harmonic_raman_vs_xtb" + ("" if args.molecule == "CH3CH2OH" else f"_{args.molecule}")
    with open(os.path.join(args.out, f"{name}.json"), "w") as f:
        json.dump(dict(model=args.model, molecule=args.molecule, pearson_above_500=pearson,
                       strongest_band_ratio=strongest_ratio, rms_wavenumber_above_500=rms,
                       mean_abs_depolarization_difference=depol, xtb_seconds=xtb_seconds,
                       model_seconds=model_seconds,
                       xtb={k: ref[k].tolist() for k in ("frequencies", "activities", "depolarization")},
                       model_result={k: ours[k][match].tolist() for k in ("frequencies", "activities",
                                                                          "depolarization")}),
                  f, indent=1)


if __name__ == "__main__":
    main()
