"""Ensemble MD throughput: replica-steps per second of `simulate.run(replicas=K)` against one
replica, with the shipped ethanol-gfn2 model (NVT Langevin, 300 K, a 0.02 V/Å sinusoidal field,
float32, frames every 10 steps), in one process. Compilation is excluded: every `run` call
compiles its chunk once, so the cost of `--steps` steps is the time of a run of 1000 + steps
minus that of a run of 1000 (chunks of 1000 steps in both). Writes results/ensemble_<backend>.json.

    python benchmarks/bench_ensemble.py [--replicas 1 8 32 128] [--steps 2000]
"""

import argparse
import functools
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
from ase.build import molecule
from jax_md import space

import jaxmd_efield as jef
from jaxmd_efield import fields, simulate

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--steps", type=int, default=2000, help="a multiple of 1000")
    args = parser.parse_args(argv)
    model = jef.load_pretrained("ethanol-gfn2")
    atoms = molecule("CH3CH2OH")
    neighbor_fn, _, energy_fn = jef.efield_nequip_neighbor_list(
        space.free()[0], 10.0, atoms.numbers, model.config, disable_cell_list=True)
    energy = functools.partial(energy_fn, model.params)
    protocol = fields.sinusoidal(0.02, [0, 0, 1], wavenumber_cm=1000.0)
    R, masses = jnp.asarray(atoms.positions, jnp.float32), jnp.asarray(atoms.get_masses())

    def go(K, steps):
        start = time.perf_counter()
        simulate.run(energy, space.free()[1], neighbor_fn, R, masses, protocol, steps=steps,
                     record_every=10, integrator="nvt_langevin", frames_per_chunk=100,
                     replicas=None if K == 1 else K, progress=False)
        return time.perf_counter() - start

    rows = []
    for K in args.replicas:
        seconds = go(K, 1000 + args.steps) - go(K, 1000)
        rows.append(dict(replicas=K, seconds=seconds, replica_steps_per_s=K * args.steps / seconds,
                         ms_per_step=1e3 * seconds / args.steps))
    one = rows[0]["replica_steps_per_s"] if args.replicas[0] == 1 else None
    print(f"| replicas K | wall s ({args.steps} steps) | ms per step | replica-steps/s | vs one replica |")
    print("|---|---|---|---|---|")
    for row in rows:
        row["throughput_vs_one"] = row["replica_steps_per_s"] / one if one else None
        ratio = f"{row['throughput_vs_one']:.2f}x" if one else "-"
        print(f"| {row['replicas']} | {row['seconds']:.1f} | {row['ms_per_step']:.2f} | "
              f"{row['replica_steps_per_s']:.0f} | {ratio} |")
    backend = jax.default_backend()
    result = dict(rows=rows, steps=args.steps, backend=backend, devices=str(jax.devices()),
                  cpu_count=os.cpu_count(), platform=platform.platform(), model="ethanol-gfn2")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", f"ensemble_{backend}.json"), "w") as f:
        json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
