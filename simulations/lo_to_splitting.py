"""LO-TO splitting of a rock-salt crystal: rigid-ion force constants (jax_md) + Born charges and
eps_inf (the shipped `becs-eps` tensor model) + phonopy's non-analytic correction.

    python simulations/lo_to_splitting.py                            # NaCl, Z* and eps_inf from the model
    python simulations/lo_to_splitting.py --crystal MgO
    python simulations/lo_to_splitting.py --born 1.0935 --eps 2.5726  # given Z* (cation) and eps_inf

1. Force constants: a rigid-ion model with formal charges +-q, Ewald electrostatics (jax_md's real-
   and reciprocal-space Ewald terms plus the self term) and a Born-Mayer repulsion A exp(-r/rho)
   between cation-anion nearest neighbours. rho is taken from the literature, A is fitted so the
   crystal is at zero pressure at the experimental lattice constant. Forces are -grad E (jax) on
   phonopy's displaced supercells (cubes of `--supercell` conventional cells); phonopy builds and
   symmetrises the force constants of the 2-atom fcc primitive cell.
2. Z* and eps_inf: from the model, or given (`--born`, `--eps`), symmetrised by phonopy. If the
   DFT data set (`--reference-xyz`) holds the same fcc rock-salt crystal, its values are printed too.
3. Phonopy with the NAC: TO and LO at Gamma (q -> 0 along [100]), TO without NAC, the rigid-ion
   formula omega_LO^2 - omega_TO^2 = 4 pi k_e Z*^2 / (Omega eps_inf mu), and a band-structure plot
   (Gamma-X-U|K-Gamma-L) with and without NAC, written to `--out` (default outputs/lo_to_<crystal>.png).

The NAC fixes the q -> 0 limit exactly, but the formal-charge force constants keep the bare
(Z* = q, eps_inf = 1) dipole-dipole tail, so away from Gamma the LO branch rises towards the bare
rigid-ion LO. `--ion-charge` set to Z*/sqrt(eps_inf) makes the two long-range parts agree (and
softens the TO: the fitted repulsion is weaker).

Units: eV, Å, e, amu; frequencies in THz and cm^-1.
"""

import argparse
import os
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from ase.build import bulk
from jax_md import energy, smap, space

from jaxmd_efield import phonons, units

jax.config.update("jax_enable_x64", True)
# raised inside jax_md.partition's neighbor-list code under jax_enable_x64
warnings.filterwarnings("ignore", message="scatter inputs have incompatible types")

K_E = phonons.COULOMB_EV_A  # e^2 / (4 pi eps0), eV·Å
THZ_TO_CM = 1e-3 / units.SPEED_OF_LIGHT_CM_PER_FS  # 1 THz in cm^-1
THZ = units.WAVENUMBER_PER_SQRT_EV_A2_AMU / THZ_TO_CM  # sqrt(eV / (Å^2 amu)) in THz

CRYSTALS = {
    # rho: NaCl 0.321 Å (Kittel, Introduction to Solid State Physics, 8th ed., ch. 3, table of alkali
    # halides, whose z*lambda = 1.05e-8 erg = 6.55 keV for z = 6 neighbours should match 6 A);
    # MgO 0.3242 Å (Mg2+-O2- Buckingham term, Lewis and Catlow, J. Phys. C 18, 1149 (1985)).
    # Fitted A: NaCl 1106 eV (6 A = 1.06e-8 erg), MgO 811 eV (Lewis and Catlow: 821.6 eV).
    # Experiment, cm^-1 (room temperature; for comparison only, nothing is tuned to it): NaCl TO 164,
    # LO 264 (neutrons, Raunio et al., Phys. Rev. 178, 1496 (1969)); MgO TO 401 (infrared,
    # Jasperse et al., Phys. Rev. 146, 526 (1966)), LO 725.
    "NaCl": dict(charge=1.0, a=5.64, rho=0.321, experiment_cm=(164.0, 264.0)),
    "MgO": dict(charge=2.0, a=4.21, rho=0.3242, experiment_cm=(401.0, 725.0)),
}


def cube_supercell_matrix(n):
    """Supercell matrix (rows: multiples of the fcc primitive vectors) of a cube of n x n x n
    conventional cells (8 n^3 atoms of rock salt)."""
    return n * np.array([[-1, 1, 1], [1, -1, 1], [1, 1, -1]])


def ewald_parameters(side, tol=1e-10):
    """Real-space cutoff (Å, below half the cube side, so the minimum image is the only image),
    splitting alpha (1/Å) and reciprocal cutoff g_max (1/Å) with erfc(alpha r_cut) and
    exp(-g_max^2 / 4 alpha^2) both about `tol`."""
    r_cut = 0.49 * side
    alpha = np.sqrt(-np.log(tol)) / r_cut
    return r_cut, alpha, 2 * alpha * np.sqrt(-np.log(tol))


def born_mayer(dr, cation_anion, rho, r_max):
    """exp(-dr / rho) (dimensionless) for cation-anion pairs closer than r_max, else 0."""
    return jnp.where((dr < r_max) & (cation_anion > 0), jnp.exp(-dr / rho), 0.0)


def rigid_ion_energy(side, charges, rho, nearest):
    """Builder for a rock-salt rigid-ion crystal in a periodic cube of `side` Å.

    charges: (N,) e (positive on cations); rho: Born-Mayer range, Å; nearest: the cation-anion
    distance, Å. Returns (neighbor_fn, coulomb_fn, repulsion_fn): coulomb_fn(R, neighbor) is the
    Ewald energy in eV (jax_md's real- and reciprocal-space terms times k_e, with the self term
    -k_e alpha / sqrt(pi) sum q^2 that jax_md leaves out); repulsion_fn(R, neighbor, rho=...) is
    sum exp(-r / rho) over cation-anion nearest-neighbour pairs (times A it is the repulsion, eV).
    """
    charges = jnp.asarray(charges, dtype=float)
    r_cut, alpha, g_max = ewald_parameters(side)
    displacement, _ = space.periodic(side)
    neighbor_fn, direct_fn = energy.coulomb_direct_neighbor_list(
        displacement, side, charges, alpha=alpha, cutoff=r_cut, disable_cell_list=True)
    recip_fn = energy.coulomb_recip_ewald(charges, side, alpha, g_max)
    self_energy = -alpha / np.sqrt(np.pi) * jnp.sum(charges ** 2)
    species = (charges < 0).astype(int)
    # r_max between the first (r0) and second (sqrt(3) r0) cation-anion shells
    repulsion_fn = smap.pair_neighbor_list(
        born_mayer, space.metric(displacement), species=species,
        cation_anion=jnp.array([[0.0, 1.0], [1.0, 0.0]]), rho=rho, r_max=1.2 * nearest)

    def coulomb_fn(R, neighbor):
        return K_E * (direct_fn(R, neighbor=neighbor) + recip_fn(R) + self_energy)

    return neighbor_fn, coulomb_fn, repulsion_fn


def fit_repulsion(coulomb_fn, repulsion_fn, R, neighbor, rho):
    """The Born-Mayer prefactor A (eV) that makes the lattice R stress-free.

    Scaling all distances by s scales the Coulomb energy by 1/s and is, for exp(-r/rho), the same
    as rho -> rho/s: E(s) = E_C / s + A B(rho / s). dE/ds = 0 at s = 1 gives A = E_C / B'(1)."""
    slope = jax.grad(lambda s: repulsion_fn(R, neighbor, rho=rho / s))(1.0)
    return coulomb_fn(R, neighbor) / slope


def primitive_cell(crystal):
    """The 2-atom fcc primitive cell (60° angles, cation at the origin) at the experimental a."""
    return bulk(crystal, "rocksalt", a=CRYSTALS[crystal]["a"])


def phonopy_atoms(atoms):
    """ASE Atoms -> PhonopyAtoms."""
    from phonopy.structure.atoms import PhonopyAtoms
    return PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=atoms.cell.array,
                        scaled_positions=atoms.get_scaled_positions())


def rigid_ion_phonopy(crystal, supercell=3, charge=None, distance=0.01):
    """Phonopy object with rigid-ion force constants of the fcc primitive cell of `crystal`, from
    finite displacements (`distance`, Å) in a cube of `supercell`^3 conventional cells. `charge`:
    the ionic charge (e), formal by default. Returns (phonopy, A in eV)."""
    from phonopy import Phonopy

    spec = CRYSTALS[crystal]
    charge = spec["charge"] if charge is None else charge
    atoms = primitive_cell(crystal)
    ph = Phonopy(phonopy_atoms(atoms), supercell_matrix=cube_supercell_matrix(supercell), primitive_matrix="P")
    side = supercell * spec["a"]
    assert np.allclose(ph.supercell.cell, side * np.eye(3))
    charges = charge * np.where(ph.supercell.numbers == atoms.numbers[0], 1.0, -1.0)
    neighbor_fn, coulomb_fn, repulsion_fn = rigid_ion_energy(side, charges, spec["rho"], spec["a"] / 2)
    R = jnp.asarray(ph.supercell.positions)
    nbrs = neighbor_fn.allocate(R)
    A = fit_repulsion(coulomb_fn, repulsion_fn, R, nbrs, spec["rho"])
    forces = jax.jit(jax.grad(lambda R, nb: -coulomb_fn(R, nb) - A * repulsion_fn(R, nb)))
    ph.generate_displacements(distance=distance)
    ph.forces = [np.asarray(forces(jnp.asarray(sc.positions), nbrs.update(jnp.asarray(sc.positions))))
                 for sc in ph.supercells_with_displacements]
    ph.produce_force_constants(show_drift=False)
    ph.symmetrize_force_constants(show_drift=False)
    return ph, float(A)


def symmetrized_born_eps(atoms, born, eps):
    """Z* (N, 3, 3; atom, field, displacement) and eps_inf (3, 3) of `atoms` symmetrised by
    phonopy (site symmetry, acoustic sum rule)."""
    from phonopy.structure.symmetry import symmetrize_borns_and_epsilon
    return symmetrize_borns_and_epsilon(np.asarray(born, dtype=float), np.asarray(eps, dtype=float),
                                        phonopy_atoms(atoms))


def gamma_frequencies(ph, born, eps, direction=(1.0, 0.0, 0.0)):
    """Frequencies (THz, ascending) at Gamma: without NAC, and with NAC for q -> 0 along the
    Cartesian `direction`. Leaves `ph.nac_params` set."""
    ph.nac_params = None
    ph.run_qpoints([[0.0, 0.0, 0.0]])
    without = ph.qpoints.frequencies[0]
    ph.nac_params = phonons.phonopy_nac_params(born, eps)
    # phonopy's q_direction is reduced in the reciprocal basis of its primitive cell
    ph.run_qpoints([[0.0, 0.0, 0.0]], nac_q_direction=ph.primitive.cell @ np.asarray(direction))
    return without, ph.qpoints.frequencies[0]


def rigid_ion_lo(to_thz, z, eps, masses, volume):
    """LO frequency (THz) of a cubic two-atom crystal from its TO (THz), Z* (e), eps_inf,
    masses (amu) and cell volume (Å^3): omega_LO^2 = omega_TO^2 + 4 pi k_e Z^2 / (Omega eps mu)."""
    mu = masses[0] * masses[1] / (masses[0] + masses[1])
    return np.sqrt(to_thz ** 2 + THZ ** 2 * 4 * np.pi * K_E * z ** 2 / (volume * eps * mu))


def model_born_eps(atoms, name="becs-eps"):
    """Z* (N, 3, 3) and eps_inf (3, 3) of `atoms` from the shipped tensor model `name`."""
    import jaxmd_efield as jef
    calc = jef.EFieldCalculator(jef.load_pretrained(name))
    atoms = atoms.copy()
    atoms.calc = calc
    return (calc.get_property("born_effective_charges", atoms),
            calc.get_property("dielectric_tensor", atoms))


def reference_born_eps(path, atoms):
    """DFT Z* and eps_inf of the same fcc rock-salt crystal in the data set at `path` (extended
    XYZ, per-atom `becs`, per-structure `eps`), or None if the file or the crystal is absent."""
    import ase.io
    if not os.path.exists(path):
        return None
    for frame in ase.io.read(path, ":"):
        if (frame.get_chemical_formula() == atoms.get_chemical_formula()
                and np.allclose(frame.cell.cellpar()[3:], 60.0, atol=0.5)):
            order = np.argsort(frame.numbers != atoms.numbers[0])  # cation first, as in `atoms`
            return frame.arrays["becs"].reshape(-1, 3, 3)[order], np.reshape(frame.info["eps"], (3, 3))
    return None


def band_paths(npoints):
    """Gamma-X-U|K-Gamma-L of the fcc primitive cell (reduced reciprocal coordinates)."""
    from phonopy.phonon.band_structure import get_band_qpoints_and_path_connections
    G, X, U, K, L = [0, 0, 0], [0.5, 0, 0.5], [0.625, 0.25, 0.625], [0.375, 0.375, 0.75], [0.5, 0.5, 0.5]
    qpoints, connections = get_band_qpoints_and_path_connections([[G, X, U], [K, G, L]], npoints=npoints)
    return qpoints, connections, ["$\\Gamma$", "X", "U|K", "$\\Gamma$", "L"]


def plot_bands(ph, born, eps, path, title, npoints=51):
    """Band structure without NAC and with NAC overlaid, saved to `path` (PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    qpoints, connections, labels = band_paths(npoints)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, color, ls, nac in (("no NAC", "0.5", "--", None),
                                 ("NAC", "C3", "-", phonons.phonopy_nac_params(born, eps))):
        ph.nac_params = nac
        ph.run_band_structure(qpoints, path_connections=connections, labels=labels)
        for x, f in zip(ph.band_structure.distances, ph.band_structure.frequencies):
            lines = ax.plot(x, f, color=color, ls=ls, lw=1.2)
        lines[0].set_label(name)
    ticks = [ph.band_structure.distances[0][0]] + [x[-1] for x in ph.band_structure.distances]
    ax.set_xticks(ticks, labels)
    for t in ticks[1:-1]:
        ax.axvline(t, color="k", lw=0.5)
    ax.set(xlim=(ticks[0], ticks[-1]), ylim=(0, None), ylabel="frequency (THz)", title=title)
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--crystal", choices=sorted(CRYSTALS), default="NaCl")
    p.add_argument("--born", type=float, help="cation Z* (e), isotropic; with --eps, used instead of the model")
    p.add_argument("--eps", type=float, help="eps_inf, isotropic; with --born")
    p.add_argument("--ion-charge", type=float,
                   help="rigid-ion charge (e), formal (1 or 2) by default; Z*/sqrt(eps_inf) makes the force "
                        "constants' dipole-dipole tail the same as the NAC's")
    p.add_argument("--model", default="becs-eps", help="shipped tensor model for Z* and eps_inf")
    p.add_argument("--reference-xyz", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                           "shared", "data", "becs_eps.xyz"))
    p.add_argument("--supercell", type=int, default=3, help="cube of N^3 conventional cells")
    p.add_argument("--band-points", type=int, default=51)
    p.add_argument("--out", help="PNG path (default outputs/lo_to_<crystal>.png)")
    args = p.parse_args(argv)
    if (args.born is None) != (args.eps is None):
        p.error("--born and --eps go together")
    return args


def main(argv=None):
    args = parse_args(argv)
    out = args.out or os.path.join("outputs", f"lo_to_{args.crystal}.png")
    spec = CRYSTALS[args.crystal]
    atoms = primitive_cell(args.crystal)
    cation = atoms.get_chemical_symbols()[0]
    start = time.time()
    if args.born is not None:
        source = "given"
        born, eps = np.array([args.born * np.eye(3), -args.born * np.eye(3)]), args.eps * np.eye(3)
    else:
        source = f"model {args.model}"
        try:
            born, eps = model_born_eps(atoms, args.model)
        except ValueError as err:  # no such shipped model
            raise SystemExit(f"{err}\ngive Z* and eps_inf with --born and --eps instead") from err
    born, eps = symmetrized_born_eps(atoms, born, eps)
    z, e = np.trace(born[0]) / 3, np.trace(eps) / 3
    print(f"Z*({cation}) = {z:.4f} e, eps_inf = {e:.4f}  ({source})")
    reference = reference_born_eps(args.reference_xyz, atoms)
    if reference is not None:
        print(f"Z*({cation}) = {np.trace(reference[0][0]) / 3:.4f} e, eps_inf = {np.trace(reference[1]) / 3:.4f}"
              f"  (DFT, {os.path.basename(args.reference_xyz)})")

    ph, A = rigid_ion_phonopy(args.crystal, args.supercell, args.ion_charge)
    charge = spec["charge"] if args.ion_charge is None else args.ion_charge
    print(f"{args.crystal} rigid ion: q = +-{charge:g} e, a = {spec['a']} Å, rho = {spec['rho']} Å, "
          f"fitted A = {A:.1f} eV; {len(ph.supercell)}-atom supercell ({time.time() - start:.1f} s)")
    without, with_nac = gamma_frequencies(ph, born, eps)
    to = without[3:].mean()
    lo_formula = rigid_ion_lo(to, z, e, ph.primitive.masses, ph.primitive.volume)
    rows = [("TO, no NAC", to), ("TO, NAC, q || [100]", with_nac[3:5].mean()),
            ("LO, NAC, q || [100]", with_nac[5]), ("LO, rigid-ion formula", lo_formula),
            ("TO, experiment", spec["experiment_cm"][0] / THZ_TO_CM),
            ("LO, experiment", spec["experiment_cm"][1] / THZ_TO_CM)]
    print(f"{'Gamma':24s} {'THz':>7s} {'cm^-1':>7s}")
    for name, f in rows:
        print(f"{name:24s} {f:7.3f} {f * THZ_TO_CM:7.1f}")

    plot_bands(ph, born, eps, out, f"{args.crystal}: rigid ion + Z*, eps_inf ({source})", args.band_points)
    print(f"wrote {out} ({time.time() - start:.1f} s)")
    return dict(A=A, born=born, eps=eps, without_nac=without, with_nac=with_nac, lo_formula=lo_formula,
                reference=reference, out=out)


if __name__ == "__main__":
    from jaxmd_efield.compilation import use_persistent_cache

    use_persistent_cache()  # a second run loads compiled programs instead of compiling
    main()
