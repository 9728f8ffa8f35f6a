"""GFN2-xTB (tblite) for a molecule in a uniform electric field: the reference calculator the
project's data scripts use. Everything here takes and returns library units (eV, Å, e, V/Å);
tblite works in atomic units, converted at this boundary with `jaxmd_efield.units`.
"""

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from jaxmd_efield import units


def _add_uniform_field(calculator, field_au):
    """Attach a uniform field (atomic units) to a tblite Calculator.

    Shim: tblite 0.8.0's `Calculator.add("electric-field", array)` raises a cffi TypeError
    because it hands a numpy array to a C `double*`. Build the `double[3]` buffer with cffi and
    call the library functions that `add` would have called.
    """
    from tblite import library

    buffer = library.ffi.new("double[3]", [float(f) for f in field_au])
    container = library.lib.tblite_new_electric_field(buffer)
    library.calculator_push_back(calculator._ctx, calculator._calc, container)


def xtb_in_field(numbers, positions, field=(0.0, 0.0, 0.0), charge=0, accuracy=0.01):
    """GFN2-xTB single point in a uniform field.

    numbers: (N,) atomic numbers; positions: (N, 3) Å; field: (3,) V/Å; accuracy: tblite's
    accuracy setting (lower is tighter; 0.01 makes finite differences agree to ~1e-6).
    Returns dict(energy eV, forces (N, 3) eV/Å, dipole (3,) e·Å), with E(F) = E0 - mu.F - ...
    """
    from tblite.interface import Calculator as TBLite

    numbers = np.asarray(numbers)
    positions = np.asarray(positions, dtype=float)
    field = np.asarray(field, dtype=float)
    if positions.shape != (len(numbers), 3) or field.shape != (3,):
        raise ValueError(f"need positions ({len(numbers)}, 3) and field (3,), got "
                         f"{positions.shape} and {field.shape}")
    if not (np.all(np.isfinite(positions)) and np.all(np.isfinite(field))):
        raise ValueError("positions or field contain NaN or inf")
    calculator = TBLite("GFN2-xTB", numbers, positions / units.BOHR, charge=charge)
    calculator.set("verbosity", 0)
    calculator.set("accuracy", accuracy)
    _add_uniform_field(calculator, field / units.AU_FIELD)
    result = calculator.singlepoint()
    return dict(energy=float(result.get("energy")) * units.HARTREE,
                forces=-np.asarray(result.get("gradient")) * units.AU_FORCE,
                dipole=np.asarray(result.get("dipole")) * units.AU_DIPOLE)


def xtb_field_derivatives(numbers, positions, field=(0.0, 0.0, 0.0), field_step=0.005, **kwargs):
    """Polarizability and Born charges by central differences in the field (6 single points).

    alpha_ab = d mu_a / d F_b (e·Å²/V, symmetrised) and Z_iab = d f_ib / d F_a (e), both at
    `field` (V/Å), with steps of `field_step` V/Å.
    """
    field = np.asarray(field, dtype=float)
    dmu, dforces = np.zeros((3, 3)), np.zeros((3, len(numbers), 3))
    for a in range(3):
        step = np.zeros(3)
        step[a] = field_step
        plus = xtb_in_field(numbers, positions, field + step, **kwargs)
        minus = xtb_in_field(numbers, positions, field - step, **kwargs)
        dmu[:, a] = (plus["dipole"] - minus["dipole"]) / (2 * field_step)
        dforces[a] = (plus["forces"] - minus["forces"]) / (2 * field_step)
    return dict(polarizability=0.5 * (dmu + dmu.T), born_charges=dforces.transpose(1, 0, 2))


def xtb_harmonic_raman(numbers, positions, masses, field=(0.0, 0.0, 0.0), displacement=0.01,
                       field_step=0.005, accuracy=0.001):
    """GFN2-xTB harmonic Raman: the Hessian from central differences of the forces and the
    polarizability derivatives from central differences (steps of `displacement` Å) of the
    finite-field polarizability (`xtb_field_derivatives`), 7 single points per displaced
    geometry (42 N in all). Returns the dict of `spectra.harmonic_raman` (same conventions)."""
    from jaxmd_efield.spectra import raman_modes

    positions = np.asarray(positions, dtype=float)
    n = len(numbers)
    hessian, dalpha_dR = np.zeros((3 * n, 3 * n)), np.zeros((3, 3, n, 3))
    for i in range(n):
        for c in range(3):
            sides = []
            for sign in (1, -1):
                R = positions.copy()
                R[i, c] += sign * displacement
                forces = xtb_in_field(numbers, R, field, accuracy=accuracy)["forces"]
                alpha = xtb_field_derivatives(numbers, R, field, field_step, accuracy=accuracy)["polarizability"]
                sides.append((forces, alpha))
            (f_plus, a_plus), (f_minus, a_minus) = sides
            hessian[:, 3 * i + c] = -(f_plus - f_minus).ravel() / (2 * displacement)
            dalpha_dR[:, :, i, c] = (a_plus - a_minus) / (2 * displacement)
    return raman_modes(0.5 * (hessian + hessian.T), dalpha_dR, positions, masses)


class XTBFieldCalculator(Calculator):
    """ASE calculator: GFN2-xTB in a uniform field (V/Å), for ASE's MD drivers and tools.
    Properties energy (eV), forces (eV/Å), dipole (e·Å)."""

    implemented_properties = ["energy", "forces", "dipole"]
    default_parameters = dict(field=(0.0, 0.0, 0.0), charge=0, accuracy=0.01)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results = xtb_in_field(self.atoms.numbers, self.atoms.positions,
                                    self.parameters.field, self.parameters.charge,
                                    self.parameters.accuracy)
