"""MD step cost of the field-aware energy_fn against jax_md's own NequIP, and the cost of the
response observables, measured in one run on one machine.

Every variant runs the same velocity-Verlet step with a neighbor-list update inside a jitted
`lax.fori_loop`; only the force call differs:

  jax_md NequIP        quantity.force of jax_md.energy.nequip_neighbor_list (no field)
  forces               our energy_fn in a constant field, forces only
  forces+dipole        forces and dipole from one reverse pass (response.energy_forces_dipole)
  forces+dipole+alpha  forces, dipole, polarizability (and Born charges) (response.field_response)

Width, depth, cutoff, radial basis and radial MLP are equal for both models. Times are the
median over repeats of a chunk of steps, after compilation.

    python benchmarks/bench_md_step.py [--steps 10] [--repeats 5] [--out benchmarks/results]
"""

import argparse
import functools
import json
import os
import platform
import time

import ase.data
import jax
import jax.numpy as jnp
import numpy as np
from ase.build import molecule
from jax_md import energy as jmd_energy
from jax_md import quantity, space
from jax_md._nn import nequip as jmd_nequip

import jaxmd_efield as jef
from jaxmd_efield import units

WIDTH = dict(hidden_ours="32x0e + 16x1o + 8x2e", hidden_jaxmd="32x0e + 16x1e + 8x2e",
             layers=3, r_cut=4.0, num_basis=8, radial_hidden=32, radial_layers=2)
FIELD = jnp.array([0.0, 0.0, 0.1])  # V/Å
DT = 0.5 * units.FS


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


def systems():
    eth = molecule("CH3CH2OH")
    R, numbers, side = water_box(334)
    return {
        "ethanol (free space)": (eth.positions - eth.positions.min(0) + 1.0, eth.numbers, None, 40),
        f"water box ({len(numbers)} atoms, periodic)": (R, numbers, side, 1),
    }


def velocity_verlet_runner(force_fn, neighbor_fn, R0, masses, steps):
    """jit(run(nbrs) -> (positions, aux)) of `steps` velocity-Verlet steps, where
    force_fn(R, nbrs) -> (F, aux). aux (dipole, polarizability) is returned so that the compiler
    cannot drop its computation from the loop."""
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
    jax.block_until_ready(run(nbrs))  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(run(nbrs))
        times.append((time.perf_counter() - start) / steps * 1e3)
    return float(np.median(times))


def variants(R, numbers, side):
    """force functions (R, nbrs) -> (F, aux) of every variant, and their neighbor_fn."""
    if side is None:
        displacement, box, nl = space.free()[0], 100.0, dict(disable_cell_list=True)
    else:
        displacement, box, nl = space.periodic(side)[0], side, {}
    table = tuple(sorted(set(numbers.tolist())))
    ours = jef.EFieldNequIPConfig(
        species=table, r_cut=WIDTH["r_cut"], hidden_irreps=WIDTH["hidden_ours"],
        num_layers=WIDTH["layers"], num_basis=WIDTH["num_basis"],
        radial_hidden=WIDTH["radial_hidden"], radial_layers=WIDTH["radial_layers"])
    neighbor_fn, init_fn, energy_fn = jef.efield_nequip_neighbor_list(
        displacement, box, numbers, ours, capacity_multiplier=1.5, **nl)
    nbrs = neighbor_fn.allocate(R)
    E = functools.partial(energy_fn, init_fn(jax.random.PRNGKey(0), R, nbrs))

    cfg = jmd_nequip.default_config()
    cfg.hidden_irreps, cfg.sh_irreps = WIDTH["hidden_jaxmd"], "1x0e + 1x1e + 1x2e"
    cfg.graph_net_steps, cfg.r_max, cfg.num_basis = WIDTH["layers"], WIDTH["r_cut"], WIDTH["num_basis"]
    cfg.radial_net_n_hidden, cfg.radial_net_n_layers = WIDTH["radial_hidden"], WIDTH["radial_layers"]
    cfg.n_elements, cfg.shift, cfg.scale = len(table), 0.0, 1.0
    one_hot = jax.nn.one_hot(jnp.asarray([table.index(z) for z in numbers]), len(table))
    _, jinit, jenergy = jmd_energy.nequip_neighbor_list(displacement, box, cfg, atoms=one_hot, **nl)
    jparams = jinit(jax.random.PRNGKey(0), R, nbrs)
    jforce = quantity.force(functools.partial(jenergy, jparams))

    def response(R_, nbrs_):
        out = jef.response.field_response(E)(R_, field=FIELD, neighbor=nbrs_)
        return out["forces"], (out["dipole"], out["polarizability"])

    return neighbor_fn, nbrs, {
        "jax_md NequIP": lambda R_, n_: (jforce(R_, neighbor=n_), ()),
        "forces": lambda R_, n_: (jef.response.forces(E)(R_, field=FIELD, neighbor=n_), ()),
        "forces+dipole": lambda R_, n_: jef.response.energy_forces_dipole(E)(
            R_, field=FIELD, neighbor=n_)[1:],
        "forces+dipole+alpha": response,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10,
                        help="steps per timed chunk (40x this for ethanol)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args()
    device = jax.devices()[0]
    rows = []
    for name, (R, numbers, side, steps_factor) in systems().items():
        steps = args.steps * steps_factor
        R = jnp.asarray(R, jnp.float32)
        masses = jnp.asarray(ase.data.atomic_masses[numbers], jnp.float32)
        neighbor_fn, nbrs, forces = variants(R, numbers, side)
        times = {}
        for variant, force_fn in forces.items():
            run = velocity_verlet_runner(force_fn, neighbor_fn, R, masses, steps)
            times[variant] = time_ms_per_step(run, nbrs, steps, args.repeats)
            print(f"  {name:34s} {variant:22s} {times[variant]:9.3f} ms/step", flush=True)
        rows.append(dict(system=name, atoms=len(numbers), ms_per_step=times,
                         ours_vs_jaxmd=times["forces"] / times["jax_md NequIP"],
                         dipole_vs_forces=times["forces+dipole"] / times["forces"],
                         alpha_vs_forces=times["forces+dipole+alpha"] / times["forces"]))

    header = ("| system | jax_md NequIP ms | ours ms | forces+dipole ms | +alpha ms | "
              "ours / jax_md (<=1.05) | +dipole / forces (<=1.2) | +alpha / forces (<=1.5) |")
    lines = [f"device: {device.platform} ({device.device_kind}), {os.cpu_count()} CPUs, "
             f"jax {jax.__version__}, median of {args.repeats} chunks of {args.steps} steps "
             f"(x40 for ethanol), float32",
             header, "|" + "---|" * 8]
    for r in rows:
        t = r["ms_per_step"]
        lines.append(f"| {r['system']} | {t['jax_md NequIP']:.2f} | {t['forces']:.2f} | "
                     f"{t['forces+dipole']:.2f} | {t['forces+dipole+alpha']:.2f} | "
                     f"{r['ours_vs_jaxmd']:.2f} | {r['dipole_vs_forces']:.2f} | {r['alpha_vs_forces']:.2f} |")
    print("\n".join(lines))
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"md_step_{device.platform}.json")
    with open(path, "w") as f:
        json.dump(dict(device=str(device), platform=platform.platform(), width=WIDTH,
                       steps=args.steps, repeats=args.repeats, rows=rows), f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
