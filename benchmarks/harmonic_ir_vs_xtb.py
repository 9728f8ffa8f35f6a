"""Harmonic IR of the shipped ethanol model (or any model and molecule) against GFN2-xTB's own,
at the same geometry.

The geometry is the molecule relaxed with GFN2-xTB. The reference harmonic IR is ASE's
`Infrared` (finite differences of the xTB forces and dipoles, delta 0.01 Å); the model's
comes from its autodiff Hessian and Born charges (`spectra.harmonic_ir`). Modes are paired in
order of wavenumber (3N - 6 each, 21 for ethanol; the 6 rigid-body modes of the finite-difference Hessian,
the six closest to zero, are dropped). Prints the table and the RMS wavenumber error over the
modes above 500 cm^-1 (target <= 10 cm^-1), and writes results/harmonic_ir_vs_xtb.json
(results/harmonic_ir_vs_xtb_<molecule>.json for another molecule).

    python benchmarks/harmonic_ir_vs_xtb.py [--model ethanol-gfn2] [--molecule CH3CH2OH]
"""

import argparse
import json
import os
import tempfile

import ase.optimize
import jax.numpy as jnp
import numpy as np
from ase.build import molecule
from ase.vibrations import Infrared
from jax_md import space

import jaxmd_efield as jef
from jaxmd_efield import spectra
from jaxmd_efield.reference import XTBFieldCalculator

DEBYE2_PER_A2_AMU_TO_KM_MOL = 42.2561  # ASE Infrared intensities, (D/Å)²/amu, to km/mol


def xtb_harmonic(atoms):
    with tempfile.TemporaryDirectory() as tmp:
        ir = Infrared(atoms, name=os.path.join(tmp, "ir"), delta=0.01, nfree=4)
        ir.run()
        wavenumbers = np.real(ir.get_frequencies())  # cm^-1 (imaginary ones as complex)
        intensities = ir.intensities * DEBYE2_PER_A2_AMU_TO_KM_MOL
    keep = np.sort(np.argsort(np.abs(wavenumbers))[6:])  # (5 rigid-body modes if linear: not here)
    return wavenumbers[keep], intensities[keep]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ethanol-gfn2", help="shipped name or model .npz")
    parser.add_argument("--molecule", default="CH3CH2OH", help="ase.build.molecule name")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args(argv)
    model = jef.load_pretrained(args.model)

    atoms = molecule(args.molecule)
    atoms.calc = XTBFieldCalculator()
    ase.optimize.BFGS(atoms, logfile=None).run(fmax=1e-4, steps=1000)
    ref_w, ref_i = xtb_harmonic(atoms)

    neighbor_fn, _, energy_fn = jef.efield_nequip_neighbor_list(
        space.free()[0], 10.0, atoms.numbers, model.config, disable_cell_list=True)
    R = jnp.asarray(atoms.positions)
    ours = spectra.harmonic_ir(lambda R_, **kw: energy_fn(model.params, R_, **kw), R,
                               atoms.get_masses(), neighbor=neighbor_fn.allocate(R))
    w, i = ours["wavenumbers"], ours["intensities"]
    high = ref_w > 500
    rms = float(np.sqrt(np.mean((w[high] - ref_w[high]) ** 2)))
    print("| mode | GFN2-xTB cm^-1 | model cm^-1 | error cm^-1 | GFN2-xTB km/mol | model km/mol |")
    print("|---|---|---|---|---|---|")
    for k in range(len(ref_w)):
        print(f"| {k + 1} | {ref_w[k]:.0f} | {w[k]:.0f} | {w[k] - ref_w[k]:+.0f} | {ref_i[k]:.1f} | {i[k]:.1f} |")
    print(f"RMS wavenumber error over the {int(high.sum())} modes above 500 cm^-1: {rms:.1f} cm^-1 "
          f"(max {np.abs(w[high] - ref_w[high]).max():.1f}); mean absolute intensity error "
          f"{np.mean(np.abs(i - ref_i)):.1f} km/mol")
    os.makedirs(args.out, exist_ok=True)
    name = "harmonic_ir_vs_xtb" + ("" if args.molecule == "CH3CH2OH" else f"_{args.molecule}")
    with open(os.path.join(args.out, f"{name}.json"), "w") as f:
        json.dump(dict(model=args.model, molecule=args.molecule, rms_above_500=rms, xtb=dict(wavenumbers=ref_w.tolist(),
                       intensities=ref_i.tolist()), model_result=dict(wavenumbers=w.tolist(),
                       intensities=i.tolist())), f, indent=1)


if __name__ == "__main__":
    main()
