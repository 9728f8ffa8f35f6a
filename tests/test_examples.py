"""The README's example runs as written."""

import importlib.util
import pathlib

import jax.numpy as jnp


def test_quickstart_runs():
    path = pathlib.Path(__file__).parents[1] / "simulations" / "quickstart.py"
    spec = importlib.util.spec_from_file_location("quickstart", path)
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    dipoles, overflow = quickstart.main(steps=50)
    assert dipoles.shape == (50, 3) and not overflow
    assert jnp.all(jnp.isfinite(dipoles)) and jnp.abs(dipoles[-1] - dipoles[0]).max() > 0
