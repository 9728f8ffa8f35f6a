"""Make the ethanol-in-a-field reference data set with GFN2-xTB (tblite).

Langevin MD of ethanol on GFN2-xTB, each trajectory in its own random uniform field (direction
uniform on the sphere, magnitude uniform in [0, field_max] V/Å) at its own temperature (uniform
in the configured range). After equilibration, configurations sampled every `sample_every`
steps are labelled with energy, forces and dipole in that field; a random `response_fraction`
of them also with polarizability and Born charges by central differences in the field.
Reproducible from the seed: every trajectory has its own random stream, so the result does
not depend on --workers. Bitwise only with OMP_NUM_THREADS=1: tblite's threaded reductions
differ in the last bits between runs, and MD amplifies that over long trajectories (the same
distribution, not the same frames). Writes HDF5 (see jaxmd_efield.data).

    python training/make_ethanol_data.py [--config training/configs/ethanol_data.yaml]
        [--out PATH] [--n-trajectories N] [--workers 1]
"""

import argparse
import contextlib
import multiprocessing
import os
import time

import ase.build
import ase.units
import numpy as np
import yaml
from ase.constraints import FixCom
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation
from tqdm import tqdm

from jaxmd_efield.data import write_dataset
from jaxmd_efield.reference import XTBFieldCalculator, xtb_field_derivatives, xtb_in_field

DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "ethanol_data.yaml")


def random_field(rng, field_max):
    direction = rng.normal(size=3)
    return direction / np.linalg.norm(direction) * rng.uniform(0.0, field_max)


def run_trajectory(job):
    """One Langevin trajectory; returns a list of labelled configurations (dicts)."""
    index, cfg = job
    rng = np.random.default_rng([cfg["seed"], index])
    temperature = rng.uniform(*cfg["temperature_K"])
    field = random_field(rng, cfg["field_max"])
    atoms = ase.build.molecule(cfg["molecule"])
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
        sample = dict(positions=atoms.positions.copy(), field=field, temperature=temperature,
                      trajectory=index, **xtb_in_field(atoms.numbers, atoms.positions, field))
        sample["has_response"] = bool(rng.uniform() < cfg["response_fraction"])
        if sample["has_response"]:
            sample.update(xtb_field_derivatives(atoms.numbers, atoms.positions, field,
                                                cfg["field_step"]))
        samples.append(sample)
    return samples


def collect(samples, numbers):
    """Stack the samples into the data-set arrays (zeros where no response was computed)."""
    n = len(numbers)
    data = {key: np.stack([s[key] for s in samples])
            for key in ("positions", "field", "energy", "forces", "dipole", "temperature",
                        "trajectory", "has_response")}
    data["polarizability"] = np.stack([s.get("polarizability", np.zeros((3, 3))) for s in samples])
    data["born_charges"] = np.stack([s.get("born_charges", np.zeros((n, 3, 3))) for s in samples])
    data["numbers"] = np.asarray(numbers)
    return data


def main(argv=None):
    """Command line entry point; returns the output path."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--out", help="output HDF5 path (default: the config's `output`)")
    parser.add_argument("--n-trajectories", type=int, help="override the config")
    parser.add_argument("--samples-per-trajectory", type=int, help="override the config")
    parser.add_argument("--response-fraction", type=float, help="override the config")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes; tblite already spreads each single point over the cores "
                             "with OpenMP (measured on 2 cores: 1.0 ms per ethanol single point "
                             "with 2 threads, 3.1 ms with 1), so more processes oversubscribe")
    args = parser.parse_args(argv)
    with open(args.config) as f:
        cfg = yaml.safe_load(f)
    for key in ("n_trajectories", "samples_per_trajectory", "response_fraction"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    out = args.out or cfg["output"]
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)

    start = time.perf_counter()
    jobs = [(i, cfg) for i in range(cfg["n_trajectories"])]
    results = {}
    total = cfg["n_trajectories"] * cfg["samples_per_trajectory"]
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=total, unit="config", desc="GFN2-xTB Langevin sampling"))
        if args.workers > 1:
            pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(args.workers))
            trajectories = pool.imap_unordered(run_trajectory, jobs)
        else:
            trajectories = map(run_trajectory, jobs)
        for samples in trajectories:
            results[samples[0]["trajectory"]] = samples
            bar.update(len(samples))
    samples = [s for i in sorted(results) for s in results[i]]
    data = collect(samples, ase.build.molecule(cfg["molecule"]).numbers)
    write_dataset(out, data, attrs=dict(config=cfg, reference="GFN2-xTB, tblite 0.8.0",
                                        generator="training/make_ethanol_data.py"))
    print(f"wrote {len(samples)} configurations ({int(data['has_response'].sum())} with "
          f"polarizability and Born charges) to {out} in {time.perf_counter() - start:.0f} s")
    return out


if __name__ == "__main__":
    main()
