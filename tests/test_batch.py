"""The batching module and batch prediction: padded graphs of molecules and periodic cells give
what the jax_md builder gives for each structure alone, few compilations for many structures,
and no compilation for a new calculator of a configuration seen before."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from jax_md import custom_partition, space

import jaxmd_efield as jef
from jaxmd_efield import batch, evaluate
from conftest import TINY, counting_compilations

FIELD = np.array([0.05, 0.1, -0.2])
TRICLINIC_CELL = Atoms("COH", scaled_positions=[[0.1, 0.2, 0.05], [0.55, 0.5, 0.6], [0.3, 0.8, 0.4]],
                       cell=[[3.0, 0, 0], [0.8, 2.9, 0], [0.5, 0.6, 3.1]], pbc=True)


def builder_response(params, atoms, field):
    """All observables of one structure through the jax_md builder (jax_md neighbor lists)."""
    if atoms.pbc.all():
        nl = dict(neighbor_list_fn=custom_partition.neighbor_list_multi_image)
        displacement, box = None, jnp.asarray(atoms.cell.array.T)
    else:
        nl = dict(disable_cell_list=True)
        displacement, box = space.free()[0], 1.0
    neighbor_fn, _, energy_fn = jef.efield_nequip_neighbor_list(displacement, box, atoms.numbers,
                                                                TINY, **nl)
    R = jnp.asarray(atoms.positions)
    fn = jax.jit(jef.response.field_response(functools.partial(energy_fn, params)))
    return fn(R, field=field, neighbor=neighbor_fn.allocate(R))


def test_bucket_sizes():
    sizes = [batch.bucket(n) for n in range(1, 5000)]
    assert all(s >= n for n, s in zip(range(1, 5000), sizes)) and sizes == sorted(sizes)
    assert all(s % 8 == 0 for s in sizes)
    assert max(s / n for n, s in zip(range(1, 5000), sizes) if n > 64) < 1.5
    assert len(set(sizes)) <= 25  # a handful of programs for any size up to 5000


def test_pack_pads_as_documented():
    graphs = [batch.structure_graph(a, TINY.r_cut, TINY.species)
              for a in (molecule("CH3CH2OH"), TRICLINIC_CELL, molecule("H2O"))]
    packed = batch.pack(graphs)
    n = 9 + 3 + 3
    A, E, G = len(packed["species"]), len(packed["senders"]), len(packed["field"])
    assert A > n and G > 3 and (A, E, G) == tuple(batch.bucket(x) for x in (n + 1, E, 4))[:1] + (E, G)
    assert packed["node_mask"].sum() == n and packed["graph_mask"].tolist() == [True] * 3 + [False] * (G - 3)
    assert np.all(packed["node_graph"][n:] == G - 1)
    assert np.all(packed["senders"][~packed["edge_mask"]] == A - 1)
    np.testing.assert_array_equal(packed["cell"][1], TRICLINIC_CELL.cell.array)
    assert not packed["cell"][[0, 2]].any()
    # edges never cross structures
    assert np.all(packed["node_graph"][packed["senders"]] == packed["node_graph"][packed["receivers"]])
    with pytest.raises(ValueError, match="too small"):
        batch.pack(graphs, budget=(n, E, 4))


def test_predict_equals_the_builder_for_each_structure(ethanol):
    """Molecules of different sizes and a small triclinic cell (periodic images) in one call,
    each with its own field: every observable as from the jax_md builder alone, float64."""
    model = jef.Model(TINY, ethanol["params"])
    rattled = molecule("CH3CH2OH")
    rattled.rattle(0.05, seed=2)
    structures = [rattled, TRICLINIC_CELL, molecule("H2O")]
    fields = np.array([FIELD, -FIELD, np.zeros(3)])
    predicted = jef.predict(model, structures, field=fields, response=True)
    for atoms, field, got in zip(structures, fields, predicted):
        want = builder_response(ethanol["params"], atoms, field)
        assert isinstance(got["energy"], float)
        for key in ("energy", "forces", "dipole", "polarizability", "born_charges"):
            np.testing.assert_allclose(got[key], want[key], atol=1e-10, rtol=1e-10, err_msg=key)
    # without response: the same first derivatives
    basic = jef.predict(model, structures, field=fields)
    assert set(basic[0]) == {"energy", "forces", "dipole"}
    np.testing.assert_allclose(basic[1]["forces"], predicted[1]["forces"], atol=1e-12)


def test_tensor_predict_equals_the_builder(ethanol):
    config = dataclasses.replace(TINY, species=(8, 12, 30))
    crystals = [bulk("MgO", "rocksalt", a=4.2), bulk("ZnO", "wurtzite", a=3.25, c=5.2)]
    crystals[1].rattle(0.03, seed=1)
    neighbor_fn, init_fn, tensor_fn = jef.born_dielectric_neighbor_list(
        None, jnp.asarray(crystals[1].cell.array.T), crystals[1].numbers, config,
        neighbor_list_fn=custom_partition.neighbor_list_multi_image)
    R = jnp.asarray(crystals[1].positions)
    nbrs = neighbor_fn.allocate(R)
    params = init_fn(jax.random.PRNGKey(0), R, nbrs)
    predicted = jef.predict(jef.Model(config, params, kind="tensor"), crystals)
    born, eps = tensor_fn(params, R, nbrs)
    np.testing.assert_allclose(predicted[1]["born_charges"], born, atol=1e-10)
    np.testing.assert_allclose(predicted[1]["dielectric"], eps, atol=1e-10)
    np.testing.assert_allclose(predicted[0]["born_charges"].sum(0), 0.0, atol=1e-10)


def test_many_structures_compile_a_handful_of_times(ethanol):
    """30 molecules and cells of 3-72 atoms compile a few programs, not 30; a new calculator, a
    new cell of the same composition and a moved molecule compile nothing new."""
    model = jef.Model(TINY, ethanol["params"])
    rng = np.random.default_rng(0)
    structures = []
    for k in range(30):
        if k % 3 == 0:
            a = TRICLINIC_CELL.repeat((1 + k % 2, 1, 1 + k % 4))
        else:
            a = molecule(["H2O", "CH3CH2OH", "CH3OH", "CH4", "HCOOH"][k % 5])
        a.positions += rng.normal(scale=0.05, size=a.positions.shape)
        structures.append(a)
    with counting_compilations() as count:
        results = jef.predict(model, structures, max_atoms=64)
    print("compilations for 30 structures:", count[0])
    assert len(results) == 30 and count[0] <= 2, count[0]
    assert [len(r["forces"]) for r in results] == [len(a) for a in structures]

    atoms = molecule("CH3CH2OH")
    atoms.calc = jef.EFieldCalculator(model, field=FIELD)
    atoms.get_forces()
    with counting_compilations() as count:
        again = atoms.copy()
        again.calc = jef.EFieldCalculator(model, field=FIELD)  # a new calculator
        again.positions[0] += 0.05
        again.get_forces()
        cell = TRICLINIC_CELL.copy()
        cell.calc = jef.EFieldCalculator(model)
        cell.get_potential_energy()
        cell.set_cell(cell.cell.array * 1.02, scale_atoms=True)  # a new cell: an argument
        cell.get_potential_energy()
    assert count[0] <= 1, count[0]  # at most the cell's own bucket


def test_bad_structures_are_named():
    model = jef.Model(TINY, None)
    slab = TRICLINIC_CELL.copy()
    slab.pbc = (True, True, False)
    nan = molecule("H2O")
    nan.positions[1, 0] = np.nan
    cases = [([molecule("H2O"), slab], r"structure 1 \(CHO\): periodic in some directions"),
             ([molecule("H2O"), molecule("H2O"), Atoms("Cl2", positions=[[0, 0, 0], [0, 0, 2]])],
              r"structure 2 \(Cl2\): species \[17\] are not in the model's species table"),
             ([nan], r"structure 0 \(H2O\): positions contain NaN"),
             ([Atoms("H", cell=np.zeros((3, 3)), pbc=True)], "singular cell")]
    for structures, message in cases:
        with pytest.raises(ValueError, match=message):
            jef.predict(model, structures)
    with pytest.raises(ValueError, match="one 3-vector per structure"):
        jef.predict(model, [molecule("H2O")] * 2, field=np.zeros((3, 3)))
    with pytest.raises(TypeError, match="list of ase.Atoms"):
        jef.predict(model, molecule("H2O"))
    with pytest.raises(ValueError, match="takes no field"):
        jef.predict(jef.Model(TINY, None, kind="tensor"), [molecule("H2O")], field=FIELD)
