"""The float32 path (what users run: jax's default precision) against float64 (what the other
tests run): builder, response observables and the ASE calculator with the shipped model.

Tolerance: 1e-4 of each quantity's largest entry. float32 rounds at 6e-8 relative; three
interaction blocks and the cancellations in gradients amplify that to the measured 5e-6 (tiny
model) and 1.9e-5 (forces of ethanol-gfn2); a lost digit of precision anywhere (a half-precision
cast, a field rounded to the positions' integer type) is far above it."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from ase.build import molecule
from jax_md import space

import jaxmd_efield as jef
from conftest import TINY

FIELD = np.array([0.12, -0.25, 0.07])  # V/Å


def relative_errors(single, double):
    """max |float32 - float64| / max |float64| for each key of two dicts of arrays."""
    return {k: float(np.abs(np.asarray(single[k], np.float64) - np.asarray(double[k])).max()
                     / np.abs(np.asarray(double[k])).max()) for k in double}


def tiny_response(R, numbers, params):
    """All field-response observables of the tiny model, in the precision in force."""
    neighbor_fn, _, energy_fn = jef.efield_nequip_neighbor_list(
        space.free()[0], 10.0, numbers, TINY, disable_cell_list=True)
    dtype = jnp.asarray(0.0).dtype
    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), params)
    R = jnp.asarray(R, dtype)
    fn = jax.jit(jef.response.field_response(functools.partial(energy_fn, params)))
    return {k: np.asarray(v) for k, v in fn(R, field=FIELD, neighbor=neighbor_fn.allocate(R)).items()}


def test_builder_and_response_in_float32(ethanol):
    double = tiny_response(ethanol["R"], ethanol["numbers"], ethanol["params"])
    with jax.enable_x64(False):
        single = tiny_response(np.asarray(ethanol["R"]), ethanol["numbers"], ethanol["params"])
    assert all(v.dtype == np.float32 for v in single.values())
    errors = relative_errors(single, double)
    print("tiny model, float32 vs float64, max relative deviation:", errors)
    for key, err in errors.items():
        assert err < 1e-4, key


def calculator_results(model, atoms):
    atoms = atoms.copy()
    atoms.calc = jef.EFieldCalculator(model, field=FIELD)
    return {p: atoms.calc.get_property(p, atoms) for p in atoms.calc.implemented_properties}


def test_shipped_model_calculator_in_float32():
    """ethanol-gfn2 through the ASE calculator: float32 agrees with float64 to float32 precision
    (energy relative to its size, about 1000 eV; the others relative to their largest entry)."""
    model = jef.load_pretrained("ethanol-gfn2")
    atoms = molecule("CH3CH2OH")
    double = calculator_results(model, atoms)
    with jax.enable_x64(False):
        single = calculator_results(model, atoms)
    errors = relative_errors(single, double)
    print("ethanol-gfn2 calculator, float32 vs float64, max relative deviation:", errors)
    for key, err in errors.items():
        assert err < 1e-4, key
