"""Harmonic Raman through ASE's own tools with the model's ASE calculator, beside the library's
autodiff `spectra.harmonic_raman` at the same geometry.

ASE's StaticRamanCalculator displaces every atom (finite differences, `delta` Å) and asks an
"excitation object" for the static polarizability of each displaced structure; PlaczekStatic
turns them into Raman activities (Å^4/amu, 45 a'^2 + 7 gamma'^2). The model's EFieldCalculator
already gives the polarizability (e·Å²/V, which is ASE's e²Å²/eV), so the excitation object is
three lines.

    python simulations/raman_ase.py [--model ethanol-gfn2] [--molecule CH3CH2OH]
"""

import argparse
import os
import tempfile

import ase.optimize
import ase.units
import jax.numpy as jnp
import numpy as np
from ase.build import molecule
from ase.vibrations.placzek import PlaczekStatic
from ase.vibrations.raman import StaticRamanCalculator
from jax_md import space

import jaxmd_efield as jef
from jaxmd_efield import spectra


class ModelPolarizability:
    """ASE's static-polarizability hook: called with each displaced structure (which carries the
    EFieldCalculator); returns its polarizability in e·Å²/V."""

    def __call__(self, atoms):
        return atoms.calc.get_property("polarizability", atoms)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ethanol-gfn2", help="pretrained name or .npz path")
    parser.add_argument("--molecule", default="CH3CH2OH", help="ase.build.molecule name")
    parser.add_argument("--delta", type=float, default=0.01, help="ASE's displacement, Å")
    args = parser.parse_args(argv)
    model = jef.load_pretrained(args.model)
    atoms = molecule(args.molecule)
    atoms.calc = jef.EFieldCalculator(model)
    ase.optimize.BFGS(atoms, logfile=None).run(fmax=1e-4, steps=1000)

    with tempfile.TemporaryDirectory() as tmp:
        name = os.path.join(tmp, "raman")
        StaticRamanCalculator(atoms, ModelPolarizability, name=name, delta=args.delta).run()
        placzek = PlaczekStatic(atoms, name=name, delta=args.delta)
        ase_wavenumbers = placzek.get_energies().real / ase.units.invcm
        ase_activities = placzek.get_absolute_intensities()

    neighbor_fn, _, energy_fn = jef.efield_nequip_neighbor_list(
        space.free()[0], 10.0, atoms.numbers, model.config, disable_cell_list=True)
    R = jnp.asarray(atoms.positions)
    ours = spectra.harmonic_raman(lambda R_, **kw: energy_fn(model.params, R_, **kw), R,
                                  atoms.get_masses(), neighbor=neighbor_fn.allocate(R))
    vibrations = np.argsort(np.abs(ase_wavenumbers))[len(ase_wavenumbers) - len(ours["frequencies"]):]
    ase_wavenumbers, ase_activities = ase_wavenumbers[np.sort(vibrations)], ase_activities[np.sort(vibrations)]
    print("| ASE cm^-1 | autodiff cm^-1 | ASE Å^4/amu | autodiff Å^4/amu |\n|---|---|---|---|")
    for row in zip(ase_wavenumbers, ours["frequencies"], ase_activities, ours["activities"]):
        print("| {:.0f} | {:.0f} | {:.3f} | {:.3f} |".format(*row))
    return dict(ase_wavenumbers=ase_wavenumbers, ase_activities=ase_activities, autodiff=ours)


if __name__ == "__main__":
    from jaxmd_efield.compilation import use_persistent_cache

    use_persistent_cache()  # a second run loads compiled programs instead of compiling
    main()
