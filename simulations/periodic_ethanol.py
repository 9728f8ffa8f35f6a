"""The periodic path: ethanol in a periodic cell, NVT in a field, with the Born charges
attached as a recorded observable.

A 9 Å cubic cell holds one molecule (the shipped model knows isolated ethanol only, so its
images are kept beyond the 4 Å cutoff). The energy goes through jax_md's periodic space and
neighbor list; as a self-check the periodic energy, forces and dipole are compared with the
free-space ones at the start. Writes OUT/periodic_nvt.h5 with a born_charges data set.

    python simulations/periodic_ethanol.py [--ps 1.0] [--out outputs/periodic]
"""

import argparse
import functools
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from ase.build import molecule
from jax_md import space

import jaxmd_efield as jef
from jaxmd_efield import fields, response, simulate


# jax_md's kinetic energy asks for a float64 sum, which float32 mode truncates (harmless)
warnings.filterwarnings("ignore", message="Explicitly requested dtype float64 requested in sum")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ethanol-gfn2")
    parser.add_argument("--ps", type=float, default=1.0)
    parser.add_argument("--cell", type=float, default=9.0, help="cubic cell edge, Å")
    parser.add_argument("--out", default="outputs/periodic")
    args = parser.parse_args(argv)
    model = jef.load_pretrained(args.model)
    atoms = molecule("CH3CH2OH")
    R = jnp.asarray(atoms.positions - atoms.positions.mean(0) + args.cell / 2)
    field = fields.constant([0.0, 0.05, 0.0])

    displacement, shift = space.periodic(args.cell)
    neighbor_fn, _, energy_fn = jef.efield_nequip_neighbor_list(
        displacement, args.cell, atoms.numbers, model.config)
    energy = functools.partial(energy_fn, model.params)
    free_neighbor_fn, _, free_energy_fn = jef.efield_nequip_neighbor_list(
        space.free()[0], args.cell, atoms.numbers, model.config, disable_cell_list=True)
    periodic = jax.jit(response.energy_forces_dipole(energy))(
        R, field=field(0.0), neighbor=neighbor_fn.allocate(R))
    free = jax.jit(response.energy_forces_dipole(functools.partial(free_energy_fn, model.params)))(
        R, field=field(0.0), neighbor=free_neighbor_fn.allocate(R))
    deviation = max(float(jnp.abs(a - b).max()) for a, b in zip(periodic, free))
    print(f"periodic vs free space at t = 0: max deviation {deviation:.2e} (energy eV, forces eV/Å, dipole e·Å)")

    born = jax.jit(lambda R_, nbrs, F: response.born_charges(energy)(R_, field=F, neighbor=nbrs))
    out = simulate.run(energy, shift, neighbor_fn, R, atoms.get_masses(), field,
                       steps=int(args.ps * 1e3 / 0.5), record_every=10, integrator="nvt_langevin",
                       observables=dict(born_charges=born),
                       output=os.path.join(args.out, "periodic_nvt.h5"))
    asr = np.abs(out["born_charges"].sum(axis=1)).max()
    print(f"{len(out['time'])} frames, mean T {out['temperature'].mean():.0f} K, Born charges "
          f"recorded {out['born_charges'].shape}, acoustic sum rule max |sum_i Z_i| = {asr:.1e} e")
    return deviation, out


if __name__ == "__main__":
    from jaxmd_efield.compilation import use_persistent_cache

    use_persistent_cache()  # a second run loads compiled programs instead of compiling
    main()
