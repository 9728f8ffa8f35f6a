"""Ethanol in a time-varying field with the shipped model: an ensemble of NVT trajectories in the
field, then field-free NVE continuations of each, the IR spectrum from the dipole
autocorrelation averaged over the ensemble (with its standard error, and the two half-ensembles
compared as a convergence check), and the harmonic IR for comparison; the Raman spectrum from
the polarizability recorded along the same NVE runs, beside the harmonic Raman activities.

    python simulations/ethanol_ir.py                      # defaults: a few minutes on 2 cores
    python simulations/ethanol_ir.py --protocol pulse --temperature 400 --replicas 64
    python simulations/ethanol_ir.py --model my_model.npz --molecule CH3OH   # any molecule

Writes OUT/nvt.h5 and OUT/nve.h5 (trajectories with a leading replica axis; NVE frames carry
the polarizability and Born charges), OUT/ir.png (IR spectrum from MD with its uncertainty band
and the harmonic sticks, and the dipole/field trace of one NVT replica), OUT/raman.png (Raman
from MD: unpolarized, VV and VH, with the harmonic activities) and OUT/summary.json.
"""

import argparse
import functools
import json
import os
import time
import warnings

import ase.io
import ase.optimize
import jax
import jax.numpy as jnp
import numpy as np
from ase.build import molecule
from jax_md import space

import jaxmd_efield as jef
from jaxmd_efield import fields, simulate, spectra


def field_protocol(kind, amplitude, wavenumber_cm, duration_fs):
    """The NVT field: a weak sinusoid, a Gaussian pulse mid-run, a constant field, or none."""
    direction = [0.0, 0.0, 1.0]
    if kind == "sinusoidal":
        return fields.sinusoidal(amplitude, direction, wavenumber_cm=wavenumber_cm)
    if kind == "pulse":
        return fields.gaussian_pulse(amplitude, direction, center_fs=duration_fs / 2, width_fs=20.0,
                                     wavenumber_cm=wavenumber_cm)
    if kind == "constant":
        return fields.constant([0.0, 0.0, amplitude])
    return fields.constant([0.0, 0.0, 0.0])


def md_peaks(wavenumbers, spectrum, lo=500.0, hi=4000.0, smooth_cm=8.0, prominence=0.05):
    """Peaks of the spectrum in [lo, hi]: smoothed with a Gaussian of `smooth_cm`, then maxima
    whose prominence is at least `prominence` of the band's maximum (raw local maxima of a
    few-picosecond spectrum are mostly noise)."""
    from scipy.ndimage import gaussian_filter1d
    from scipy.signal import find_peaks

    band = (wavenumbers >= lo) & (wavenumbers <= hi)
    w = wavenumbers[band]
    s = gaussian_filter1d(spectrum[band], smooth_cm / (w[1] - w[0]))
    s = s / s.max()
    index, _ = find_peaks(s, prominence=prominence)
    return w[index], s[index]


def plot_raman(path, raman, halves, harmonic, replicas):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = raman["wavenumbers"]
    band = (w > 200) & (w < 3800)
    scale = raman["unpolarized"][band].max()
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(w[band], raman["unpolarized"][band] / scale, "C0", lw=1,
            label=f"MD, {replicas} replicas: unpolarized (polarizability ACF, NVE)")
    ax.plot(w[band], raman["vv"][band] / scale, "C2", lw=0.7, label="MD: polarized (VV)")
    ax.plot(w[band], raman["vh"][band] / scale, "C1", lw=0.7, label="MD: depolarized (VH)")
    for half, style in zip(halves, (":", "--")):
        ax.plot(w[band], half[band] / scale, "k", ls=style, lw=0.5)
    sticks = harmonic["activities"] / harmonic["activities"].max()
    ax.vlines(harmonic["frequencies"], 0, sticks, colors="C3", lw=1.5,
              label="harmonic activities (model)")
    ax.set(xlabel="Raman shift (cm$^{-1}$)", ylabel="Raman activity (normalised)", xlim=(200, 3800),
           title="Raman: activity density from MD (classical) and harmonic activities; dotted, "
                 "dashed: half-ensembles")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot(path, ir, harmonic, nvt):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wavenumbers = ir["wavenumbers"]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 7))
    band = (wavenumbers > 400) & (wavenumbers < 3800)
    scale = ir["spectrum"][band].max()
    w, mean, error = wavenumbers[band], ir["spectrum"][band] / scale, ir["standard_error"][band] / scale
    ax1.fill_between(w, mean - 2 * error, mean + 2 * error, color="C0", alpha=0.3, lw=0,
                     label="± 2 standard errors")
    ax1.plot(w, mean, "C0", lw=1, label=f"MD, {len(nvt['dipole'])} replicas (dipole ACF, NVE)")
    for k, style in enumerate((":", "--")):
        ax1.plot(w, ir["halves"][k][band] / scale, "k", ls=style, lw=0.6,
                 label=f"half-ensemble {k + 1}")
    sticks = harmonic["intensities"] / harmonic["intensities"].max()
    ax1.vlines(harmonic["frequencies"], 0, sticks, colors="C3", lw=1.5, label="harmonic (model)")
    ax1.set(xlabel="wavenumber (cm$^{-1}$)", ylabel="IR intensity (normalised)", xlim=(400, 3800),
            title=f"half-ensemble relative L1 difference {ir['half_l1']:.1%}")
    ax1.legend(fontsize=8)
    first_ps = nvt["time"] <= 1000.0
    dipole = nvt["dipole"][0]
    ax2.plot(nvt["time"][first_ps] / 1e3, (dipole - dipole.mean(0))[first_ps], lw=0.8)
    ax2.set(xlabel="time (ps), NVT replica 0", ylabel="dipole - mean (e·Å)")
    twin = ax2.twinx()
    twin.plot(nvt["time"][first_ps] / 1e3, nvt["field"][0, first_ps, 2], "k", lw=0.8, alpha=0.5)
    twin.set_ylabel("field z (V/Å)")
    ax2.legend(["mu_x", "mu_y", "mu_z"], loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# jax_md's kinetic energy asks for a float64 sum, which float32 mode truncates (harmless)
warnings.filterwarnings("ignore", message="Explicitly requested dtype float64 requested in sum")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ethanol-gfn2", help="pretrained name or .npz path")
    parser.add_argument("--molecule", default="CH3CH2OH",
                        help="ase.build.molecule name or a structure file of a molecule the model knows")
    parser.add_argument("--protocol", choices=["sinusoidal", "pulse", "constant", "none"],
                        default="sinusoidal")
    parser.add_argument("--field-amplitude", type=float, default=0.02, help="V/Å")
    parser.add_argument("--field-wavenumber", type=float, default=1000.0, help="cm^-1")
    parser.add_argument("--temperature", type=float, default=300.0, help="K")
    # The spectrum's uncertainty is mostly replica-to-replica variation (conformers, energies):
    # more replicas converge it, longer ones resolve it. Measured on 2 cores (2 ps NVE each,
    # 8 cm^-1 resolution): half-ensemble L1 difference 29-35 % with 32 replicas, 13 % with 128
    # (253 s in all with the shipped model).
    parser.add_argument("--replicas", type=int, default=128, help="independent trajectories")
    parser.add_argument("--nvt-ps", type=float, default=0.5, help="NVT in the field, per replica")
    parser.add_argument("--nve-ps", type=float, default=2.0, help="field-free NVE, per replica")
    parser.add_argument("--blocks", type=int, default=2,
                        help="blocks per NVE trajectory averaged in the spectrum (more: smoother, "
                             "coarser resolution)")
    parser.add_argument("--dt-fs", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="outputs/ethanol_ir")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)

    model = jef.load_pretrained(args.model)
    atoms = ase.io.read(args.molecule) if os.path.exists(args.molecule) else molecule(args.molecule)
    atoms.calc = jef.EFieldCalculator(model)
    ase.optimize.BFGS(atoms, logfile=None).run(fmax=0.002, steps=500)
    R = jnp.asarray(atoms.positions)
    masses = atoms.get_masses()
    displacement, shift = space.free()
    neighbor_fn, _, energy_fn = jef.efield_nequip_neighbor_list(
        displacement, 10.0, atoms.numbers, model.config, disable_cell_list=True, capacity_multiplier=1.5)
    energy = functools.partial(energy_fn, model.params)
    nbrs = neighbor_fn.allocate(R)
    harmonic = spectra.harmonic_raman(energy, R, masses, neighbor=nbrs)  # with the IR intensities

    # NVE frames every 4 fs (resolving up to 4170 cm^-1) with the polarizability for Raman
    record_every = dict(nvt=2, nve=max(1, round(4.0 / args.dt_fs)))
    nvt_steps = int(args.nvt_ps * 1e3 / args.dt_fs)
    protocol = field_protocol(args.protocol, args.field_amplitude, args.field_wavenumber, args.nvt_ps * 1e3)
    common = dict(dt_fs=args.dt_fs, temperature_K=args.temperature, replicas=args.replicas)
    print(f"NVT of {args.replicas} replicas, {args.nvt_ps} ps each at {args.temperature} K, "
          f"{args.protocol} field {args.field_amplitude} V/Å")
    nvt = simulate.run(energy, shift, neighbor_fn, R, masses, protocol, steps=nvt_steps,
                       integrator="nvt_nose_hoover", key=jax.random.PRNGKey(args.seed),
                       output=os.path.join(args.out, "nvt.h5"), attrs=dict(vars(args)),
                       record_every=record_every["nvt"], frames_per_chunk=100, **common)
    # field-free NVE continuations of every replica's last NVT frame
    print(f"NVE of {args.replicas} replicas, {args.nve_ps} ps each, zero field")
    nve = simulate.run(energy, shift, neighbor_fn, jnp.asarray(nvt["positions"][:, -1]), masses,
                       fields.constant([0.0, 0.0, 0.0]), steps=int(args.nve_ps * 1e3 / args.dt_fs),
                       integrator="nve", momenta=masses[:, None] * nvt["velocities"][:, -1],
                       output=os.path.join(args.out, "nve.h5"), record_every=record_every["nve"],
                       frames_per_chunk=25, record_response="polarizability", **common)
    frame_fs = record_every["nve"] * args.dt_fs
    ir = spectra.ir_ensemble(nve["dipole"], frame_fs, temperature_K=args.temperature,
                             n_blocks=args.blocks)
    wavenumbers, spectrum = ir["wavenumbers"], ir["spectrum"]
    plot(os.path.join(args.out, "ir.png"), ir, harmonic, nvt)
    raman_of = functools.partial(spectra.raman_from_polarizabilities, dt_fs=frame_fs,
                                 temperature_K=args.temperature, n_blocks=args.blocks)
    raman = raman_of(nve["polarizability"])
    half = args.replicas // 2
    raman_halves = [raman_of(nve["polarizability"][part])["unpolarized"]
                    for part in (slice(0, half), slice(half, 2 * half))]
    raman_half_l1 = spectra.relative_l1(raman["wavenumbers"], *raman_halves)
    plot_raman(os.path.join(args.out, "raman.png"), raman, raman_halves, harmonic, args.replicas)

    peaks, heights = md_peaks(wavenumbers, spectrum)
    strong = harmonic["intensities"] > 0.05 * harmonic["intensities"].max()
    pairs = [dict(harmonic=float(w), md=float(peaks[np.argmin(np.abs(peaks - w))]),
                  shift=float(peaks[np.argmin(np.abs(peaks - w))] - w))
             for w in harmonic["frequencies"][strong & (harmonic["frequencies"] > 500)] if len(peaks)]
    summary = dict(
        harmonic=[dict(wavenumber=float(w), intensity_km_mol=float(i), raman_activity_A4_amu=float(s),
                       depolarization=float(p))
                  for w, i, s, p in zip(harmonic["frequencies"], harmonic["intensities"],
                                        harmonic["activities"], harmonic["depolarization"])],
        raman_half_ensemble_relative_l1=raman_half_l1,
        md_peaks=[dict(wavenumber=float(w), relative_height=float(h)) for w, h in zip(peaks, heights)],
        strong_modes_md_vs_harmonic=pairs,
        half_ensemble_relative_l1=ir["half_l1"], replicas=args.replicas,
        nvt_mean_temperature_K=float(nvt["temperature"][:, len(nvt["time"]) // 2:].mean()),
        nve_mean_temperature_K=float(nve["temperature"].mean()),
        wall_seconds=time.perf_counter() - start, settings=vars(args))
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print("harmonic modes (strong, cm^-1 / km/mol):",
          ", ".join(f"{w:.0f}/{i:.0f}" for w, i in zip(harmonic["frequencies"][strong],
                                                      harmonic["intensities"][strong])))
    print("MD peaks (cm^-1):", ", ".join(f"{w:.0f}" for w in peaks))
    print("| strong harmonic mode cm^-1 | nearest MD peak cm^-1 | MD - harmonic |\n|---|---|---|")
    for pair in pairs:
        print(f"| {pair['harmonic']:.0f} | {pair['md']:.0f} | {pair['shift']:+.0f} |")
    print(f"half-ensemble relative L1 difference of the spectrum: IR {ir['half_l1']:.1%}, "
          f"Raman {raman_half_l1:.1%}")
    print(f"NVT mean temperature {summary['nvt_mean_temperature_K']:.0f} K; "
          f"wrote {args.out}/ir.png and raman.png; wall time {summary['wall_seconds']:.0f} s")
    return summary


if __name__ == "__main__":
    from jaxmd_efield.compilation import use_persistent_cache

    use_persistent_cache()  # a second run loads compiled programs instead of compiling
    main()
