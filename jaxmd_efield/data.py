"""Data sets: molecules in fields (HDF5 reading, writing and validation) and crystals with Born
charges and dielectric tensors (extended XYZ, `read_crystals`).

An HDF5 data set holds M configurations of N atoms (one molecule, fixed N):

  numbers        (N,)        atomic numbers
  positions      (M, N, 3)   Å
  field          (M, 3)      V/Å
  energy         (M,)        eV
  forces         (M, N, 3)   eV/Å
  dipole         (M, 3)      e·Å            optional
  polarizability (M, 3, 3)   e·Å²/V         optional, valid where has_response
  born_charges   (M, N, 3, 3) e (atom, field, displacement)   optional, as polarizability
  has_response   (M,)        bool           which rows carry polarizability and Born charges
  temperature    (M,)        K              optional (sampling temperature)
  trajectory     (M,)        int            optional (which sampling run: split by it)

Each data set has a `units` attribute; the file's attributes record how it was made.
"""

import json
import os

import h5py
import numpy as np

UNITS = dict(numbers="", positions="Å", field="V/Å", energy="eV", forces="eV/Å", dipole="e·Å",
             polarizability="e·Å²/V", born_charges="e", has_response="", temperature="K", trajectory="")
REQUIRED = ("numbers", "positions", "field", "energy", "forces")


def expected_shapes(m, n):
    return dict(numbers=(n,), positions=(m, n, 3), field=(m, 3), energy=(m,), forces=(m, n, 3),
                dipole=(m, 3), polarizability=(m, 3, 3), born_charges=(m, n, 3, 3),
                has_response=(m,), temperature=(m,), trajectory=(m,))


def validate(data, species=None, source="data set"):
    """Raise ValueError for missing keys, unknown keys, wrong shapes, non-finite labels or
    species outside `species` (a tuple of atomic numbers)."""
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise ValueError(f"{source}: missing {missing} (needs {list(REQUIRED)})")
    unknown = sorted(set(data) - set(UNITS))
    if unknown:
        raise ValueError(f"{source}: unknown entries {unknown}")
    m, n = np.shape(data["positions"])[:2]
    for key, shape in expected_shapes(m, n).items():
        if key in data and np.shape(data[key]) != shape:
            raise ValueError(f"{source}: {key} has shape {np.shape(data[key])}, expected {shape} "
                             f"for {m} configurations of {n} atoms")
    if ("polarizability" in data or "born_charges" in data) and "has_response" not in data:
        raise ValueError(f"{source}: polarizability / born_charges need has_response")
    for key, value in data.items():
        if key in ("numbers", "has_response", "trajectory"):
            continue
        rows = np.asarray(value)
        if key in ("polarizability", "born_charges"):
            rows = rows[np.asarray(data["has_response"], bool)]
        bad = ~np.isfinite(rows.reshape(len(rows), -1)).all(axis=1)
        if bad.any():
            raise ValueError(f"{source}: {key} is NaN or inf in {bad.sum()} configurations "
                             f"(first: {np.flatnonzero(bad)[0]})")
    if species is not None:
        outside = sorted(set(np.asarray(data["numbers"]).tolist()) - set(species))
        if outside:
            raise ValueError(f"{source}: atomic numbers {outside} are not in the model's species "
                             f"{tuple(species)}")


def write_dataset(path, data, attrs=None):
    """Validate and write `data` (dict of arrays) to HDF5 at `path`, atomically (a killed run
    never leaves a half-written file under the final name). attrs: JSON-able metadata."""
    validate(data, source=path)
    tmp = f"{path}.tmp{os.getpid()}"
    with h5py.File(tmp, "w") as f:
        for key, value in data.items():
            f.create_dataset(key, data=np.asarray(value))
            f[key].attrs["units"] = UNITS[key]
        for key, value in (attrs or {}).items():
            f.attrs[key] = value if isinstance(value, (str, int, float)) else json.dumps(value)
    os.replace(tmp, path)


def read_dataset(path, species=None):
    """Read and validate an HDF5 data set; returns (dict of numpy arrays, attrs dict). A file
    h5py cannot read (truncated or corrupt) is a ValueError."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no data set at {path}")
    try:
        with h5py.File(path, "r") as f:
            data = {key: f[key][()] for key in f.keys()}
            attrs = dict(f.attrs)
    except OSError as err:
        raise ValueError(f"{path} is not a readable HDF5 data set (truncated or corrupt: {err}); "
                         "write it again (data.write_dataset, training/make_ethanol_data.py) or "
                         "point at another file") from err
    validate(data, species, source=path)
    return data, attrs


def split_indices(m, fractions, seed):
    """Shuffle range(m) with `seed` and cut it into len(fractions) parts (fractions sum to 1)."""
    if not np.isclose(sum(fractions), 1.0) or min(fractions) < 0:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(m)
    cuts = np.round(np.cumsum(fractions)[:-1] * m).astype(int)
    return np.split(order, cuts)


def read_crystals(path, species=None):
    """Periodic crystals with Born effective charges and eps_inf from an extended XYZ file (the
    format of the e3nn-models / Petretto et al. DFPT set): per atom `becs` (9 numbers, e,
    row-major Z*[a, b], a the field/polarization and b the displacement index), per structure
    `eps` (9 numbers, eps_inf) and a fully periodic `Lattice` (Å).

    Returns a dict of M crystals: numbers, positions (Å) and born_charges ((N, 3, 3), e) as lists
    of per-crystal arrays; cell (M, 3, 3) Å with lattice vectors as rows; dielectric (M, 3, 3).
    Raises ValueError for missing labels, wrong shapes, non-finite values, non-periodic cells or
    species outside `species` (atomic numbers)."""
    import ase.io

    if not os.path.exists(path):
        raise FileNotFoundError(f"no crystal data at {path}")
    frames = ase.io.read(path, ":")
    out = dict(numbers=[], positions=[], born_charges=[], cell=[], dielectric=[])
    for k, atoms in enumerate(frames):
        where = f"{path}, structure {k} ({atoms.get_chemical_formula()})"
        if "becs" not in atoms.arrays or "eps" not in atoms.info:
            raise ValueError(f"{where}: needs per-atom `becs` and per-structure `eps`")
        if not atoms.pbc.all():
            raise ValueError(f"{where}: must be periodic in all three directions, pbc={atoms.pbc}")
        born = np.asarray(atoms.arrays["becs"], float)
        eps = np.asarray(atoms.info["eps"], float)
        if born.shape != (len(atoms), 9) or eps.size != 9:
            raise ValueError(f"{where}: becs must be (N, 9) and eps 9 numbers, got {born.shape} "
                             f"and {eps.size}")
        if not (np.isfinite(born).all() and np.isfinite(eps).all() and np.isfinite(atoms.positions).all()):
            raise ValueError(f"{where}: NaN or inf in positions, becs or eps")
        out["numbers"].append(atoms.numbers.copy())
        out["positions"].append(atoms.positions.copy())
        out["born_charges"].append(born.reshape(-1, 3, 3))
        out["cell"].append(atoms.cell.array.copy())
        out["dielectric"].append(eps.reshape(3, 3))
    if species is not None:
        outside = sorted(set(np.concatenate(out["numbers"]).tolist()) - set(species))
        if outside:
            raise ValueError(f"{path}: atomic numbers {outside} are not in the model's species "
                             f"{tuple(species)}")
    out["cell"], out["dielectric"] = np.array(out["cell"]), np.array(out["dielectric"])
    return out


def select(crystals, indices):
    """The crystals `indices` of a `read_crystals` dict."""
    return {k: v[indices] if isinstance(v, np.ndarray) else [v[i] for i in indices]
            for k, v in crystals.items()}
