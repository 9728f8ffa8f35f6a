"""Where the time of the shipped model's MD step goes: a `jax.profiler` trace of K vmapped
ethanol replicas (ethanol-gfn2, NVE, 0.01 V/Å, neighbor-list update every step, float32), its
kernel times summed by the operation that made them (the op_name XLA keeps: layer, operation,
forward `jvp` or backward `transpose`, with the layer index dropped), printed as a table and
written to results/profile_md_step_<backend>.json.

    python benchmarks/profile_md_step.py [--replicas 32] [--steps 20] [--top 25]

With one replica the step is mostly fixed per-kernel costs; with 32 the arithmetic shows.
"""

import argparse
import collections
import functools
import glob
import gzip
import json
import os
import re
import tempfile

import jax
import jax.numpy as jnp
from ase.build import molecule
from jax_md import simulate, space

import jaxmd_efield as jef
from jaxmd_efield import units

HERE = os.path.dirname(os.path.abspath(__file__))
FIELD = jnp.array([0.01, 0.0, 0.0], jnp.float32)


def md_chunk(replicas, steps):
    """(jitted run(state, nbrs) of `steps` vmapped NVE steps, state, nbrs)."""
    atoms = molecule("CH3CH2OH")
    model = jef.load_pretrained("ethanol-gfn2")
    displacement, shift = space.free()
    neighbor_fn, _, energy_fn = jef.efield_nequip_neighbor_list(
        displacement, 100.0, atoms.numbers, model.config, disable_cell_list=True)
    init_fn, apply_fn = simulate.nve(functools.partial(energy_fn, model.params), shift, 0.5 * units.FS)
    R = jnp.asarray(atoms.positions, jnp.float32)
    nbrs = neighbor_fn.allocate(R)
    state = jax.jit(init_fn)(jax.random.PRNGKey(0), R, kT=300.0 * units.KB, field=FIELD, neighbor=nbrs,
                             mass=jnp.asarray(atoms.get_masses(), jnp.float32))

    @jax.jit
    def run(state, nbrs):
        def step(carry, _):
            state, nbrs = carry
            state = jax.vmap(lambda s, n: apply_fn(s, field=FIELD, neighbor=n))(state, nbrs)
            return (state, jax.vmap(lambda n, r: n.update(r))(nbrs, state.position)), ()
        return jax.lax.scan(step, (state, nbrs), None, length=steps)[0]

    stacked = jax.tree_util.tree_map(lambda a: jnp.stack([a] * replicas), (state, nbrs))
    return (run, *stacked)


def kernel_times(run, state, nbrs):
    """{kernel name: total µs} of one traced call, and the op_name of every kernel (from the
    compiled program's text)."""
    jax.block_until_ready(run(state, nbrs))
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            jax.block_until_ready(run(state, nbrs))
        path, = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)
        with gzip.open(path) as f:
            events = json.load(f)["traceEvents"]
    times = collections.Counter()
    for event in events:
        if event.get("ph") == "X" and not event["name"].startswith(("ThunkExecutor", "$", "end:")):
            times[event["name"]] += event["dur"]
    text = run.lower(state, nbrs).compile().as_text()
    op_names = dict(re.findall(r"\n\s*(?:ROOT )?%([\w.\-]+) = [^\n]*?op_name=\"([^\"]+)\"", text))
    return times, op_names


def operation(op_name):
    """'transpose(jvp(...))/e_field_nequ_ip/interaction_2/reduce_sum' ->
    'backward interaction_k/reduce_sum'."""
    direction = "backward" if "transpose(" in op_name else "forward"
    inner = re.sub(r"interaction_\d+", "interaction_k", op_name.split("e_field_nequ_ip/")[-1])
    return f"{direction} {inner}" if "e_field_nequ_ip/" in op_name else f"other: {op_name[-60:]}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    run, state, nbrs = md_chunk(args.replicas, args.steps)
    times, op_names = kernel_times(run, state, nbrs)
    by_operation = collections.Counter()
    for kernel, us in times.items():
        by_operation[operation(op_names.get(kernel, "?"))] += us / args.steps
    total = sum(by_operation.values())
    print(f"ethanol-gfn2, {args.replicas} replicas: {total / 1e3:.2f} ms of kernel time per step "
          f"(both threads summed), {len(times)} kernels")
    print("| operation | µs per step | share |\n|---|---|---|")
    for name, us in by_operation.most_common(args.top):
        print(f"| {name} | {us:.0f} | {100 * us / total:.1f} % |")
    result = dict(replicas=args.replicas, steps=args.steps, kernels=len(times), device=str(jax.devices()[0]),
                  us_per_step_total=total, us_per_step=dict(by_operation.most_common()))
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", f"profile_md_step_{jax.default_backend()}.json"), "w") as f:
        json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
