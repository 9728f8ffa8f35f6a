"""Data sets: structures with labels (HDF5 and extended XYZ; reading, writing, validation) and
crystals with Born charges and dielectric tensors (`read_crystals`).

In memory a data set is a dict of numpy arrays holding M structures (molecules and/or fully
periodic cells, any sizes and species) with A atoms in all; per-atom entries are the atoms of
every structure concatenated, in order:

  numbers        (A,)        atomic numbers
  positions      (A, 3)      Å
  num_atoms      (M,)        atoms of each structure
  cell           (M, 3, 3)   Å, lattice vectors as rows (zeros for a molecule)
  pbc            (M,)        bool, fully periodic (a cell) or not (a molecule)
  field          (M, 3)      V/Å, the applied uniform field
  energy         (M,)        eV                      optional label
  forces         (A, 3)      eV/Å                    optional label
  dipole         (M, 3)      e·Å (a cell's dipole, i.e. polarization x volume: defined modulo
                             the polarization quantum, see `response.fold_polarization`)  optional
  polarizability (M, 3, 3)   e·Å²/V                  optional label
  born_charges   (A, 3, 3)   e (atom, field, displacement)   optional label
  has_<label>    (M,)        bool: which structures carry <label> (absent: all of them; the
                             label's entries of other structures are zeros and never used)
  temperature    (M,)        K     optional: sampling temperature
  trajectory     (M,)        int   optional: which sampling run (splits keep runs together)

Files: HDF5 (`.h5`, `.hdf5`) stores exactly these arrays, each with a `units` attribute, plus
the file's metadata attributes. Older files of one molecule (numbers (N,), positions
(M, N, 3), per-atom labels (M, N, ...), has_response) are read too. Any other extension is
read and written by ASE (extended XYZ, as the ecosystem writes it): see `from_atoms` for the
names of the labels in `info`, `arrays` and ASE's single-point results.
"""

import json
import os

import h5py
import numpy as np

UNITS = dict(numbers="", positions="Å", num_atoms="", cell="Å", pbc="", field="V/Å", energy="eV",
             forces="eV/Å", dipole="e·Å", polarizability="e·Å²/V", born_charges="e",
             temperature="K", trajectory="")
LABELS = ("energy", "forces", "dipole", "polarizability", "born_charges")
PER_ATOM = ("numbers", "positions", "forces", "born_charges")
STRUCTURE = ("numbers", "positions", "num_atoms", "cell", "pbc", "field")
SHAPES = dict(numbers=(), positions=(3,), num_atoms=(), cell=(3, 3), pbc=(), field=(3,), energy=(),
              forces=(3,), dipole=(3,), polarizability=(3, 3), born_charges=(3, 3), temperature=(),
              trajectory=())
HDF5_SUFFIXES = (".h5", ".hdf5")


def has(data, label):
    """(M,) bool: the structures of `data` that carry `label` (none if the data lack it)."""
    m = len(data["num_atoms"])
    if label not in data:
        return np.zeros(m, bool)
    return np.asarray(data.get(f"has_{label}", np.ones(m, bool)), bool)


def offsets(num_atoms):
    """(M + 1,) start of each structure's atoms in the per-atom arrays, then the total."""
    return np.concatenate([[0], np.cumsum(num_atoms)]).astype(int)


def atom_indices(num_atoms, indices):
    """Indices into the per-atom arrays of the atoms of structures `indices`, in that order."""
    start = offsets(num_atoms)
    return np.concatenate([np.arange(start[k], start[k + 1]) for k in indices] or [np.zeros(0, int)])


def subset(data, indices, num_atoms=None):
    """The structures `indices` (in that order) of a data set, or of predictions laid out like
    one (then pass the data set's `num_atoms`)."""
    indices = np.asarray(indices, int)
    atoms = atom_indices(data["num_atoms"] if num_atoms is None else num_atoms, indices)
    return {k: np.asarray(v)[atoms if k in PER_ATOM else indices] for k, v in data.items()}


def formulas(data):
    """(M,) the chemical formula (ASE's Hill order) of each structure."""
    from ase.data import chemical_symbols
    from ase.formula import Formula

    start = offsets(data["num_atoms"])
    symbols = np.array(chemical_symbols)[np.asarray(data["numbers"])]
    return np.array([Formula.from_list(symbols[start[k]:start[k + 1]].tolist()).format("hill")
                     for k in range(len(start) - 1)])


def validate(data, species=None, source="data set"):
    """Raise ValueError, naming `source` and the structure, for missing structure entries,
    unknown keys, wrong shapes, non-finite values where a structure has them, singular cells or
    species outside `species` (a tuple of atomic numbers)."""
    missing = [k for k in STRUCTURE if k not in data]
    if missing:
        raise ValueError(f"{source}: missing {missing} (needs {list(STRUCTURE)})")
    allowed = set(UNITS) | {f"has_{label}" for label in LABELS}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"{source}: unknown entries {unknown} (known: {sorted(allowed)})")
    num_atoms = np.asarray(data["num_atoms"])
    m, a = len(num_atoms), int(num_atoms.sum())
    if np.any(num_atoms < 1):
        raise ValueError(f"{source}: structure {np.flatnonzero(num_atoms < 1)[0]} has no atoms")
    for key, value in data.items():
        rows = a if key in PER_ATOM else m
        shape = (rows, *SHAPES.get(key, ()))
        if np.shape(value) != shape:
            raise ValueError(f"{source}: {key} has shape {np.shape(value)}, expected {shape} for "
                             f"{m} structures of {a} atoms in all")
    owner = np.repeat(np.arange(m), num_atoms)
    for key in ("positions", "cell", "field", *LABELS, "temperature"):
        if key not in data:
            continue
        value = np.asarray(data[key], float)
        bad = ~np.isfinite(value.reshape(len(value), -1)).all(axis=1)
        if key in PER_ATOM:
            bad = np.bincount(owner[bad], minlength=m) > 0
        if key in LABELS:
            bad &= has(data, key)
        if bad.any():
            raise ValueError(f"{source}: {key} is NaN or inf in {bad.sum()} structures "
                             f"(first: structure {np.flatnonzero(bad)[0]})")
    pbc = np.asarray(data["pbc"], bool)
    singular = pbc & (np.abs(np.linalg.det(np.asarray(data["cell"], float))) < 1e-6)
    if singular.any():
        raise ValueError(f"{source}: structure {np.flatnonzero(singular)[0]} is periodic with a "
                         "singular cell")
    if species is not None:
        outside = np.flatnonzero(~np.isin(data["numbers"], species))
        if len(outside):
            k = int(owner[outside[0]])
            found = sorted(set(np.asarray(data["numbers"])[outside].tolist()))
            raise ValueError(f"{source}: atomic numbers {found} are not in the model's species "
                             f"{tuple(species)} (first in structure {k})")


def from_samples(samples):
    """A data set from a list of per-structure dicts: numbers (N,), positions (N, 3) and
    optionally cell (3, 3) (with pbc True), field (3,), labels (`LABELS`, per-atom ones with N
    rows), temperature, trajectory. A label some samples lack gets a has_<label> mask."""
    m = len(samples)
    if m == 0:
        raise ValueError("no structures")
    out = dict(numbers=np.concatenate([np.asarray(s["numbers"], int) for s in samples]),
               positions=np.concatenate([np.asarray(s["positions"], float) for s in samples]),
               num_atoms=np.array([len(s["numbers"]) for s in samples]),
               cell=np.array([np.asarray(s.get("cell", np.zeros((3, 3))), float) for s in samples]),
               pbc=np.array([bool(s.get("pbc", False)) for s in samples]),
               field=np.array([np.asarray(s.get("field", np.zeros(3)), float) for s in samples]))
    for key in (*LABELS, "temperature", "trajectory"):
        present = np.array([key in s and s[key] is not None for s in samples])
        if not present.any():
            continue
        if key in ("temperature", "trajectory") and not present.all():
            raise ValueError(f"{key} is given for some structures only")
        if key in PER_ATOM:
            out[key] = np.concatenate([np.asarray(s[key], float) if p else
                                       np.zeros((len(s["numbers"]), *SHAPES[key]))
                                       for s, p in zip(samples, present)])
        else:
            out[key] = np.array([np.asarray(s[key]) if p else np.zeros(SHAPES[key])
                                 for s, p in zip(samples, present)])
        if not present.all():
            out[f"has_{key}"] = present
    return out


def concatenate(datasets):
    """One data set of the structures of `datasets`, in order. A label some of them lack gets a
    has_<label> mask. Trajectory numbers are shifted so that runs of different data sets stay
    apart (the first data set's keep their numbers; one without them counts each structure as
    its own run). Temperature is kept only where every data set has it."""
    if not datasets:
        raise ValueError("no data sets to concatenate")
    sizes = [len(d["num_atoms"]) for d in datasets]
    out = {}
    for key in (*STRUCTURE, *LABELS):
        if all(key not in d for d in datasets):
            continue
        parts = [np.asarray(d[key]) if key in d else
                 np.zeros((len(d["numbers"]) if key in PER_ATOM else m, *SHAPES[key]))
                 for d, m in zip(datasets, sizes)]
        out[key] = np.concatenate(parts)
        if key in LABELS:
            present = np.concatenate([has(d, key) for d in datasets])
            if not present.all():
                out[f"has_{key}"] = present
    if all("temperature" in d for d in datasets):
        out["temperature"] = np.concatenate([d["temperature"] for d in datasets])
    if any("trajectory" in d for d in datasets):
        runs = []
        for d, m in zip(datasets, sizes):
            ids = np.asarray(d["trajectory"], int) if "trajectory" in d else np.arange(m)
            runs.append(ids + (runs[-1].max() + 1 - ids.min() if runs else 0))
        out["trajectory"] = np.concatenate(runs)
    return out


#: where `from_atoms` looks for each label, in order: names in ASE's single-point results (what
#: ase.io.read makes of energy, forces, dipole, born_effective_charges, polarization), then in
#: `info` (per structure) and `arrays` (per atom)
ASE_NAMES = dict(energy=("energy",), forces=("forces",), dipole=("dipole",),
                 polarization=("polarization",), polarizability=("polarizability",),
                 born_charges=("born_charges", "born_effective_charges", "becs"),
                 field=("field", "electric_field", "efield"), temperature=("temperature",),
                 trajectory=("trajectory",))


def from_atoms(frames, names=None, source="structures"):
    """A data set from a list of ase.Atoms with labels as ASE and extended XYZ carry them: each
    label is looked up in the frame's single-point results, `info` and `arrays` under the names
    `ASE_NAMES` (or `names`, e.g. {"energy": "REF_energy"}), and may be missing in any frame:

      energy (eV), dipole (3, e·Å), polarizability (9 or 3x3, e·Å²/V, row-major), field (3, V/Å;
      default zero), temperature (K), trajectory (int)                       per structure
      forces (N, 3, eV/Å), born_charges (N, 9 or N x 3 x 3, e, row-major Z[field, displacement])
                                                                             per atom
      polarization (3, e/Å², the dipole per cell volume) for periodic cells without a dipole

    Structures are molecules (pbc all False) or fully periodic cells. Bad frames raise a
    ValueError naming `source`, the structure and its formula."""
    lookup = {label: ((names or {}).get(label),) if (names or {}).get(label) else candidates
              for label, candidates in ASE_NAMES.items()}
    samples = []
    for k, atoms in enumerate(frames):
        where = f"{source}, structure {k} ({atoms.get_chemical_formula()})"
        found = dict(atoms.info, **{key: value for key, value in atoms.arrays.items()
                                    if key not in ("numbers", "positions")})
        if atoms.calc is not None:
            found.update(getattr(atoms.calc, "results", {}))
        pbc = np.asarray(atoms.pbc, bool)
        if pbc.any() and not pbc.all():
            raise ValueError(f"{where}: periodic in some directions only ({pbc.tolist()}); use a "
                             "molecule (pbc all False) or a fully periodic cell")
        sample = dict(numbers=atoms.numbers, positions=atoms.positions, pbc=bool(pbc.all()),
                      cell=atoms.cell.array if pbc.all() else np.zeros((3, 3)))
        n = len(atoms)
        for label, candidates in lookup.items():
            name = next((c for c in candidates if c in found), None)
            if name is None:
                continue
            value = np.asarray(found[name], float if label != "trajectory" else int)
            shape = {"forces": (n, 3), "born_charges": (n, 3, 3), "polarizability": (3, 3),
                     "dipole": (3,), "polarization": (3,), "field": (3,)}.get(label, ())
            if value.size != int(np.prod(shape)):
                raise ValueError(f"{where}: {name!r} has shape {value.shape}, expected {shape} "
                                 f"for {label}")
            sample[label] = value.reshape(shape)
        if "polarization" in sample:
            polarization = sample.pop("polarization")
            if not sample["pbc"]:
                raise ValueError(f"{where}: a polarization needs a periodic cell (a molecule "
                                 "has a dipole)")
            sample.setdefault("dipole", polarization * abs(np.linalg.det(sample["cell"])))
        samples.append(sample)
    data = from_samples(samples)
    validate(data, source=source)
    return data


def to_atoms(data):
    """The structures of a data set as ase.Atoms, each label (where the structure has it) in
    `info` or `arrays` under its own name (born_charges and polarizability row-major, 9 numbers),
    as `from_atoms` reads them back."""
    from ase import Atoms

    start = offsets(data["num_atoms"])
    frames = []
    for k in range(len(data["num_atoms"])):
        atoms_k = slice(start[k], start[k + 1])
        atoms = Atoms(numbers=data["numbers"][atoms_k], positions=data["positions"][atoms_k],
                      cell=data["cell"][k] if data["pbc"][k] else None, pbc=bool(data["pbc"][k]))
        atoms.info["field"] = np.asarray(data["field"][k], float)
        for key in ("temperature", "trajectory"):
            if key in data:
                atoms.info[key] = data[key][k].item()
        for label in LABELS:
            if not has(data, label)[k]:
                continue
            if label in PER_ATOM:
                atoms.arrays[label] = np.asarray(data[label][atoms_k], float).reshape(
                    int(data["num_atoms"][k]), -1)
            else:
                value = np.asarray(data[label][k], float)
                atoms.info[label] = value.item() if value.ndim == 0 else value.ravel()
        frames.append(atoms)
    return frames


def _from_one_molecule_layout(data):
    """Convert the older HDF5 layout of one molecule (numbers (N,), positions (M, N, 3), per-atom
    labels (M, N, ...), has_response for polarizability and Born charges)."""
    m, n = np.shape(data["positions"])[:2]
    out = dict(numbers=np.tile(data["numbers"], m), num_atoms=np.full(m, n),
               cell=np.zeros((m, 3, 3)), pbc=np.zeros(m, bool))
    for key, value in data.items():
        if key in ("numbers", "has_response"):
            continue
        value = np.asarray(value)
        out[key] = value.reshape(m * n, *value.shape[2:]) if key in PER_ATOM else value
    if "has_response" in data:
        for key in ("polarizability", "born_charges"):
            if key in data:
                out[f"has_{key}"] = np.asarray(data["has_response"], bool)
    return out


def write_dataset(path, data, attrs=None):
    """Validate and write a data set to `path`: HDF5 for .h5 / .hdf5 (written atomically: a
    killed run never leaves a half-written file under the final name; attrs: JSON-able metadata
    kept as file attributes), else with ase.io.write (extended XYZ for .xyz / .extxyz; attrs
    are not kept there). ASE writes per-atom numbers with 8 decimals (1e-8 Å, eV/Å, e)."""
    validate(data, source=path)
    tmp = f"{path}.tmp{os.getpid()}"
    if not path.endswith(HDF5_SUFFIXES):
        import ase.io

        ase.io.write(tmp, to_atoms(data), format="extxyz" if path.endswith((".xyz", ".extxyz"))
                     else None)
        os.replace(tmp, path)
        return
    with h5py.File(tmp, "w") as f:
        for key, value in data.items():
            f.create_dataset(key, data=np.asarray(value))
            f[key].attrs["units"] = UNITS.get(key, "")
        for key, value in (attrs or {}).items():
            f.attrs[key] = value if isinstance(value, (str, int, float)) else json.dumps(value)
    os.replace(tmp, path)


def read_dataset(path, species=None, names=None):
    """Read and validate a data set: HDF5 (.h5 / .hdf5, either layout) or any file ase.io.read
    reads (extended XYZ: labels as `from_atoms` names them, or `names`). Returns (data, attrs
    dict). An unreadable file is a ValueError; species outside `species` are named."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no data set at {path}")
    if not path.endswith(HDF5_SUFFIXES):
        import ase.io

        try:
            frames = ase.io.read(path, ":")
        except Exception as err:  # ASE raises many kinds for a malformed file
            raise ValueError(f"{path}: ase.io.read cannot read it ({type(err).__name__}: {err})") from err
        data = from_atoms(frames, names, source=path)
        validate(data, species, source=path)
        return data, {}
    try:
        with h5py.File(path, "r") as f:
            data = {key: f[key][()] for key in f.keys()}
            attrs = dict(f.attrs)
    except OSError as err:
        raise ValueError(f"{path} is not a readable HDF5 data set (truncated or corrupt: {err}); "
                         "write it again (data.write_dataset, training/make_data.py) or "
                         "point at another file") from err
    if "num_atoms" not in data and np.ndim(data.get("positions")) == 3:
        data = _from_one_molecule_layout(data)
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
