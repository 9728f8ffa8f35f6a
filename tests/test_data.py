"""Data sets of the user's own structures: extended XYZ in and out (labels optional per
structure, as the ecosystem writes them), bad data named, periodic polarization folding."""

import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator

from jaxmd_efield import data as data_io
from jaxmd_efield.response import fold_polarization


def labelled_frames():
    """A water with every label, an ethanol with energy and forces only (ASE single-point
    results, as ase.io writes a calculator's results), and a periodic NaCl cell with a
    polarization (e/Å²) and Born charges (N x 3 x 3) in a field."""
    rng = np.random.default_rng(0)
    water = molecule("H2O")
    water.info.update(energy=-5.0, dipole=rng.normal(size=3), polarizability=rng.normal(size=9),
                      field=np.array([0.0, 0.1, 0.0]), trajectory=3, temperature=400.0)
    water.arrays.update(forces=rng.normal(size=(3, 3)), born_charges=rng.normal(size=(3, 9)))
    ethanol = molecule("CH3CH2OH")
    ethanol.calc = SinglePointCalculator(ethanol, energy=-30.0, forces=rng.normal(size=(9, 3)))
    ethanol.info.update(trajectory=4, temperature=500.0)
    salt = bulk("NaCl", "rocksalt", a=5.6)
    salt.calc = SinglePointCalculator(salt, energy=-7.0, forces=rng.normal(size=(2, 3)),
                                      polarization=np.array([0.01, 0.0, 0.02]),
                                      born_effective_charges=rng.normal(size=(2, 3, 3)))
    salt.info.update(field=np.array([0.0, 0.0, 0.05]), trajectory=5, temperature=300.0)
    return [water, ethanol, salt]


def test_extended_xyz_round_trip_with_labels_missing_per_structure(tmp_path):
    frames = labelled_frames()
    data = data_io.from_atoms(frames)
    assert data["num_atoms"].tolist() == [3, 9, 2] and data["pbc"].tolist() == [False, False, True]
    assert data["has_dipole"].tolist() == [True, False, True]
    assert data["has_polarizability"].tolist() == [True, False, False]
    assert data["has_born_charges"].tolist() == [True, False, True] and "has_forces" not in data
    np.testing.assert_allclose(data["born_charges"][:3], frames[0].arrays["born_charges"].reshape(3, 3, 3))
    np.testing.assert_allclose(data["polarizability"][0], frames[0].info["polarizability"].reshape(3, 3))
    volume = frames[2].get_volume()
    np.testing.assert_allclose(data["dipole"][2], np.array([0.01, 0.0, 0.02]) * volume)
    np.testing.assert_allclose(data["field"], [[0, 0.1, 0], [0, 0, 0], [0, 0, 0.05]])
    np.testing.assert_allclose(data["forces"][3:12], frames[1].get_forces())

    for name in ("set.xyz", "set.h5"):
        data_io.write_dataset(str(tmp_path / name), data)
        again, _ = data_io.read_dataset(str(tmp_path / name))
        assert set(again) == set(data), name
        for key in data:  # ASE writes per-atom numbers with 8 decimals
            np.testing.assert_allclose(again[key], data[key], atol=1e-8, rtol=0, err_msg=f"{name}: {key}")


def test_label_names_of_other_codes(tmp_path):
    """MACE-style names (REF_energy, REF_forces) read with `names`."""
    atoms = molecule("NH3")
    atoms.info["REF_energy"] = -4.2
    atoms.arrays["REF_forces"] = np.ones((4, 3))
    path = str(tmp_path / "mace.xyz")
    import ase.io
    ase.io.write(path, [atoms])
    data, _ = data_io.read_dataset(path, names=dict(energy="REF_energy", forces="REF_forces"))
    assert data["energy"].tolist() == [-4.2] and data["forces"].shape == (4, 3)
    assert "energy" not in data_io.read_dataset(path)[0]


@pytest.mark.parametrize("break_it, message", [
    (lambda f: f[0].arrays.update(forces=np.ones((3, 2))),
     r"structure 0 \(H2O\): 'forces' has shape \(3, 2\), expected \(3, 3\) for forces"),
    (lambda f: f[0].info.update(polarizability=np.ones(4)), r"structure 0 \(H2O\): 'polarizability'"),
    (lambda f: f[1].calc.results.update(energy=np.nan),
     r"energy is NaN or inf in 1 structures \(first: structure 1\)"),
    (lambda f: f[2].set_pbc([True, True, False]), r"structure 2 \(ClNa\): periodic in some directions only"),
    (lambda f: f[0].info.update(polarization=np.ones(3)), r"structure 0 \(H2O\): a polarization needs a periodic cell"),
])
def test_bad_data_is_named(break_it, message):
    frames = labelled_frames()
    break_it(frames)
    with pytest.raises(ValueError, match=message):
        data_io.from_atoms(frames, source="mine.xyz")


def test_species_outside_the_model_and_unreadable_files(tmp_path):
    data = data_io.from_atoms(labelled_frames())
    with pytest.raises(ValueError, match=r"atomic numbers \[11, 17\] are not in the model's species "
                                         r"\(1, 6, 8\) \(first in structure 2\)"):
        data_io.validate(data, species=(1, 6, 8))
    (tmp_path / "broken.xyz").write_text("3\nnot a comment line\nH 0 0\n")
    with pytest.raises(ValueError, match="broken.xyz: ase.io.read cannot read it"):
        data_io.read_dataset(str(tmp_path / "broken.xyz"))


def test_polarization_folding_in_a_triclinic_cell():
    """A difference of n . cell (integers n) is no difference; what remains is the part in
    [-1/2, 1/2] of each lattice vector, in any cell shape; molecules are never folded."""
    rng = np.random.default_rng(1)
    cell = np.array([[4.0, 0.0, 0.0], [1.3, 3.5, 0.0], [-0.7, 0.9, 5.2]])
    residual = np.array([0.3, -0.2, 0.45]) @ cell
    for _ in range(5):
        n = rng.integers(-4, 5, size=3)
        folded = fold_polarization((residual + n @ cell)[None], cell[None], np.array([True]))
        np.testing.assert_allclose(folded[0], residual, atol=1e-12)
    shifted = residual + np.array([2, -1, 3]) @ cell
    np.testing.assert_allclose(fold_polarization(shifted[None], np.zeros((1, 3, 3)), np.array([False]))[0],
                               shifted)


def test_concatenate_keeps_labels_masks_and_runs_apart():
    frames = labelled_frames()
    whole = data_io.from_atoms(frames)
    joined = data_io.concatenate([data_io.from_atoms(frames[:2]), data_io.from_atoms(frames[2:])])
    assert set(joined) == set(whole)
    for key in whole:
        np.testing.assert_array_equal(joined[key], whole[key], err_msg=key)
    # runs of different data sets never merge; one without runs counts each structure as a run
    twice = data_io.concatenate([whole, whole])
    assert twice["trajectory"].tolist() == [3, 4, 5, 6, 7, 8]
    unnumbered = {k: v for k, v in whole.items() if k not in ("trajectory", "temperature")}
    mixed = data_io.concatenate([whole, unnumbered])
    assert mixed["trajectory"].tolist() == [3, 4, 5, 6, 7, 8] and "temperature" not in mixed
    data_io.validate(mixed)


def test_extra_training_data_never_reaches_the_held_out_splits(tmp_path):
    """`train_data` files join the training split; validation and test stay what the main data
    set alone gives (so a model fine-tuned with more data is scored on the same structures)."""
    from jaxmd_efield.cli import train

    frames = [molecule("H2O") for _ in range(8)]
    for k, atoms in enumerate(frames):
        atoms.calc = SinglePointCalculator(atoms, energy=-5.0 - k, forces=np.full((3, 3), 0.1 * k))
        atoms.info["trajectory"] = k // 2
    data_io.write_dataset(str(tmp_path / "main.xyz"), data_io.from_atoms(frames))
    data_io.write_dataset(str(tmp_path / "extra.xyz"), data_io.from_atoms(frames[:3]))
    config = dict(data=str(tmp_path / "main.xyz"), split=dict(fractions=[0.5, 0.25, 0.25], seed=0),
                  model=dict(species=[1, 8]), loss=dict(energy=1.0))
    _, _, alone = train.energy_setup(config, None)
    _, _, more = train.energy_setup(dict(config, train_data=str(tmp_path / "extra.xyz")), None)
    for name in ("validation", "test"):
        np.testing.assert_array_equal(more[name]["energy"], alone[name]["energy"])
    assert len(more["train"]["energy"]) == len(alone["train"]["energy"]) + 3
    assert len(np.unique(more["train"]["trajectory"])) == len(np.unique(alone["train"]["trajectory"])) + 2
