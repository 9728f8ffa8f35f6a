import contextlib
import functools
import os
import pathlib

# Compilation dominates the suite's time. Without LLVM's expensive optimisation passes XLA's CPU
# backend compiles about a third faster; the programs compute the same numbers (every tolerance
# of the suite holds either way), only more slowly, and no test times anything.
os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0",
                                    "--xla_llvm_disable_expensive_passes=true"]).strip()

import jax  # noqa: E402
import jax.numpy as jnp
import numpy as np
import pytest
from ase.build import molecule
from jax_md import space

jax.config.update("jax_enable_x64", True)
# Most of the suite's time is XLA compilation, and many tests compile the same program again (the
# shipped model's calculator, repeated MD segments, one tiny model's observables): JAX's
# persistent cache turns those repeats into cache hits, across the pytest-xdist workers too.
jax.config.update("jax_compilation_cache_dir", str(pathlib.Path(__file__).parents[1] / ".jax_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)

import jaxmd_efield as jef  # noqa: E402

TINY = jef.EFieldNequIPConfig(
    species=(1, 6, 8), r_cut=4.0, hidden_irreps="8x0e + 2x0o + 4x1o + 4x1e + 2x2e",
    num_layers=2, num_basis=6, radial_hidden=8, readout_hidden=8,
)


def xtb_samples(seed=0, count=24, name="CH3CH2OH", response_every=3):
    """Randomly distorted molecules (ase.build.molecule `name`) in random fields with GFN2-xTB
    labels, every `response_every`-th also with polarizability and Born charges: a list of
    samples for `data.from_samples`, 4 to a `trajectory`."""
    from jaxmd_efield.reference import xtb_field_derivatives, xtb_in_field

    rng = np.random.default_rng(seed)
    mol = molecule(name)
    samples = []
    for k in range(count):
        R = mol.positions + rng.normal(scale=0.05, size=mol.positions.shape)
        F = rng.normal(size=3) * 0.15
        sample = dict(numbers=mol.numbers, positions=R, field=F, trajectory=k // 4,
                      **xtb_in_field(mol.numbers, R, F))
        if k % response_every == 0:
            sample.update(xtb_field_derivatives(mol.numbers, R, F))
        samples.append(sample)
    return samples


_BACKEND_COMPILES = [0]
jax.monitoring.register_event_duration_secs_listener(
    lambda name, secs, **kwargs: _BACKEND_COMPILES.__setitem__(
        0, _BACKEND_COMPILES[0] + (name == "/jax/core/compile/backend_compile_duration")))


@contextlib.contextmanager
def counting_compilations():
    """Counts XLA backend compilations inside the block: `with counting_compilations() as c:`,
    then `c[0]`. (jit's `_cache_size()` can under-count, so tests use this.)"""
    count = [0]
    start = _BACKEND_COMPILES[0]
    try:
        yield count
    finally:
        count[0] = _BACKEND_COMPILES[0] - start


def random_orthogonal(seed, proper):
    """A random rotation (proper) or rotation-reflection (improper) matrix."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return jnp.asarray(q if proper else -q)


@pytest.fixture(scope="session")
def ethanol():
    """Ethanol (ASE geometry, shifted off the origin) and a tiny random float64 model in free
    space: R (9, 3), species, neighbor list, energy E(R, field=..., neighbor=...)."""
    mol = molecule("CH3CH2OH")
    R = jnp.asarray(mol.positions + np.array([0.3, -0.2, 0.1]))
    displacement, shift = space.free()
    neighbor_fn, init_fn, energy_fn = jef.efield_nequip_neighbor_list(
        displacement, 10.0, mol.numbers, TINY, disable_cell_list=True, capacity_multiplier=2.0)
    nbrs = neighbor_fn.allocate(R)
    params = jax.jit(init_fn)(jax.random.PRNGKey(1), R, nbrs)
    return dict(R=R, numbers=mol.numbers, masses=jnp.asarray(mol.get_masses()), nbrs=nbrs,
                neighbor_fn=neighbor_fn, energy_fn=energy_fn, params=params,
                energy=functools.partial(energy_fn, params), shift=shift)


@pytest.fixture(scope="session")
def ethanol_response(ethanol):
    """Jitted all-observables function of ethanol: (R, field) -> dict."""
    fn = jax.jit(jef.response.field_response(ethanol["energy"]))
    return lambda R, F: fn(R, field=F, neighbor=ethanol["nbrs"].update(R))
