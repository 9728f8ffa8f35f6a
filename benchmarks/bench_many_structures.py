"""Many structures: batch prediction and calculators against the cost of compiling per structure.

Measures, in one process and from a cold start of each case (fresh compilation caches):
  * becs-eps on every crystal of ../shared/data/becs_eps.xyz: `jef.predict` in one call, and one
    new `EFieldCalculator` per crystal (as an ASE workflow builds them);
  * ethanol-gfn2 on ethanol configurations (rattled geometries, fields up to 0.3 V/Å): one new
    calculator per configuration, and `jef.predict` in one call;
with wall time, time per structure, and the XLA compilations and their time. Writes results/many_structures.json.

    python benchmarks/bench_many_structures.py [--configurations 300]
"""

import argparse
import json
import os
import platform
import time

import jax
import ase.io
import numpy as np
from ase.build import molecule

import jaxmd_efield as jef
from jaxmd_efield import data as data_io, evaluate

HERE = os.path.dirname(os.path.abspath(__file__))
COMPILE = dict(count=0, seconds=0.0)  # XLA backend compilations in this process


def _count(name, secs, **kwargs):
    if name == "/jax/core/compile/backend_compile_duration":
        COMPILE["count"] += 1
        COMPILE["seconds"] += secs


jax.monitoring.register_event_duration_secs_listener(_count)


def measure(name, fn, count):
    """Run fn() with the model programs not yet compiled (`evaluate.compiled` emptied); a result
    row with the wall time, the XLA compilations and their time."""
    evaluate.compiled.cache_clear()
    before, start = dict(COMPILE), time.perf_counter()
    fn()
    wall = time.perf_counter() - start
    row = dict(case=name, structures=count, wall_s=wall, ms_per_structure=1e3 * wall / count,
               compilations=COMPILE["count"] - before["count"],
               compile_s=COMPILE["seconds"] - before["seconds"])
    print(f"| {name:54s} | {count:5d} | {wall:7.1f} | {row['ms_per_structure']:7.1f} | "
          f"{row['compilations']:4d} | {row['compile_s']:6.1f} |", flush=True)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data", "becs_eps.xyz"))
    parser.add_argument("--configurations", type=int, default=300)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "many_structures.json"))
    args = parser.parse_args(argv)

    data_io.read_crystals(args.data)  # validates the file
    crystal_atoms = ase.io.read(args.data, index=":")
    becs = jef.load_pretrained("becs-eps")
    ethanol = jef.load_pretrained("ethanol-gfn2")
    rng = np.random.default_rng(0)
    configurations, fields = [], rng.uniform(-0.3, 0.3, size=(args.configurations, 3))
    for _ in range(args.configurations):
        atoms = molecule("CH3CH2OH")
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        configurations.append(atoms)

    def calculators(model, structures, properties, field=None):
        for k, atoms in enumerate(structures):
            atoms = atoms.copy()
            atoms.calc = jef.EFieldCalculator(model) if field is None else \
                jef.EFieldCalculator(model, field=field[k])
            for p in properties:
                atoms.calc.get_property(p, atoms)

    print(f"| {'case':54s} | count | wall s | ms each | XLA compilations | compiling s |")
    print("|---|---|---|---|---|---|")
    n_crystals, n_conf = len(crystal_atoms), len(configurations)
    rows = [
        measure("becs-eps: jef.predict, one call", lambda: jef.predict(becs, crystal_atoms), n_crystals),
        measure("becs-eps: a new calculator per crystal",
                lambda: calculators(becs, crystal_atoms, ["born_effective_charges", "dielectric_tensor"]),
                n_crystals),
        measure("ethanol-gfn2: jef.predict (E, F, mu), one call",
                lambda: jef.predict(ethanol, configurations, field=fields), n_conf),
        measure("ethanol-gfn2: a new calculator each (E, F, mu)",
                lambda: calculators(ethanol, configurations, ["energy", "forces", "dipole"], fields), n_conf),
        measure("ethanol-gfn2: jef.predict with alpha and Z*, one call",
                lambda: jef.predict(ethanol, configurations, field=fields, response=True), n_conf),
    ]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(dict(rows=rows, machine=f"{platform.machine()}, {os.cpu_count()} cores, "
                                          f"{jax.devices()[0].platform}", jax=jax.__version__), f, indent=1)


if __name__ == "__main__":
    main()
