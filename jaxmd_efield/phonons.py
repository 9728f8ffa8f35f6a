"""Phonon non-analytic correction (LO-TO splitting) from Born charges and eps_inf.

Units: Born charges in e with index order (atom, field, displacement); eps_inf dimensionless;
volumes in Å³; masses in amu; dynamical matrices in eV/(Å² amu) (phonopy's units for eV and
Å force constants). The Coulomb constant e²/(4 pi eps0) = 14.39965 eV·Å is phonopy's NAC
`factor` for these units.
"""

import numpy as np

#: e² / (4 pi eps0) in eV·Å: phonopy's NAC unit factor for force constants in eV/Å².
COULOMB_EV_A = 14.399645353


def nac_dynamical_matrix(q_direction, born, epsilon, masses, volume):
    """The non-analytic term of the dynamical matrix at q -> 0 along `q_direction`:

        D_ab(j, j') = 4 pi k_e / Omega  [sum_g q_g Z_j,ga] [sum_g q_g Z_j',gb] / (q.eps.q)
                      / sqrt(m_j m_j')

    with k_e = 14.39965 eV·Å. born: (N, 3, 3) e; epsilon: (3, 3); masses: (N,) amu; volume: Å³.
    Returns (3N, 3N) in eV/(Å² amu), rows and columns ordered atom-major (j, a).
    """
    q = np.asarray(q_direction, dtype=float)
    born, epsilon, masses = (np.asarray(x, dtype=float) for x in (born, epsilon, masses))
    n = len(masses)
    if q.shape != (3,) or not np.linalg.norm(q) > 0:
        raise ValueError(f"q_direction must be a nonzero 3-vector, got {q_direction!r}")
    if born.shape != (n, 3, 3) or epsilon.shape != (3, 3):
        raise ValueError(f"need born ({n}, 3, 3) and epsilon (3, 3), got {born.shape}, {epsilon.shape}")
    q = q / np.linalg.norm(q)
    charge = np.einsum("g,jga->ja", q, born) / np.sqrt(masses)[:, None]  # (N, 3)
    return (4 * np.pi * COULOMB_EV_A / volume / (q @ epsilon @ q)) * np.outer(charge, charge)


def phonopy_nac_params(born, epsilon, factor=COULOMB_EV_A, method="gonze"):
    """The `nac_params` dict phonopy takes (`Phonopy.nac_params = ...`): Born charges for every
    atom of the primitive cell, the dielectric tensor, the unit factor (mandatory in current
    phonopy) and the method ("gonze" or "wang")."""
    if method not in ("gonze", "wang"):
        raise ValueError(f"method must be 'gonze' or 'wang', got {method!r}")
    return dict(born=np.asarray(born, dtype=float), dielectric=np.asarray(epsilon, dtype=float),
                factor=float(factor), method=method)


def write_born_file(path, atoms, born, epsilon, symprec=1e-5):
    """A phonopy BORN file for the primitive cell `atoms` (ASE Atoms), with the eV/Å unit
    factor: phonopy's own writer, which symmetrises the tensors and lists the
    symmetry-independent atoms only."""
    from phonopy.file_IO import get_BORN_lines
    from phonopy.structure.atoms import PhonopyAtoms

    cell = PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=atoms.cell.array,
                        scaled_positions=atoms.get_scaled_positions())
    lines = get_BORN_lines(cell, np.asarray(born, dtype=float), np.asarray(epsilon, dtype=float),
                           symprec=symprec)
    # phonopy's writer leaves the unit factor out (line 1 is a comment) but its reader takes
    # it from line 1: put it there, the comment after it
    lines[0] = f"{COULOMB_EV_A:.9f}  {lines[0]}"
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
