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
