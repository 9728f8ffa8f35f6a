"""The jax_md builder: neighbor-list paths, periodic cells, cutoff smoothness, bad input."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax_md import custom_partition, partition, space

import jaxmd_efield as jef
from conftest import TINY

FIELD = jnp.array([0.05, 0.1, -0.2])
TRICLINIC = jnp.array([[3.0, 0.8, 0.5], [0.0, 2.9, 0.6], [0.0, 0.0, 3.1]])  # columns: lattice vectors
CELL_NUMBERS = np.array([6, 8, 1])
CELL_FRACTIONAL = np.array([[0.1, 0.2, 0.05], [0.55, 0.5, 0.6], [0.3, 0.8, 0.4]])


def observables(displacement, box, numbers, params, R, field=FIELD, **kwargs):
    """(energy, forces, dipole, neighbor list) of the tiny model for one structure."""
    neighbor_fn, _, energy_fn = jef.efield_nequip_neighbor_list(displacement, box, numbers, TINY, **kwargs)
    nbrs = neighbor_fn.allocate(R)
    fn = jax.jit(jef.response.energy_forces_dipole(functools.partial(energy_fn, params)))
    return (*fn(R, field=field, neighbor=nbrs), nbrs)


def supercell(box, fractional, numbers, reps):
    """Cartesian positions, numbers and box of a reps[0] x reps[1] x reps[2] supercell."""
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in reps], indexing="ij"), -1).reshape(-1, 3)
    frac = ((fractional[None] + grid[:, None]) / np.array(reps)).reshape(-1, 3)
    big = np.asarray(box) * np.array(reps)[None, :]
    return jnp.asarray(frac @ big.T), np.tile(numbers, len(grid)), jnp.asarray(big), len(grid)


MULTI_IMAGE = dict(neighbor_list_fn=custom_partition.neighbor_list_multi_image)


def test_free_space_and_big_periodic_box_agree(ethanol):
    R = ethanol["R"] + 7.0
    free = observables(space.free()[0], 10.0, ethanol["numbers"], ethanol["params"], R,
                       disable_cell_list=True)
    periodic = observables(space.periodic(20.0)[0], 20.0, ethanol["numbers"], ethanol["params"], R)
    for a, b in zip(free[:3], periodic[:3]):
        np.testing.assert_allclose(a, b, atol=1e-10)


def test_small_cell_multi_image_matches_minimum_image_supercell(ethanol):
    """A 3 Å cubic cell (smaller than 2 r_cut = 8 Å) with the multi-image list against its
    3x3x3 supercell (9 Å) with the minimum-image list: energy and dipole are extensive."""
    box = 3.0 * jnp.eye(3)
    R = jnp.asarray(CELL_FRACTIONAL @ np.asarray(box).T)
    cell = observables(None, box, CELL_NUMBERS, ethanol["params"], R, **MULTI_IMAGE)
    R_big, numbers_big, _, n = supercell(box, CELL_FRACTIONAL, CELL_NUMBERS, (3, 3, 3))
    big = observables(space.periodic(9.0)[0], 9.0, numbers_big, ethanol["params"], R_big)
    np.testing.assert_allclose(big[0], n * cell[0], rtol=1e-10)
    np.testing.assert_allclose(big[1], jnp.tile(cell[1], (n, 1)), atol=1e-10)
    np.testing.assert_allclose(big[2], n * cell[2], atol=1e-9)


def test_triclinic_small_cell_is_extensive(ethanol):
    R = jnp.asarray(CELL_FRACTIONAL @ np.asarray(TRICLINIC).T)
    cell = observables(None, TRICLINIC, CELL_NUMBERS, ethanol["params"], R, **MULTI_IMAGE)
    R_big, numbers_big, box_big, n = supercell(TRICLINIC, CELL_FRACTIONAL, CELL_NUMBERS, (2, 1, 2))
    big = observables(None, box_big, numbers_big, ethanol["params"], R_big, **MULTI_IMAGE)
    np.testing.assert_allclose(big[0], n * cell[0], rtol=1e-10)
    np.testing.assert_allclose(big[1], jnp.tile(cell[1], (n, 1)), atol=1e-10)
    # translating one atom by a lattice vector changes nothing
    moved = R.at[1].add(TRICLINIC[:, 1])
    again = observables(None, TRICLINIC, CELL_NUMBERS, ethanol["params"], moved, **MULTI_IMAGE)
    np.testing.assert_allclose(again[0], cell[0], rtol=1e-10)


@pytest.mark.parametrize("fmt", [partition.OrderedSparse, partition.Dense], ids=["ordered", "dense"])
def test_neighbor_list_formats_agree(ethanol, fmt):
    R = ethanol["R"]
    sparse = observables(space.free()[0], 10.0, ethanol["numbers"], ethanol["params"], R,
                         disable_cell_list=True)
    other = observables(space.free()[0], 10.0, ethanol["numbers"], ethanol["params"], R,
                        disable_cell_list=True, format=fmt)
    for a, b in zip(sparse[:3], other[:3]):
        np.testing.assert_allclose(a, b, atol=1e-10)
    R_cell = jnp.asarray(CELL_FRACTIONAL @ np.asarray(TRICLINIC).T)
    sparse = observables(None, TRICLINIC, CELL_NUMBERS, ethanol["params"], R_cell, **MULTI_IMAGE)
    other = observables(None, TRICLINIC, CELL_NUMBERS, ethanol["params"], R_cell, format=fmt,
                        **MULTI_IMAGE)
    for a, b in zip(sparse[:3], other[:3]):
        np.testing.assert_allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("fmt", [partition.Sparse, partition.OrderedSparse, partition.Dense],
                         ids=["Sparse", "OrderedSparse", "Dense"])
def test_edge_indices_stay_in_range(ethanol, fmt):
    """Every gather and scatter over edges promises in-range indices (`nn.dense.IN_BOUNDS`): the
    padding slots of a neighbor list (index N) must come out of `graph.edges` as atom 0,
    masked, for every list format, minimum image and multi-image."""
    cases = [(space.free()[0], 10.0, ethanol["R"], dict(disable_cell_list=True)),
             (None, TRICLINIC, jnp.asarray(CELL_FRACTIONAL @ np.asarray(TRICLINIC).T), MULTI_IMAGE)]
    for displacement, box, R, kwargs in cases:
        kwargs = dict(kwargs)
        list_fn = kwargs.pop("neighbor_list_fn", partition.neighbor_list)
        neighbor_fn = list_fn(displacement, box, TINY.r_cut, format=fmt, capacity_multiplier=2.0, **kwargs)
        nbrs = neighbor_fn.allocate(R)
        vectors, senders, receivers, mask = jef.graph.edges(displacement, R, nbrs)
        n = R.shape[0]
        assert int(jnp.sum(~mask)) > 0  # the list has padding
        for index in (senders, receivers):
            assert int(index.min()) >= 0 and int(index.max()) < n
        assert bool(jnp.all(jnp.where(mask, True, (senders == 0) | (senders == receivers))))
        assert bool(jnp.all(jnp.isfinite(vectors)))


def test_energy_is_smooth_at_the_cutoff(ethanol):
    """A C-O pair pulled through r_cut: energy continuous, force -> 0, nothing beyond."""
    neighbor_fn, _, energy_fn = jef.efield_nequip_neighbor_list(
        space.free()[0], 10.0, [6, 8], TINY, disable_cell_list=True, dr_threshold=0.5)

    def pair(r):
        R = jnp.array([[0.0, 0.0, 0.0], [r, 0.0, 0.0]])
        return R, neighbor_fn.allocate(jnp.array([[0.0, 0, 0], [TINY.r_cut - 0.2, 0, 0]]))

    efd = jax.jit(jef.response.energy_forces_dipole(functools.partial(energy_fn, ethanol["params"])))
    results = {r: efd(pair(r)[0], field=FIELD, neighbor=pair(r)[1])
               for r in (TINY.r_cut - 1e-3, TINY.r_cut, TINY.r_cut + 1e-3, TINY.r_cut + 0.1)}
    energies = [float(v[0]) for v in results.values()]
    assert abs(energies[0] - energies[1]) < 1e-8
    assert energies[1] == energies[2] == energies[3]
    assert float(jnp.abs(results[TINY.r_cut - 1e-3][1]).max()) < 1e-5


def test_bad_input_gives_clear_errors(ethanol):
    E, R, nbrs = ethanol["energy"], ethanol["R"], ethanol["nbrs"]
    with pytest.raises(ValueError, match="NaN or inf"):
        E(R.at[2, 1].set(jnp.nan), neighbor=nbrs)
    with pytest.raises(ValueError, match="NaN or inf"):
        E(R, neighbor=nbrs, field=jnp.array([0.0, jnp.inf, 0.0]))
    with pytest.raises(ValueError, match=r"shape \(9, 3\)"):
        E(R[:5], neighbor=nbrs)
    with pytest.raises(ValueError, match=r"shape \(9, 3\)"):
        E(R[:, :2], neighbor=nbrs)
    with pytest.raises(ValueError, match="3-vector"):
        E(R, neighbor=nbrs, field=jnp.zeros(2))
    with pytest.raises(ValueError, match=r"not in the model's species table"):
        jef.efield_nequip_neighbor_list(space.free()[0], 10.0, ["C", "Cl"], TINY)
    with pytest.raises(TypeError, match="NeighborList"):
        E(R, neighbor=nbrs.idx)
    with pytest.raises(ValueError, match="must contain 1o"):
        jef.EFieldNequIPConfig(species=(1,), hidden_irreps="8x0e + 4x1e")

    # an overflowed neighbor list: raise eagerly, NaN energy and forces under jit
    sparse = ethanol["neighbor_fn"].allocate(R * 5.0)  # far apart: few neighbors, small capacity
    overflowed = sparse.update(R)
    assert bool(overflowed.did_buffer_overflow)
    with pytest.raises(ValueError, match="overflowed"):
        E(R, neighbor=overflowed)
    energy, forces, dipole = jax.jit(jef.response.energy_forces_dipole(E))(R, neighbor=overflowed)
    assert jnp.isnan(energy) and jnp.all(jnp.isnan(forces)) and jnp.all(jnp.isnan(dipole))
    energy, forces, _ = jax.jit(jef.response.energy_forces_dipole(E))(R.at[0, 0].set(jnp.nan), neighbor=nbrs)
    assert jnp.isnan(energy) and jnp.all(jnp.isnan(forces))


def test_per_species_shift_and_scale(ethanol):
    """E_i = scale[s_i] e_i + shift[s_i]: shifting H by 1 eV moves E by the number of H atoms;
    the config round-trips through a dict (as in checkpoints)."""
    R, numbers = ethanol["R"], ethanol["numbers"]
    base = dataclasses.replace(TINY, energy_scale=(0.5, 1.0, 2.0))
    shifted = dataclasses.replace(base, energy_shift=(1.0, 0.0, 0.0))
    assert jef.EFieldNequIPConfig.from_dict(shifted.to_dict()) == shifted
    energies = []
    for config in (TINY, base, shifted):
        neighbor_fn, _, energy_fn = jef.efield_nequip_neighbor_list(
            space.free()[0], 10.0, numbers, config, disable_cell_list=True)
        energies.append(float(energy_fn(ethanol["params"], R, neighbor_fn.allocate(R), FIELD)))
    assert abs(energies[1] - energies[0]) > 1e-6
    np.testing.assert_allclose(energies[2] - energies[1], np.sum(numbers == 1), rtol=1e-10)
    with pytest.raises(ValueError, match="energy_scale has 2 entries"):
        dataclasses.replace(TINY, energy_scale=(1.0, 2.0))


def test_integer_positions_keep_the_field(ethanol):
    """Integer positions are promoted to floats; the field is never cast to an integer type."""
    R_int = jnp.round(ethanol["R"] * 2).astype(jnp.int32)
    nbrs = ethanol["neighbor_fn"].allocate(R_int.astype(float))
    field = jnp.array([0.0, 0.0, 0.3])
    as_int = ethanol["energy"](R_int, neighbor=nbrs, field=field)
    as_float = ethanol["energy"](R_int.astype(float), neighbor=nbrs, field=field)
    zero_field = ethanol["energy"](R_int.astype(float), neighbor=nbrs, field=jnp.zeros(3))
    np.testing.assert_allclose(as_int, as_float, rtol=1e-12)
    assert abs(float(as_float - zero_field)) > 1e-6
    np.testing.assert_allclose(jef.response.dipole(ethanol["energy"])(R_int, field=field, neighbor=nbrs),
                               jef.response.dipole(ethanol["energy"])(R_int.astype(float), field=field,
                                                                      neighbor=nbrs), rtol=1e-12)


def test_minimum_image_box_narrower_than_twice_the_cutoff_is_refused(ethanol):
    """partition.neighbor_list folds displacements to the nearest image: in a cell narrower than
    2 r_cut it would miss neighbors without a word."""
    for displacement, box in ((space.periodic(7.0)[0], 7.0),
                              (space.periodic(jnp.array([9.0, 9.0, 7.5]))[0], jnp.array([9.0, 9.0, 7.5])),
                              (space.periodic_general(TRICLINIC * 2.5)[0], TRICLINIC * 2.5)):  # edges >= 7.5 Å, widths 7.1-7.8
        with pytest.raises(ValueError, match="narrower than twice the cutoff.*neighbor_list_multi_image"):
            jef.efield_nequip_neighbor_list(displacement, box, ethanol["numbers"], TINY)
    # free space takes any box (it only sizes cell lists), and so do multi-image lists
    jef.efield_nequip_neighbor_list(space.free()[0], 1.0, ethanol["numbers"], TINY, disable_cell_list=True)
    jef.efield_nequip_neighbor_list(None, 3.0 * jnp.eye(3), CELL_NUMBERS, TINY, **MULTI_IMAGE)
    # a box given at call time (periodic_general, fractional coordinates) is checked there
    box = 12.0 * jnp.eye(3)
    displacement, _ = space.periodic_general(box, fractional_coordinates=True)
    neighbor_fn, init_fn, energy_fn = jef.efield_nequip_neighbor_list(
        displacement, box, CELL_NUMBERS, TINY, fractional_coordinates=True, disable_cell_list=True)
    R = jnp.asarray(CELL_FRACTIONAL)
    nbrs = neighbor_fn.allocate(R)
    params = init_fn(jax.random.PRNGKey(0), R, nbrs)
    assert jnp.isfinite(energy_fn(params, R, nbrs, box=10.0 * jnp.eye(3)))
    with pytest.raises(ValueError, match="narrower than twice the cutoff"):
        energy_fn(params, R, nbrs, box=7.0 * jnp.eye(3))
    assert jnp.isnan(jax.jit(energy_fn)(params, R, nbrs, box=7.0 * jnp.eye(3)))


def test_neighbor_list_error_flags_and_malformed_boxes_are_not_ignored():
    """A cell list whose cells became smaller than the cutoff after the box shrank (jax_md's
    cell_size_too_small flag) and a box that is not upper triangular (which jax_md's fractional
    cell list needs; its own malformed_box flag is inverted in 0.2.29) raise eagerly, at build
    time where the box is given there, and give NaN under jit."""
    box = 30.0 * jnp.eye(3)
    displacement, _ = space.periodic_general(box, fractional_coordinates=True)
    numbers = np.tile(CELL_NUMBERS, 4)
    R = jnp.asarray(np.random.default_rng(0).uniform(size=(len(numbers), 3)))
    neighbor_fn, init_fn, energy_fn = jef.efield_nequip_neighbor_list(
        displacement, box, numbers, TINY, fractional_coordinates=True)
    nbrs = neighbor_fn.allocate(R)
    params = init_fn(jax.random.PRNGKey(0), R, nbrs)
    assert jnp.isfinite(energy_fn(params, R, nbrs.update(R, box=box), box=box))
    lower_triangular = box + 2.0 * jnp.eye(3, k=-1)
    for new_box, message in ((15.0 * jnp.eye(3), "cell_size_too_small"),
                             (lower_triangular, "not upper triangular")):
        updated = nbrs.update(R, box=new_box)
        with pytest.raises(ValueError, match=message):
            energy_fn(params, R, updated, box=new_box)
        assert jnp.isnan(jax.jit(energy_fn)(params, R, updated, box=new_box)), message
    assert bool(nbrs.update(R, box=15.0 * jnp.eye(3)).cell_size_too_small)
    with pytest.raises(ValueError, match="not upper triangular"):
        jef.efield_nequip_neighbor_list(space.periodic_general(lower_triangular, fractional_coordinates=True)[0],
                                        lower_triangular, numbers, TINY, fractional_coordinates=True)


def test_config_settings_must_be_positive():
    for name in ("avg_num_neighbors", "r_cut", "num_layers", "readout_hidden"):
        with pytest.raises(ValueError, match=f"must be positive: {name}="):
            dataclasses.replace(TINY, **{name: 0})
