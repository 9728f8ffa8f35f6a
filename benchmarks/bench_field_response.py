"""How `response.field_response` should compute the polarizability (and Born charges), by size:
the measurements behind its defaults `EDGE_LAGRANGIAN_MIN_ATOMS` (forward-over-reverse or the
edge Lagrangian) and `BATCHED_TANGENTS_MIN_ATOMS` (the three field tangents vmapped or one
after another). One process, float32, the model and velocity-Verlet loop of
`bench_md_step.py` (equal width, random parameters, a neighbor-list update per step); each
system's variants take turns, round after round, and are reported as ms per step and as
multiples of the forces-only step:

  forces                     our energy_fn, forces only
  alpha <method> <tangents>  forces, dipole, polarizability: field_response(born_charges=False,
                             method=forward|lagrangian, batched_tangents=True|False)
  alpha+Z* <tangents>        the same and the Born charges (forward-over-reverse)

Systems: ethanol and water clusters in free space, periodic water boxes (--systems).
Writes results/field_response_<platform>.json (_partial appended for other systems or repeats).

    python benchmarks/bench_field_response.py                       # ~10 min on 2 cores
    python benchmarks/bench_field_response.py --systems ethanol,cluster:8 --repeats 5
"""

import argparse
import json
import os
import time

import ase.data
import jax
import jax.numpy as jnp
import numpy as np

import jaxmd_efield as jef
from bench_md_step import (FIELD, ethanol, log, ms_per_step_in_turns, our_model,
                           velocity_verlet_runner, water_box)

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
DEFAULT_SYSTEMS, DEFAULT_REPEATS = "ethanol,cluster:8,cluster:16,cluster:32,box:27,box:334", 9
#: velocity-Verlet steps per timed chunk: STEP_BUDGET_ATOMS / atoms, at least 2
#: (`velocity_verlet_runner`)
STEP_BUDGET_ATOMS = 2000


def system(spec):
    """(name, positions, numbers, box side or None for free space) of 'ethanol',
    'cluster:<water molecules>' or 'box:<water molecules>'."""
    if spec == "ethanol":
        positions, numbers, _ = ethanol()
        return "ethanol", positions, numbers, None
    kind, _, n = spec.partition(":")
    if kind not in ("cluster", "box") or not n.isdigit():
        raise ValueError(f"systems are ethanol, cluster:<n> or box:<n>, got {spec!r}")
    positions, numbers, side = water_box(int(n))
    return (f"water {kind} {len(numbers)} atoms", positions, numbers,
            side if kind == "box" else None)


def variants(E):
    """(R, nbrs) -> (forces, aux) for every variant; aux keeps the observables alive."""
    def response(born_charges, method, batched):
        fn = jef.response.field_response(E, born_charges=born_charges, method=method,
                                         batched_tangents=batched)

        def force_fn(R, nbrs):
            out = fn(R, field=FIELD, neighbor=nbrs)
            return out["forces"], tuple(out[k] for k in ("dipole", "polarizability", "born_charges")
                                        if k in out)
        return force_fn

    out = {"forces": lambda R, nbrs: (jef.response.forces(E)(R, field=FIELD, neighbor=nbrs), ())}
    for method in ("forward", "lagrangian"):
        for batched in (True, False):
            out[f"alpha {method} {'batched' if batched else 'one by one'}"] = \
                response(False, method, batched)
    for batched in (True, False):
        out[f"alpha+Z* {'batched' if batched else 'one by one'}"] = response(True, "forward", batched)
    return out


def measure(spec, repeats):
    name, positions, numbers, side = system(spec)
    R = jnp.asarray(positions, jnp.float32)
    masses = jnp.asarray(ase.data.atomic_masses[numbers], jnp.float32)
    E, _, _, _, nbrs = our_model(R, numbers, side)
    steps = max(2, STEP_BUDGET_ATOMS // len(numbers))
    runs = {k: velocity_verlet_runner(fn, R, masses, steps) for k, fn in variants(E).items()}
    alphas = {}
    for k, run in runs.items():
        start = time.perf_counter()
        _, aux = jax.block_until_ready(run(nbrs))
        if aux:
            alphas[k] = np.asarray(aux[1])
        log(f"  {name:26s} {k:26s} compiled and run once in {time.perf_counter() - start:.1f} s")
    reference = alphas["alpha forward batched"]
    spread = max(float(np.max(np.abs(a - reference))) for a in alphas.values()) / float(np.max(np.abs(reference)))
    ms, times = ms_per_step_in_turns(runs, nbrs, steps, repeats)
    return dict(system=name, atoms=len(numbers), steps_per_chunk=steps, repeats=repeats,
                ms_per_step=ms, ms_per_step_all=times,
                vs_forces={k: ms[k] / ms["forces"] for k in ms},
                alpha_max_relative_spread=spread)


def table(records):
    variants_ = list(records[0]["ms_per_step"])
    lines = ["| system | " + " | ".join(variants_) + " |", "|---" * (len(variants_) + 1) + "|"]
    for r in records:
        cells = [f"{r['ms_per_step']['forces']:.3f} ms"] + [
            f"{r['vs_forces'][k]:.2f}" for k in variants_[1:]]
        lines.append(f"| {r['system']} | " + " | ".join(cells) + " |")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", default=DEFAULT_SYSTEMS,
                        help=f"comma-separated ethanol, cluster:<n>, box:<n> (default {DEFAULT_SYSTEMS})")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                        help=f"rounds of timed chunks per system (default {DEFAULT_REPEATS})")
    args = parser.parse_args()
    specs = args.systems.split(",")
    for spec in specs:
        system(spec)  # bad specs fail before any compilation
    start, load = time.time(), os.getloadavg()[0]
    records = []
    for spec in specs:
        records.append(measure(spec, args.repeats))
        log(f"  {records[-1]['system']}: " + ", ".join(
            f"{k} {v:.2f}" for k, v in records[-1]["vs_forces"].items()))
    lines = table(records)
    print("\nms per step of forces; the others as multiples of it (medians, in turns)\n")
    print("\n".join(lines))
    os.makedirs(RESULTS, exist_ok=True)
    partial = args.systems != DEFAULT_SYSTEMS or args.repeats != DEFAULT_REPEATS
    path = os.path.join(RESULTS, f"field_response_{jax.default_backend()}{'_partial' if partial else ''}.json")
    with open(path, "w") as f:
        json.dump(dict(date=time.strftime("%Y-%m-%d"), seconds=time.time() - start,
                       load_average_at_start=load, end_load_average=os.getloadavg()[0],
                       jax=jax.__version__, device=str(jax.devices()[0]), records=records,
                       table=lines), f, indent=1)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
