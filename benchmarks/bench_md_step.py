"""Speed of the field-aware energy_fn against the targets of issue 9, all measured in one run, in
one process, on one machine, float32:

  shipped MD step   ethanol with the shipped `ethanol-gfn2` model as users run it:
                    `jax_md.simulate.nve` (dt = 0.5 fs) in a 0.01 V/Å field given as `field=`,
                    `nbrs.update(state.position)` every step, steps in a jitted `lax.scan`
  xTB single point  GFN2-xTB energy, gradient and dipole of the same ethanol in the same field
                    (`jaxmd_efield.reference.xtb_in_field`: tblite calculator built each call;
                    one OpenMP thread unless --xtb-threads says otherwise)
  jax_md vs ours    one velocity-Verlet step with a neighbor-list update, in a jitted
                    `lax.fori_loop`, on ethanol (free space) and a water box (periodic), for:
                      jax_md NequIP   quantity.force of jax_md.energy.nequip_neighbor_list
                      forces          our energy_fn in a constant field, forces only
                      +dipole         response.energy_forces_dipole (one reverse pass)
                      +alpha          response.field_response(born_charges=False): forces,
                                      dipole and polarizability in one program, by the
                                      default method (the edge Lagrangian from 24 atoms on)
                      +alpha forward / lagrangian   the same by each method
                                      (method="forward": forward-over-reverse; "lagrangian":
                                      response.edge_lagrangian)
                      +alpha+Z*       response.field_response (also the Born charges)
                    with equal width, depth, cutoff, radial basis and radial MLP (random
                    parameters: speed does not depend on their values)
  scaling           periodic water boxes of increasing size: one jitted
                    response.energy_forces_dipole call of our model at the same width;
                    µs per atom, the process's peak RSS (ru_maxrss, read after each size's
                    compilation and warm-up call; the sizes are prepared first and in increasing
                    order, so the reading after a size is the peak of the process up to it) and the compiled executable's
                    memory_analysis() (argument + output + temp bytes: what one call needs).
                    A size whose executable needs more than 80 % of the available memory is
                    compiled and reported but not run.

Targets: MD step / xTB single point <= 1/3; ours / jax_md <= 0.5; forces+dipole+alpha / forces
<= 2; µs/atom max / min over the boxes <= 1.15; peak memory of the largest (10^4-atom) box
<= 3 GB. MD times are the median over repeats of a chunk of steps after compilation; single
calls the median over repeats after a warm-up call. The variants of one system, and the sizes of
the scaling section, are timed in turns, round after round (compiled first), so that the slow
drifts of a shared machine fall on all of them alike instead of on whichever ran last. Prints each measurement as it finishes,
then one markdown table with values, targets and pass/fail, and writes
results/md_step_<platform>.json (_quick / _partial appended for --quick / --sections runs).

    python benchmarks/bench_md_step.py               # full run (make bench), ~10 min on 2 cores
    python benchmarks/bench_md_step.py --quick       # smoke test: small sizes, few repeats
    python benchmarks/bench_md_step.py --water 334,1000,3334 --sections scaling
"""

import argparse
import ctypes
import functools
import json
import os
import platform
import resource
import sys
import time
from importlib.metadata import version

import ase.data
import jax
import jax.numpy as jnp
import numpy as np
from ase.build import molecule
from jax_md import energy as jmd_energy
from jax_md import quantity, simulate, space
from jax_md._nn import nequip as jmd_nequip

import jaxmd_efield as jef
from jaxmd_efield import units
from jaxmd_efield.reference import xtb_in_field

WIDTH = dict(hidden_ours="32x0e + 16x1o + 8x2e", hidden_jaxmd="32x0e + 16x1e + 8x2e",
             layers=3, r_cut=4.0, num_basis=8, radial_hidden=32, radial_layers=2)
FIELD = jnp.array([0.0, 0.0, 0.1])  # V/Å, jax_md-vs-ours and scaling
MD_FIELD = jnp.array([0.0, 0.0, 0.01])  # V/Å, shipped MD step and xTB single point
DT = 0.5 * units.FS
TARGETS = dict(md_vs_xtb=1 / 3, ours_vs_jaxmd=0.5, alpha_vs_forces=2.0, per_atom_flatness=1.15,
               peak_memory_gb=3.0)

SECTIONS = ("scaling", "md", "compare")
QUICK = dict(md_steps=100, md_repeats=2, xtb_repeats=5, steps=2, repeats=2, compare_water=27,
             water="27,64", scaling_repeats=2)
FULL = dict(md_steps=400, md_repeats=5, xtb_repeats=50, steps=5, repeats=5, compare_water=334,
            water="334,1000,3334", scaling_repeats=3)


def log(message):
    print(message, flush=True)


def max_rss_bytes():
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss_bytes():
    """Resident set size now (Linux), None where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return None


def water_box(n_molecules, seed=0):
    """Water molecules with random orientations on a cubic grid at about 1 g/cm^3."""
    rng = np.random.default_rng(seed)
    side = (n_molecules * 29.9) ** (1 / 3)
    per_side = int(np.ceil(n_molecules ** (1 / 3)))
    h2o = molecule("H2O")
    sites = np.stack(np.meshgrid(*[np.arange(per_side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    positions, numbers = [], []
    for site in sites[:n_molecules]:
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        positions.append((h2o.positions - h2o.positions[0]) @ q.T + (site + 0.5) * side / per_side)
        numbers.append(h2o.numbers)
    return np.concatenate(positions) % side, np.concatenate(numbers), side


def space_of(side):
    """(displacement, shift, box, neighbor-list kwargs): free space for side None, else periodic."""
    if side is None:
        displacement, shift = space.free()
        return displacement, shift, 100.0, dict(disable_cell_list=True)
    displacement, shift = space.periodic(side)
    return displacement, shift, side, {}


def our_model(R, numbers, side):
    """Our model at the benchmark width with random parameters: (E(R, field=, neighbor=),
    energy_fn, params, neighbor_fn, nbrs)."""
    displacement, _, box, nl = space_of(side)
    config = jef.EFieldNequIPConfig(
        species=tuple(sorted(set(numbers.tolist()))), r_cut=WIDTH["r_cut"],
        hidden_irreps=WIDTH["hidden_ours"], num_layers=WIDTH["layers"],
        num_basis=WIDTH["num_basis"], radial_hidden=WIDTH["radial_hidden"],
        radial_layers=WIDTH["radial_layers"])
    neighbor_fn, init_fn, energy_fn = jef.efield_nequip_neighbor_list(
        displacement, box, numbers, config, capacity_multiplier=1.5, **nl)
    nbrs = neighbor_fn.allocate(R)
    # jitted: an eager init dispatches op by op and leaves ~1 GB of caches in the process RSS
    params = jax.jit(init_fn)(jax.random.PRNGKey(0), R, nbrs)
    return functools.partial(energy_fn, params), energy_fn, params, neighbor_fn, nbrs


# --- shipped model MD step and the GFN2-xTB single point -------------------------------------

def ethanol():
    mol = molecule("CH3CH2OH")
    return mol.positions, mol.numbers, mol.get_masses()


def shipped_md_step(steps, repeats):
    """ms per NVE step of ethanol with `ethanol-gfn2`, as a user writes it."""
    positions, numbers, masses = ethanol()
    model = jef.load_pretrained("ethanol-gfn2")
    displacement, shift = space.free()
    neighbor_fn, _, energy_fn = jef.efield_nequip_neighbor_list(
        displacement, 100.0, numbers, model.config, disable_cell_list=True)
    E = functools.partial(energy_fn, model.params)
    init_fn, apply_fn = simulate.nve(E, shift, DT)
    R = jnp.asarray(positions, jnp.float32)
    nbrs = neighbor_fn.allocate(R)
    # jitted: eagerly, the force call in init dispatches op by op (~10 s on 2 cores)
    state = jax.jit(init_fn)(jax.random.PRNGKey(0), R, kT=300.0 * units.KB,
                             mass=jnp.asarray(masses, jnp.float32), field=MD_FIELD, neighbor=nbrs)

    @jax.jit
    def run(state, nbrs):
        def step(carry, _):
            state, nbrs = carry
            state = apply_fn(state, field=MD_FIELD, neighbor=nbrs)
            return (state, nbrs.update(state.position)), ()
        return jax.lax.scan(step, (state, nbrs), None, length=steps)[0]

    ms, compile_s, (_, final_nbrs), times = time_ms_per_step(lambda n: run(state, n), nbrs, steps, repeats)
    if bool(final_nbrs.did_buffer_overflow):
        raise RuntimeError("shipped MD: neighbor list overflowed")
    return dict(ms_per_step=ms, ms_per_step_all=times,
                steps_per_chunk=steps, repeats=repeats, first_chunk_with_compile_s=compile_s,
                atoms=len(numbers), field_V_per_A=np.asarray(MD_FIELD).tolist(),
                params_dtype=str(jax.tree_util.tree_leaves(model.params)[0].dtype))


def openmp_threads(threads):
    """Set the OpenMP threads of the libgomp that tblite links (0: leave them); returns the
    number in effect, None where libgomp cannot be loaded."""
    try:
        gomp = ctypes.CDLL("libgomp.so.1")
    except OSError:
        return None
    if threads:
        gomp.omp_set_num_threads(threads)
    return gomp.omp_get_max_threads()


def xtb_single_point(repeats, threads):
    """ms per GFN2-xTB energy + gradient + dipole of the same ethanol in the same field."""
    positions, numbers, _ = ethanol()
    field = np.asarray(MD_FIELD, float)
    xtb_in_field(numbers, positions, field)  # warm-up: library load
    threads = openmp_threads(threads)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        xtb_in_field(numbers, positions, field)
        times.append((time.perf_counter() - start) * 1e3)
    return dict(ms=float(np.median(times)), ms_min=float(np.min(times)), repeats=repeats,
                openmp_threads=threads, omp_num_threads_env=os.environ.get("OMP_NUM_THREADS"))


# --- jax_md NequIP against ours, and the response observables --------------------------------

def velocity_verlet_runner(force_fn, R0, masses, steps):
    """jit(run(nbrs) -> (positions, aux)) of `steps` velocity-Verlet steps, where
    force_fn(R, nbrs) -> (F, aux). aux (dipole, polarizability) is returned so that the compiler
    cannot drop its computation from the loop. At least 2 steps: XLA removes a loop of one step
    and with it the last force call of the variants whose aux is empty (nothing reads it), not
    of the others, which would halve the forces-only time against them."""
    if steps < 2:
        raise ValueError(f"velocity_verlet_runner needs at least 2 steps, got {steps}")
    masses = masses[:, None]

    @jax.jit
    def run(nbrs):
        def step(_, carry):
            R, V, F, nbrs, aux = carry
            V = V + 0.5 * DT * F / masses
            R = R + DT * V
            nbrs = nbrs.update(R)
            F, aux = force_fn(R, nbrs)
            return R, V + 0.5 * DT * F / masses, F, nbrs, aux

        F, aux = force_fn(R0, nbrs)
        carry = (R0, jnp.zeros_like(R0), F, nbrs, aux)
        R, _, _, _, aux = jax.lax.fori_loop(0, steps, step, carry)
        return R, aux

    return run


def time_ms_per_step(run, nbrs, steps, repeats):
    """(median ms per step, seconds of the first chunk, which includes compilation, the first
    chunk's output, ms per step of every repeat)."""
    start = time.perf_counter()
    first = jax.block_until_ready(run(nbrs))
    first_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(run(nbrs))
        times.append((time.perf_counter() - start) / steps * 1e3)
    return float(np.median(times)), first_s, first, times


def variants(R, numbers, side):
    """force functions (R, nbrs) -> (F, aux) of every variant, and the neighbor list."""
    displacement, _, box, nl = space_of(side)
    E, _, _, _, nbrs = our_model(R, numbers, side)
    table = tuple(sorted(set(numbers.tolist())))
    cfg = jmd_nequip.default_config()
    cfg.hidden_irreps, cfg.sh_irreps = WIDTH["hidden_jaxmd"], "1x0e + 1x1e + 1x2e"
    cfg.graph_net_steps, cfg.r_max = WIDTH["layers"], WIDTH["r_cut"]
    cfg.num_basis, cfg.radial_net_n_hidden = WIDTH["num_basis"], WIDTH["radial_hidden"]
    cfg.radial_net_n_layers = WIDTH["radial_layers"]
    cfg.n_elements, cfg.shift, cfg.scale = len(table), 0.0, 1.0
    one_hot = jax.nn.one_hot(jnp.asarray([table.index(z) for z in numbers]), len(table))
    _, jinit, jenergy = jmd_energy.nequip_neighbor_list(displacement, box, cfg, atoms=one_hot, **nl)
    jparams = jax.jit(jinit)(jax.random.PRNGKey(0), R, nbrs)
    jforce = quantity.force(functools.partial(jenergy, jparams))
    response = jef.response

    def dipole_alpha(method):
        def fn(R_, n_):
            out = response.field_response(E, born_charges=False, method=method)(
                R_, field=FIELD, neighbor=n_)
            return out["forces"], (out["dipole"], out["polarizability"])
        return fn

    def everything(R_, n_):
        out = response.field_response(E)(R_, field=FIELD, neighbor=n_)
        return out["forces"], (out["dipole"], out["polarizability"], out["born_charges"])

    return nbrs, {
        "jax_md NequIP": lambda R_, n_: (jforce(R_, neighbor=n_), ()),
        "forces": lambda R_, n_: (response.forces(E)(R_, field=FIELD, neighbor=n_), ()),
        "+dipole": lambda R_, n_: response.energy_forces_dipole(E)(
            R_, field=FIELD, neighbor=n_)[1:],
        "+alpha": dipole_alpha("auto"),
        "+alpha forward": dipole_alpha("forward"),
        "+alpha lagrangian": dipole_alpha("lagrangian"),
        "+alpha+Z*": everything,
    }


def ms_per_step_in_turns(runs, nbrs, steps, repeats):
    """({variant: median ms per step}, {variant: ms per step of every round}) of compiled
    runs(nbrs) of `steps` steps each. The variants take turns, round after round, so that the
    machine's slow drifts (these machines are shared) fall on every variant alike and cancel in
    the ratios."""
    all_times = {variant: [] for variant in runs}
    for _ in range(repeats):
        for variant, run in runs.items():
            start = time.perf_counter()
            jax.block_until_ready(run(nbrs))
            all_times[variant].append((time.perf_counter() - start) / steps * 1e3)
    return {variant: float(np.median(t)) for variant, t in all_times.items()}, all_times


def compare(name, R, numbers, side, steps, repeats):
    R = jnp.asarray(R, jnp.float32)
    masses = jnp.asarray(ase.data.atomic_masses[numbers], jnp.float32)
    nbrs, forces = variants(R, numbers, side)
    runs, first = {}, {}
    for variant, force_fn in forces.items():
        runs[variant] = velocity_verlet_runner(force_fn, R, masses, steps)
        start = time.perf_counter()
        jax.block_until_ready(runs[variant](nbrs))
        first[variant] = time.perf_counter() - start
    times, all_times = ms_per_step_in_turns(runs, nbrs, steps, repeats)
    for variant in runs:
        log(f"  {name:34s} {variant:18s} {times[variant]:10.3f} ms/step   "
            f"(first chunk with compile {first[variant]:.1f} s)")
    return dict(system=name, atoms=len(numbers), steps_per_chunk=steps, repeats=repeats,
                ms_per_step=times, ms_per_step_all=all_times, first_chunk_with_compile_s=first,
                ours_vs_jaxmd=times["forces"] / times["jax_md NequIP"],
                dipole_vs_forces=times["+dipole"] / times["forces"],
                alpha_vs_forces=times["+alpha"] / times["forces"],
                alpha_forward_vs_forces=times["+alpha forward"] / times["forces"],
                alpha_lagrangian_vs_forces=times["+alpha lagrangian"] / times["forces"],
                alpha_born_vs_forces=times["+alpha+Z*"] / times["forces"])


# --- scaling ---------------------------------------------------------------------------------

def available_memory_bytes():
    """MemAvailable of /proc/meminfo (Linux), None where it is missing."""
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f
                        if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return None


def scaling(n_molecules):
    """One jitted energy_forces_dipole call of our model on a periodic water box: compiled, its
    memory read, and one warm-up call unless its memory_analysis() says it needs more than 80 %
    of the memory available. Returns (record, call or None); `time_in_turns` times the calls."""
    R, numbers, side = water_box(n_molecules)
    R = jnp.asarray(R, jnp.float32)
    _, energy_fn, params, _, nbrs = our_model(R, numbers, side)
    if bool(nbrs.did_buffer_overflow):
        raise RuntimeError(f"water box {len(numbers)}: neighbor list overflowed")

    def call(params, R, nbrs):
        return jef.response.energy_forces_dipole(functools.partial(energy_fn, params))(
            R, field=FIELD, neighbor=nbrs)

    start = time.perf_counter()
    compiled = jax.jit(call).lower(params, R, nbrs).compile()
    compile_s = time.perf_counter() - start
    rss_after_compile = max_rss_bytes()
    memory = compiled.memory_analysis()
    executable = None if memory is None else (
        memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes)
    available = available_memory_bytes()
    run, skipped, warm_s = None, None, None
    if executable is not None and available is not None and executable > 0.8 * available:
        skipped = (f"not run: the executable needs {executable / 2**30:.1f} GB, "
                   f"{available / 2**30:.1f} GB available")
    else:
        run = functools.partial(compiled, params, R, nbrs)
        start = time.perf_counter()
        jax.block_until_ready(run())  # warm-up
        warm_s = time.perf_counter() - start
    record = dict(molecules=n_molecules, atoms=len(numbers), side_A=side,
                  edges_capacity=int(nbrs.idx.shape[-1]),
                  edges=int(jnp.sum(nbrs.idx[0] < len(numbers))), skipped=skipped,
                  warm_up_s=warm_s, compile_s=compile_s,
                  max_rss_after_compile_bytes=rss_after_compile,
                  max_rss_after_bytes=max_rss_bytes(), rss_now_bytes=current_rss_bytes(),
                  executable_bytes=executable,
                  memory_analysis=None if memory is None else dict(
                      argument=memory.argument_size_in_bytes, output=memory.output_size_in_bytes,
                      temp=memory.temp_size_in_bytes, alias=memory.alias_size_in_bytes,
                      peak=getattr(memory, "peak_memory_in_bytes", None)))
    return record, run


def time_in_turns(records, runs, repeats, seconds_per_size):
    """Times the prepared calls in turns (one call of each size per round; fewer rounds where
    the warm-up calls say `repeats` would take longer than `seconds_per_size` per size) and
    adds ms (median), µs per atom and the single times to each record."""
    timed = [(r, run) for r, run in zip(records, runs) if run is not None]
    rounds = max(1, min([repeats] + [int(seconds_per_size / r["warm_up_s"]) for r, _ in timed]))
    times = [[] for _ in timed]
    for _ in range(rounds):
        for t, (_, run) in zip(times, timed):
            start = time.perf_counter()
            jax.block_until_ready(run())
            t.append(time.perf_counter() - start)
    for r in records:
        r.update(ms=None, us_per_atom=None, repeats=0, ms_all=[])
    for t, (r, _) in zip(times, timed):
        ms = float(np.median(t)) * 1e3
        r.update(ms=ms, us_per_atom=ms * 1e3 / r["atoms"], repeats=len(t),
                 ms_all=[x * 1e3 for x in t])


# --- report ----------------------------------------------------------------------------------

def verdict(value, target):
    return "pass" if value <= target else "FAIL"


def table(shipped, xtb, rows, scale, baseline_rss):
    """Markdown lines of every measurement (sections not run are None or empty), and the
    summary ratios."""
    lines, summary = ["| measurement | value | target | pass |", "|---|---|---|---|"], {}

    def row(name, value, target=None, target_text=""):
        lines.append(f"| {name} | {value} | {target_text} | "
                     f"{'' if target is None else verdict(target[0], target[1])} |")

    if shipped is not None:
        row(f"shipped ethanol-gfn2 NVE step ({shipped['atoms']} atoms, 0.01 V/Å, nbrs.update)",
            f"{shipped['ms_per_step']:.3f} ms")
        row(f"GFN2-xTB single point, same ethanol and field (energy, gradient, dipole; "
            f"{xtb['openmp_threads']} OpenMP threads)",
            f"{xtb['ms']:.2f} ms (min {xtb['ms_min']:.2f})")
        ratio = summary["md_vs_xtb"] = shipped["ms_per_step"] / xtb["ms"]
        row("shipped MD step / xTB single point", f"{ratio:.3f}",
            (ratio, TARGETS["md_vs_xtb"]), "<= 0.333")
    for r in rows:
        t = r["ms_per_step"]
        for variant in t:
            row(f"{r['system']}: {variant} step", f"{t[variant]:.3f} ms")
        row(f"{r['system']}: ours (forces) / jax_md NequIP", f"{r['ours_vs_jaxmd']:.2f}",
            (r["ours_vs_jaxmd"], TARGETS["ours_vs_jaxmd"]), "<= 0.5")
        row(f"{r['system']}: forces+dipole / forces", f"{r['dipole_vs_forces']:.2f}")
        row(f"{r['system']}: forces+dipole+alpha / forces", f"{r['alpha_vs_forces']:.2f}",
            (r["alpha_vs_forces"], TARGETS["alpha_vs_forces"]), "<= 2")
        row(f"{r['system']}: forces+dipole+alpha / forces, forward-over-reverse / edge Lagrangian",
            f"{r['alpha_forward_vs_forces']:.2f} / {r['alpha_lagrangian_vs_forces']:.2f}")
        row(f"{r['system']}: forces+dipole+alpha+Z* / forces (no target)", f"{r['alpha_born_vs_forces']:.2f}")
    if not scale:
        return lines, summary
    row("process max RSS before the scaling runs", f"{baseline_rss / 2**30:.2f} GB")
    for s in scale:
        executable = "n/a" if s["executable_bytes"] is None else \
            f"{s['executable_bytes'] / 2**30:.3f} GB executable"
        timing = s["skipped"] if s["ms"] is None else \
            f"{s['ms']:.1f} ms, {s['us_per_atom']:.1f} µs/atom (median of {s['repeats']})"
        row(f"water box {s['atoms']} atoms (periodic): forces+dipole call",
            f"{timing}; max RSS "
            f"{s['max_rss_after_bytes'] / 2**30:.2f} GB "
            f"({s['max_rss_after_compile_bytes'] / 2**30:.2f} after compiling), {executable}, "
            f"compile {s['compile_s']:.0f} s")
    timed = [s for s in scale if s["us_per_atom"] is not None]
    if timed:
        per_atom = [s["us_per_atom"] for s in timed]
        flat = summary["per_atom_flatness"] = max(per_atom) / min(per_atom)
        row(f"µs/atom max / min over {', '.join(str(s['atoms']) for s in timed)} atoms",
            f"{flat:.3f}", (flat, TARGETS["per_atom_flatness"]), "<= 1.15")
    big = scale[-1]
    if big["ms"] is not None:
        rss = summary["peak_rss_gb"] = big["max_rss_after_bytes"] / 2**30
        row(f"peak memory, {big['atoms']}-atom box: process max RSS", f"{rss:.2f} GB",
            (rss, TARGETS["peak_memory_gb"]), "<= 3 GB")
    if big["executable_bytes"] is not None:
        exe = summary["peak_executable_gb"] = big["executable_bytes"] / 2**30
        row(f"peak memory, {big['atoms']}-atom box: executable (argument+output+temp)",
            f"{exe:.3f} GB", (exe, TARGETS["peak_memory_gb"]), "<= 3 GB")
    return lines, summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke-test preset, defaults become: " + ", ".join(
                            f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items()))
    parser.add_argument("--md-steps", type=int,
                        help=f"shipped MD: steps per chunk ({FULL['md_steps']})")
    parser.add_argument("--md-repeats", type=int,
                        help=f"shipped MD: chunks ({FULL['md_repeats']})")
    parser.add_argument("--xtb-repeats", type=int,
                        help=f"xTB single points ({FULL['xtb_repeats']})")
    parser.add_argument("--xtb-threads", type=int, default=1,
                        help="OpenMP threads of tblite (1; 0: OpenMP's default, all cores). "
                        "On 9 atoms one thread is as fast as two, and it does not slow down by "
                        "orders of magnitude when other processes share the cores")
    parser.add_argument("--steps", type=int, help="jax_md vs ours: water-box steps per chunk, "
                        f"80x this for ethanol ({FULL['steps']})")
    parser.add_argument("--repeats", type=int, help=f"jax_md vs ours: chunks ({FULL['repeats']})")
    parser.add_argument("--compare-water", type=int,
                        help="jax_md vs ours: water molecules in the box "
                        f"({FULL['compare_water']})")
    parser.add_argument("--water", help="scaling: comma-separated numbers of water molecules, "
                        f"run in increasing order ({FULL['water']})")
    parser.add_argument("--scaling-repeats", type=int,
                        help="scaling: timed calls per size after a warm-up "
                        f"({FULL['scaling_repeats']})")
    parser.add_argument("--seconds-per-size", type=float, default=60.0,
                        help="scaling: fewer timed calls where the warm-up call says the "
                        "repeats would take longer than this (60)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help="comma-separated parts to run (default all): scaling, md (shipped "
                        "MD step and xTB single point), compare (jax_md vs ours, responses)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args()
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    sizes = sorted(int(n) for n in args.water.split(","))
    sections = [x.strip() for x in args.sections.split(",")]
    if not set(sections) <= set(SECTIONS):
        parser.error(f"--sections: choose from {', '.join(SECTIONS)}")
    command = "python benchmarks/bench_md_step.py " + " ".join(sys.argv[1:])
    device = jax.devices()[0]
    header = (f"device: {device.platform} ({device.device_kind}), {os.cpu_count()} CPUs "
              f"({len(os.sched_getaffinity(0))} usable), jax {jax.__version__}, "
              f"jax_md {version('jax-md')}, float32")
    load_start = os.getloadavg()
    log(header + f"; load average {load_start[0]:.2f} (timings are noisy when it exceeds the "
        f"CPU count: other processes share the cores)")
    wall = time.perf_counter()

    baseline_rss, scale = max_rss_bytes(), []
    if "scaling" in sections:
        log(f"scaling (forces+dipole, {args.scaling_repeats} calls after a warm-up; "
            f"max RSS before: {baseline_rss / 2**30:.2f} GB)")
        prepared = [scaling(n) for n in sizes]
        scale = [record for record, _ in prepared]
        time_in_turns(scale, [run for _, run in prepared], args.scaling_repeats,
                      args.seconds_per_size)
        del prepared
        for s in scale:
            executable = "n/a" if s["executable_bytes"] is None else \
                f"{s['executable_bytes'] / 2**30:.3f} GB"
            timing = s["skipped"] if s["ms"] is None else \
                f"{s['ms']:10.1f} ms  {s['us_per_atom']:7.1f} µs/atom ({s['repeats']} calls)"
            log(f"  water box {s['atoms']:6d} atoms  {timing}  "
                f"max RSS {s['max_rss_after_bytes'] / 2**30:.2f} GB "
                f"({s['max_rss_after_compile_bytes'] / 2**30:.2f} after compiling)  "
                f"executable {executable}  compile {s['compile_s']:.1f} s")

    shipped = xtb = None
    if "md" in sections:
        log(f"shipped ethanol-gfn2 NVE ({args.md_repeats} chunks of {args.md_steps} steps)")
        shipped = shipped_md_step(args.md_steps, args.md_repeats)
        log(f"  {shipped['ms_per_step']:.3f} ms/step (first chunk with compile "
            f"{shipped['first_chunk_with_compile_s']:.1f} s)")
        log(f"GFN2-xTB single point ({args.xtb_repeats} calls)")
        xtb = xtb_single_point(args.xtb_repeats, args.xtb_threads)
        noisy = "; noisy: tblite's OpenMP threads slow down badly when other processes share " \
            "the cores" if xtb["ms"] > 2 * xtb["ms_min"] else ""
        log(f"  {xtb['ms']:.2f} ms (min {xtb['ms_min']:.2f} ms, {xtb['openmp_threads']} "
            f"OpenMP threads{noisy}); "
            f"MD step / xTB = {shipped['ms_per_step'] / xtb['ms']:.3f}")

    rows = []
    if "compare" in sections:
        log(f"jax_md NequIP vs ours ({args.repeats} chunks of {80 * args.steps} steps for "
            f"ethanol, {args.steps} for the water box)")
        positions, numbers, _ = ethanol()
        R_box, numbers_box, side = water_box(args.compare_water)
        rows = [compare(f"ethanol ({len(numbers)} atoms, free space)",
                        positions - positions.min(0) + 1.0, numbers, None, 80 * args.steps,
                        args.repeats),
                compare(f"water box ({len(numbers_box)} atoms, periodic)", R_box, numbers_box,
                        side, args.steps, args.repeats)]

    wall = time.perf_counter() - wall
    lines, summary = table(shipped, xtb, rows, scale, baseline_rss)
    print()
    load_end = os.getloadavg()
    print(header + f"; wall time {wall:.0f} s; 1-min load average {load_start[0]:.2f} at the "
          f"start, {load_end[0]:.2f} at the end")
    print("\n".join(lines))
    os.makedirs(args.out, exist_ok=True)
    suffix = ("_quick" if args.quick else "") + \
        ("" if set(sections) == set(SECTIONS) else "_partial")
    path = os.path.join(args.out, f"md_step_{device.platform}{suffix}.json")
    with open(path, "w") as f:
        json.dump(dict(command=command, device=str(device), device_kind=device.device_kind,
                       platform=platform.platform(), cpu_count=os.cpu_count(),
                       usable_cpus=len(os.sched_getaffinity(0)), jax_version=jax.__version__,
                       jax_md_version=version('jax-md'), width=WIDTH, options=vars(args),
                       targets=TARGETS, wall_s=wall, load_average_start=load_start,
                       load_average_end=load_end, shipped_md=shipped, xtb_single_point=xtb,
                       rows=rows, baseline_max_rss_bytes=baseline_rss, scaling=scale,
                       summary=summary), f, indent=1)
    print(f"wrote {path}")
    print(f"command: {command}")


if __name__ == "__main__":
    main()
