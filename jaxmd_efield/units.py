"""Units. The library works in eV, Å, e and V/Å; jax_md integrators with masses in amu then
run in its metal-like time unit sqrt(amu Å² / eV). Conversions from other systems live here."""

import math

AMU_KG = 1.66053906660e-27
EV_J = 1.602176634e-19

#: jax_md's time unit for eV, Å and amu, in fs (about 10.18 fs).
TIME_UNIT_FS = math.sqrt(AMU_KG * 1e-20 / EV_J) * 1e15
#: one femtosecond in jax_md time units: `dt = 0.5 * units.FS`.
FS = 1.0 / TIME_UNIT_FS
#: Boltzmann constant, eV/K: `kT = 300 * units.KB`.
KB = 8.617333262e-5

# Atomic units (CODATA 2018), for reference codes such as tblite. Convert at the boundary:
# multiply a quantity in atomic units by the constant to get library units.
#: Hartree in eV.
HARTREE = 27.211386245988
#: Bohr in Å.
BOHR = 0.529177210903
#: atomic unit of electric field (Hartree / (e Bohr)) in V/Å.
AU_FIELD = HARTREE / BOHR
#: atomic unit of dipole (e Bohr) in e·Å.
AU_DIPOLE = BOHR
#: atomic unit of force (Hartree / Bohr) in eV/Å.
AU_FORCE = HARTREE / BOHR
#: atomic unit of polarizability (e² Bohr² / Hartree) in e·Å²/V.
AU_POLARIZABILITY = BOHR**2 / HARTREE

# Spectroscopy.
SPEED_OF_LIGHT_CM_PER_FS = 2.99792458e-5
#: cm^-1 per sqrt(eV / (Å² amu)): harmonic wavenumber from a mass-weighted Hessian eigenvalue.
WAVENUMBER_PER_SQRT_EV_A2_AMU = math.sqrt(EV_J / (1e-20 * AMU_KG)) / (2 * math.pi * 2.99792458e10)
#: km/mol per e²/amu: IR intensity N_A / (12 eps0 c²) |dmu/dQ|² of a normal mode.
KM_MOL_PER_E2_AMU = 6.02214076e23 / (12 * 8.8541878128e-12 * 2.99792458e8**2) \
    * EV_J**2 / AMU_KG / 1e3
#: Coulomb's constant 1 / (4 pi eps0) in eV·Å/e²; times a polarizability in e·Å²/V gives the
#: polarizability volume in Å^3 (what Raman activities are quoted in).
COULOMB_EV_A = 8.9875517923e9 * EV_J * 1e10
#: hbar in eV fs.
HBAR_EV_FS = 0.6582119569
