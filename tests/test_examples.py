"""The README's examples and simulation scripts run as written (shortened)."""

import importlib.util
import pathlib

import jax.numpy as jnp

from jaxmd_efield import simulate


def load(name):
    path = pathlib.Path(__file__).parents[1] / "simulations" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quickstart_runs():
    dipoles, overflow = load("quickstart").main(steps=50)
    assert dipoles.shape == (50, 3) and not overflow
    assert jnp.all(jnp.isfinite(dipoles)) and jnp.abs(dipoles[-1] - dipoles[0]).max() > 0


def test_main_command_short_run(tmp_path):
    """simulations/ethanol_ir.py (the README's main command) end to end, shortened."""
    summary = load("ethanol_ir").main(["--nvt-ps", "0.2", "--replicas", "4", "--nve-ps", "0.2",
                                       "--out", str(tmp_path)])
    for name in ("nvt.h5", "nve.h5", "ir.png", "raman.png", "summary.json"):
        assert (tmp_path / name).exists(), name
    assert len(summary["harmonic"]) == 21 and summary["md_peaks"] and summary["replicas"] == 4
    assert 100 < summary["nvt_mean_temperature_K"] < 600 and 0 < summary["half_ensemble_relative_l1"] < 2
    assert 0 < summary["raman_half_ensemble_relative_l1"] < 2
    assert all(mode["raman_activity_A4_amu"] >= 0 for mode in summary["harmonic"])
    nve, attrs = simulate.read_trajectory(str(tmp_path / "nve.h5"))  # frames every 4 fs
    assert attrs["replicas"] == 4 and nve["dipole"].shape == (4, 50, 3)
    assert nve["polarizability"].shape == (4, 50, 3, 3) and "born_charges" not in nve  # Raman needs alpha only


def test_periodic_example_matches_free_space(tmp_path):
    deviation, out = load("periodic_ethanol").main(["--ps", "0.05", "--out", str(tmp_path)])
    assert deviation < 1e-5
    assert out["born_charges"].shape == (10, 9, 3, 3)
    assert jnp.abs(out["born_charges"].sum(axis=1)).max() < 1e-4


def test_field_scan(tmp_path):
    rows = load("field_scan").main(["--points", "2", "--max-field", "0.3", "--out", str(tmp_path)])
    assert (tmp_path / "field_scan.png").exists() and len(rows) == 2
    # the dipole responds to the field along it, as in the reference
    assert rows[1]["dipole"][2] - rows[0]["dipole"][2] > 0.5 * (rows[1]["dipole_xtb"][2] - rows[0]["dipole_xtb"][2])


def test_scripts_turn_on_the_persistent_compilation_cache(tmp_path):
    """A second process with the cache the scripts turn on loads the program compiled by the
    first instead of compiling it (counted by JAX's own cache-hit event)."""
    import subprocess
    import sys

    module = pathlib.Path(__file__).parents[1] / "jaxmd_efield" / "compilation.py"
    program = f"""
import importlib.util, jax
spec = importlib.util.spec_from_file_location("compilation", {str(module)!r})  # not the whole package
compilation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compilation)
hits = []
jax.monitoring.register_event_listener(lambda name, **kw: hits.append(name == "/jax/compilation_cache/cache_hits"))
compilation.use_persistent_cache({str(tmp_path)!r}, min_compile_time_s=0.0)
jax.jit(lambda x: jax.numpy.sin(x) * 3.0)(jax.numpy.ones(7))
print(sum(hits))
"""
    runs = [subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
            for _ in range(2)]
    hits = [int(r.stdout.split()[-1]) for r in runs]
    assert hits[0] == 0 and hits[1] >= 1, hits
    root = pathlib.Path(__file__).parents[1]
    for script in root.glob("simulations/*.py"):
        assert "use_persistent_cache()" in script.read_text().split('if __name__ == "__main__":')[1], script
    for tool in ("train", "predict"):  # the console scripts' entry points
        assert "use_persistent_cache()" in (root / "jaxmd_efield" / "cli" / f"{tool}.py").read_text().split(
            "def cli():")[1], tool
