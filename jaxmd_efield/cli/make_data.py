"""Make reference data of molecules in uniform fields with GFN2-xTB (tblite).

For every molecule, `n_trajectories` Langevin MD runs on GFN2-xTB, each in its own random
uniform field (direction uniform on the sphere, magnitude uniform in [0, field_max] V/Å) at its
own temperature (uniform in the temperature range). After equilibration, configurations
sampled every `sample_every` steps are labelled with energy, forces and dipole in that field; a
random `response_fraction` of them also with polarizability and Born charges by central
differences in the field. Molecules are ase.build.molecule names (e.g. H2O, CH3OH, CH3CH2OH,
H2CO, NH3) or files ase.io.read reads (its last structure). Reproducible from the seed: every
trajectory has its own random stream ([seed, trajectory index], trajectories numbered over the
molecules in order), so the result does not depend on --workers. Bitwise only with
OMP_NUM_THREADS=1: tblite's threaded reductions differ in the last bits between runs, and MD
amplifies that over long trajectories (the same distribution, not the same frames). Writes HDF5
(.h5) or extended XYZ (.xyz), see jaxmd_efield.data.

  jaxmd-efield-make-data --molecules H2O CH3OH --out data/mix.xyz
  jaxmd-efield-make-data --config training/configs/ethanol_data.yaml
"""

import argparse
import contextlib
import multiprocessing
import os
import time

import numpy as np
import yaml
from tqdm import tqdm

#: the settings and their defaults (a --config YAML file and the options override them)
DEFAULTS = dict(
    seed=0,
    molecules=None,             # ase.build.molecule names or structure files
    n_trajectories=10,          # per molecule, each with its own random field and temperature
    samples_per_trajectory=20,
    equilibration_steps=200,
    sample_every=20,            # MD steps between samples
    timestep_fs=0.5,
    friction_per_fs=0.01,       # Langevin friction
    temperature_K=[300, 800],   # uniform in this range
    field_max=0.5,              # V/Å
    response_fraction=0.15,     # share of samples with polarizability and Born charges
    field_step=0.005,           # V/Å, central-difference step for those
    output=None,
)


def molecules(cfg):
    """The configured molecules (a `molecules` list, or the older single `molecule`)."""
    names = cfg.get("molecules") or ([cfg["molecule"]] if cfg.get("molecule") else None)
    if not names:
        raise ValueError("no molecules: give --molecules (ase.build.molecule names or files)")
    return list(names)


def load_molecule(name):
    """An ase.Atoms: a structure file ase.io.read reads (its last structure), else an
    ase.build.molecule name."""
    import ase.build
    import ase.io

    if os.path.exists(name):
        atoms = ase.io.read(name)
        atoms.pbc, atoms.cell = False, None
        return atoms
    try:
        return ase.build.molecule(name)
    except KeyError:
        raise ValueError(f"{name!r} is neither a file nor an ase.build.molecule name (e.g. H2O, "
                         "CH3OH, CH3CH2OH, H2CO, NH3)") from None


def random_field(rng, field_max):
    direction = rng.normal(size=3)
    return direction / np.linalg.norm(direction) * rng.uniform(0.0, field_max)


def run_trajectory(job):
    """Trajectory `index` of the configuration (molecule index // n_trajectories); returns a
    list of labelled samples (dicts, see jaxmd_efield.data.from_samples)."""
    import ase.units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation

    from jaxmd_efield.reference import XTBFieldCalculator, xtb_field_derivatives, xtb_in_field

    index, cfg = job
    rng = np.random.default_rng([cfg["seed"], index])
    temperature = rng.uniform(*cfg["temperature_K"])
    field = random_field(rng, cfg["field_max"])
    atoms = load_molecule(molecules(cfg)[index // cfg["n_trajectories"]])
    atoms.calc = XTBFieldCalculator(field=field)
    atoms.set_constraint(FixCom())  # a neutral molecule in a uniform field feels no net force
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms)
    ZeroRotation(atoms)
    dynamics = Langevin(atoms, timestep=cfg["timestep_fs"] * ase.units.fs,
                        temperature_K=temperature, friction=cfg["friction_per_fs"] / ase.units.fs,
                        fixcm=False, rng=rng)
    dynamics.run(cfg["equilibration_steps"])
    samples = []
    for _ in range(cfg["samples_per_trajectory"]):
        dynamics.run(cfg["sample_every"])
        sample = dict(numbers=atoms.numbers.copy(), positions=atoms.positions.copy(), field=field,
                      temperature=temperature, trajectory=index,
                      **xtb_in_field(atoms.numbers, atoms.positions, field))
        if rng.uniform() < cfg["response_fraction"]:
            sample.update(xtb_field_derivatives(atoms.numbers, atoms.positions, field,
                                                cfg["field_step"]))
        samples.append(sample)
    return samples


def parser():
    p = argparse.ArgumentParser(
        prog="jaxmd-efield-make-data", description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file with any of the settings below (options override it)")
    p.add_argument("--molecules", nargs="+", help="ase.build.molecule names or structure files")
    p.add_argument("--out", help="output file: .h5 (HDF5) or .xyz (extended XYZ)")
    p.add_argument("--n-trajectories", type=int,
                   help=f"trajectories per molecule (default {DEFAULTS['n_trajectories']})")
    p.add_argument("--samples-per-trajectory", type=int,
                   help=f"default {DEFAULTS['samples_per_trajectory']}")
    p.add_argument("--response-fraction", type=float,
                   help="share of samples also labelled with polarizability and Born charges "
                        f"(6 more single points each; default {DEFAULTS['response_fraction']})")
    p.add_argument("--field-max", type=float,
                   help=f"largest field magnitude, V/Å (default {DEFAULTS['field_max']})")
    p.add_argument("--temperature", type=float, nargs=2, metavar=("MIN", "MAX"),
                   help=f"sampling temperatures, K (default {DEFAULTS['temperature_K']})")
    p.add_argument("--seed", type=int, help=f"default {DEFAULTS['seed']}")
    p.add_argument("--workers", type=int, default=1,
                   help="processes; tblite already spreads each single point over the cores "
                        "with OpenMP (measured on 2 cores: 1.0 ms per ethanol single point "
                        "with 2 threads, 3.1 ms with 1), so more processes oversubscribe")
    return p


def main(argv=None):
    """Command-line entry point; returns the output path."""
    from jaxmd_efield.data import from_samples, write_dataset

    args = parser().parse_args(argv)
    cfg = dict(DEFAULTS)
    if args.config:
        with open(args.config) as f:
            given = yaml.safe_load(f)
        unknown = sorted(set(given) - set(DEFAULTS) - {"molecule"})
        if unknown:
            raise ValueError(f"{args.config}: unknown keys {unknown}; allowed: {sorted(DEFAULTS)}")
        cfg.update(given)
    overrides = dict(molecules=args.molecules, output=args.out, n_trajectories=args.n_trajectories,
                     samples_per_trajectory=args.samples_per_trajectory,
                     response_fraction=args.response_fraction, field_max=args.field_max,
                     temperature_K=args.temperature, seed=args.seed)
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    if args.molecules:
        cfg.pop("molecule", None)
    names = molecules(cfg)
    for name in names:
        load_molecule(name)  # fail now, not after hours of sampling
    out = cfg["output"]
    if not out:
        raise ValueError("no output file: give --out (.h5 or .xyz)")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)

    start = time.perf_counter()
    jobs = [(i, cfg) for i in range(len(names) * cfg["n_trajectories"])]
    results = {}
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=len(jobs) * cfg["samples_per_trajectory"],
                                       unit="config", desc="GFN2-xTB Langevin sampling"))
        if args.workers > 1:
            pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(args.workers))
            trajectories = pool.imap_unordered(run_trajectory, jobs)
        else:
            trajectories = map(run_trajectory, jobs)
        for samples in trajectories:
            results[samples[0]["trajectory"]] = samples
            bar.update(len(samples))
    samples = [s for i in sorted(results) for s in results[i]]
    data = from_samples(samples)
    write_dataset(out, data, attrs=dict(config=cfg, reference="GFN2-xTB, tblite 0.8.0",
                                        generator="jaxmd-efield-make-data"))
    n_response = sum("polarizability" in s for s in samples)
    print(f"wrote {len(samples)} configurations of {len(names)} molecule(s) ({n_response} with "
          f"polarizability and Born charges) to {out} in {time.perf_counter() - start:.0f} s")
    return out


if __name__ == "__main__":
    main()
