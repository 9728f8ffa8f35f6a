"""Cost of recording the polarizability (and Born charges) for Raman along MD: `simulate.run(...,
record_response="polarizability")` and `record_response=True` (also the Born charges) against
the same run without it, shipped ethanol-gfn2 model, NVE,
float32, in one process. Compilation is excluded as in bench_ensemble.py (a run of 1000 + steps
minus a run of 1000; the fastest of --repeats such differences), with JAX's persistent
compilation cache on so that the compilations every `run` call makes are loads, not noise. Target: recording every 10th step costs <= 1.3x. Writes
results/raman_recording_<backend>.json.

    python benchmarks/bench_raman_recording.py [--replicas 1 32] [--record-every 10] [--steps 2000] [--repeats 1]
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
from jaxmd_efield.compilation import use_persistent_cache

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--record-every", type=int, nargs="+", default=[10])
    parser.add_argument("--steps", type=int, default=2000, help="a multiple of 1000")
    parser.add_argument("--repeats", type=int, default=1, help="the fastest of this many measurements")
    args = parser.parse_args(argv)
    use_persistent_cache()
    model = jef.load_pretrained("ethanol-gfn2")
    atoms = molecule("CH3CH2OH")
    neighbor_fn, _, energy_fn = jef.efield_nequip_neighbor_list(
        space.free()[0], 10.0, atoms.numbers, model.config, disable_cell_list=True)
    energy = functools.partial(energy_fn, model.params)
    R, masses = jnp.asarray(atoms.positions, jnp.float32), jnp.asarray(atoms.get_masses())

    def go(K, steps, record_every, record_response):
        start = time.perf_counter()
        simulate.run(energy, space.free()[1], neighbor_fn, R, masses, fields.constant([0.0, 0.0, 0.01]),
                     steps=steps, record_every=record_every, integrator="nve", temperature_K=300.0,
                     frames_per_chunk=1000 // record_every, replicas=None if K == 1 else K,
                     progress=False, record_response=record_response)
        return time.perf_counter() - start

    rows = []
    for K in args.replicas:
        for every in args.record_every:
            seconds = {flag: min(go(K, 1000 + args.steps, every, flag) - go(K, 1000, every, flag)
                                 for _ in range(args.repeats))
                       for flag in (False, "polarizability", True)}
            rows.append(dict(replicas=K, record_every=every, seconds_without=seconds[False],
                             seconds_polarizability=seconds["polarizability"], seconds_with=seconds[True],
                             ratio_polarizability=seconds["polarizability"] / seconds[False],
                             ratio=seconds[True] / seconds[False]))
            print(f"done: {rows[-1]}", flush=True)
    print("| replicas | record every | ms/step without | with polarizability | ratio | "
          "with polarizability + Born charges | ratio |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        ms = {key: f"{1e3 * row[key] / args.steps:.2f}"
              for key in ("seconds_without", "seconds_polarizability", "seconds_with")}
        print(f"| {row['replicas']} | {row['record_every']} | {ms['seconds_without']} | "
              f"{ms['seconds_polarizability']} | {row['ratio_polarizability']:.2f}x | {ms['seconds_with']} | "
              f"{row['ratio']:.2f}x |")
    backend = jax.default_backend()
    result = dict(rows=rows, steps=args.steps, backend=backend, devices=str(jax.devices()),
                  cpu_count=os.cpu_count(), platform=platform.platform(), model="ethanol-gfn2")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", f"raman_recording_{backend}.json"), "w") as f:
        json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
