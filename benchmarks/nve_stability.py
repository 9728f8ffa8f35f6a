"""Long-run stability: NVE of ethanol with the shipped `ethanol-gfn2` model in float32 and float64.

Runs `jaxmd_efield.simulate.run` (velocity Verlet, the driver users run) from 300 K in a
constant 0.05 V/Å field and records the total energy (kinetic + E(R, F), which includes
-mu.F) every `--record-every` steps. Reports for each precision:

  drift       least-squares slope of E_tot(t) - E_tot(0), meV/ps (and meV/ps per atom)
  max |dE|    largest |E_tot(t) - E_tot(0)|, meV
  growth      mean |E_tot - E_tot(0)| in each tenth of the run, meV: flat for a stable run,
              linear for a constant drift, faster for an accumulating error
  fluctuation RMS of E_tot about the fitted line, meV (Verlet's shadow-energy oscillation)

and the wall time per step. Writes `results/nve_stability_<precision>.json` and the energy
trace as `results/nve_stability.png`; each precision's trajectory goes to `--traj-dir` (HDF5,
flushed as it runs, so a long run that is stopped keeps what it did: `--analyse` reports on
those files without running).

    python benchmarks/nve_stability.py [--ps 1000] [--dt-fs 0.5] [--precision both]
"""

import argparse
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from ase.build import molecule
from jax_md import space

import jaxmd_efield as jef
from jaxmd_efield import fields, simulate

HERE = os.path.dirname(os.path.abspath(__file__))
FIELD = (0.0, 0.0, 0.05)  # V/Å


def run_nve(precision, ps, dt_fs, record_every, path):
    """NVE in `precision` ("float32" or "float64"); the trajectory is written to `path`."""
    with jax.enable_x64(precision == "float64"):
        dtype = jnp.asarray(0.0).dtype
        model = jef.load_pretrained("ethanol-gfn2")
        params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), model.params)
        mol = molecule("CH3CH2OH")
        displacement, shift = space.free()
        neighbor_fn, _, energy_fn = jef.efield_nequip_neighbor_list(
            displacement, 10.0, mol.numbers, model.config, disable_cell_list=True,
            capacity_multiplier=2.0)
        steps = int(round(ps * 1000 / dt_fs / record_every)) * record_every
        start = time.perf_counter()
        out = simulate.run(lambda R, **kw: energy_fn(params, R, **kw), shift, neighbor_fn,
                           jnp.asarray(mol.positions, dtype), mol.get_masses(),
                           fields.constant(FIELD), steps=steps, dt_fs=dt_fs,
                           record_every=record_every, integrator="nve", temperature_K=300.0,
                           key=jax.random.PRNGKey(0), frames_per_chunk=100, output=path,
                           attrs=dict(precision=precision, dt_fs=dt_fs, model="ethanol-gfn2"))
        wall = time.perf_counter() - start
    return out["time"], out["total_energy"], wall / steps


def analyse(time_fs, total_energy, num_atoms):
    """Drift, largest deviation, growth per tenth and fluctuation of E_tot(t), meV and ps."""
    t_ps = np.asarray(time_fs) / 1000.0
    deviation = 1e3 * (np.asarray(total_energy, np.float64) - total_energy[0])
    slope, intercept = np.polyfit(t_ps, deviation, 1)
    tenths = np.array_split(np.abs(deviation), 10)
    return dict(duration_ps=float(t_ps[-1]), frames=len(t_ps),
                drift_meV_per_ps=float(slope), drift_meV_per_ps_per_atom=float(slope / num_atoms),
                max_abs_deviation_meV=float(np.abs(deviation).max()),
                mean_abs_deviation_per_tenth_meV=[float(np.mean(x)) for x in tenths],
                fluctuation_rms_meV=float(np.std(deviation - (slope * t_ps + intercept))))


def plot(traces, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for precision, (t, e) in traces.items():
        ax.plot(np.asarray(t) / 1000, 1e3 * (np.asarray(e, np.float64) - e[0]), lw=0.6, label=precision)
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("E_tot(t) - E_tot(0) (meV)")
    ax.set_title("ethanol-gfn2, NVE from 300 K in 0.05 V/Å")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ps", type=float, default=1000.0, help="length of each run, ps (1000 = 1 ns)")
    parser.add_argument("--dt-fs", type=float, default=0.5, help="time step, fs")
    parser.add_argument("--record-every", type=int, default=200, help="steps between recorded frames")
    parser.add_argument("--precision", choices=["float32", "float64", "both"], default="both")
    parser.add_argument("--traj-dir", default=os.path.join("outputs", "nve_stability"),
                        help="where the HDF5 trajectories go")
    parser.add_argument("--analyse", action="store_true",
                        help="only analyse the trajectories already in --traj-dir (e.g. of a stopped run)")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    precisions = ["float32", "float64"] if args.precision == "both" else [args.precision]
    os.makedirs(args.out, exist_ok=True)
    traces, rows = {}, []
    for precision in precisions:
        path = os.path.join(args.traj_dir, f"nve_{precision}.h5")
        json_path = os.path.join(args.out, f"nve_stability_{precision}.json")
        if args.analyse:
            frames, attrs = simulate.read_trajectory(path)
            t, e, per_step = frames["time"], frames["total_energy"], None
            if os.path.exists(json_path):  # keep the wall time the run itself recorded
                ms = json.load(open(json_path)).get("wall_ms_per_step")
                per_step = None if ms is None else ms / 1e3
        else:
            t, e, per_step = run_nve(precision, args.ps, args.dt_fs, args.record_every, path)
        traces[precision] = (t, e)
        result = dict(precision=precision, dt_fs=args.dt_fs, field_V_per_A=FIELD,
                      wall_ms_per_step=None if per_step is None else 1e3 * per_step,
                      machine=f"{platform.machine()}, {os.cpu_count()} cores, {jax.devices()[0].platform}",
                      jax=jax.__version__, **analyse(t, e, num_atoms=9))
        with open(json_path, "w") as f:
            json.dump(result, f, indent=1)
        rows.append(result)
    plot(traces, os.path.join(args.out, "nve_stability.png"))
    print("| precision | length ps | drift meV/ps | max abs dE meV | fluctuation RMS meV | "
          "mean abs dE per tenth of the run, meV | ms/step |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        growth = " ".join(f"{x:.2f}" for x in r["mean_abs_deviation_per_tenth_meV"])
        ms = "-" if r["wall_ms_per_step"] is None else f"{r['wall_ms_per_step']:.2f}"
        print(f"| {r['precision']} | {r['duration_ps']:.1f} | {r['drift_meV_per_ps']:+.4f} | "
              f"{r['max_abs_deviation_meV']:.2f} | {r['fluctuation_rms_meV']:.2f} | {growth} | {ms} |")


if __name__ == "__main__":
    main()
