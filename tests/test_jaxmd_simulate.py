"""The energy_fn drops into jax_md.simulate integrators unchanged."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax_md import quantity, simulate

from conftest import counting_compilations
from jaxmd_efield import units

DT = 0.5 * units.FS
KT = 300.0 * units.KB
OMEGA = 2 * jnp.pi * 0.05 / units.FS  # 50 THz, rad per jax_md time unit


def field_at(t, amplitude):
    """A field along (1, 1, 0)/sqrt(2) oscillating at 50 THz, V/Å."""
    return amplitude * jnp.sin(OMEGA * t) * jnp.array([1.0, 1.0, 0.0]) / jnp.sqrt(2.0)


@pytest.mark.parametrize("integrator", [simulate.nvt_nose_hoover, simulate.nvt_langevin],
                         ids=["nose_hoover", "langevin"])
def test_nvt_in_time_varying_field(ethanol, integrator):
    init_fn, apply_fn = integrator(ethanol["energy"], ethanol["shift"], DT, KT)

    @jax.jit
    def run(key, amplitude, steps):
        nbrs = ethanol["nbrs"]
        state = init_fn(key, ethanol["R"], mass=ethanol["masses"], neighbor=nbrs,
                        field=field_at(0.0, amplitude))

        def step(i, carry):
            state, nbrs = carry
            state = apply_fn(state, neighbor=nbrs, field=field_at((i + 1) * DT, amplitude))
            return state, nbrs.update(state.position)

        state, nbrs = jax.lax.fori_loop(0, steps, step, (state, nbrs))
        return state.position, nbrs.did_buffer_overflow

    key = jax.random.PRNGKey(0)
    R_off, overflow = run(key, 0.0, 200)  # compiles
    with counting_compilations() as compiled:
        R_on, _ = run(key, 0.5, 200)
        run(key, 0.3, 50)
    assert compiled[0] == 0, "recompiled for a new field amplitude or step count"
    assert not overflow and jnp.all(jnp.isfinite(R_on))
    assert jnp.abs(R_on - R_off).max() > 1e-6, "the field does not reach the dynamics"


def nve_total_energy(energy, ethanol, field, dt_fs, duration_fs=1000.0):
    """Total energy (kinetic + E(R, F), which includes -mu.F) at every step of an NVE run."""
    init_fn, apply_fn = simulate.nve(energy, ethanol["shift"], dt_fs * units.FS)

    @jax.jit
    def run(key):
        nbrs = ethanol["nbrs"]
        state = init_fn(key, ethanol["R"], kT=KT, mass=ethanol["masses"], neighbor=nbrs, field=field)

        def step(carry, _):
            state, nbrs = carry
            state = apply_fn(state, neighbor=nbrs, field=field)
            nbrs = nbrs.update(state.position)
            total = energy(state.position, neighbor=nbrs, field=field) + \
                quantity.kinetic_energy(momentum=state.momentum, mass=state.mass)
            return (state, nbrs), total

        return jax.lax.scan(step, (state, nbrs), None, length=round(duration_fs / dt_fs))[1]

    return np.asarray(run(jax.random.PRNGKey(2)))


def test_nve_conserves_energy_in_constant_field(ethanol):
    """1 ps of velocity Verlet from 300 K in a 0.22 V/Å field. The random tiny model has no
    short-range repulsion (ethanol collapses under it), so its energy is scaled by 0.05 to a
    thermal-scale landscape (forces about 1 eV/Å). Bound: max |E_tot(t) - E_tot(0)| < 2 meV at
    dt = 0.5 fs (measured 0.47 meV), and halving dt cuts the drift about 4x (Verlet's dt^2), which
    a non-conservative force would not."""
    field = jnp.array([0.0, 0.2, 0.1])
    energy = lambda R, **kwargs: 0.05 * ethanol["energy"](R, **kwargs)  # noqa: E731
    drifts = {}
    for dt_fs in (1.0, 0.5):
        totals = nve_total_energy(energy, ethanol, field, dt_fs)
        assert np.all(np.isfinite(totals))
        drifts[dt_fs] = np.abs(totals - totals[0]).max()
        print(f"NVE dt = {dt_fs} fs: max |E_tot(t) - E_tot(0)| over 1 ps = {drifts[dt_fs] * 1e3:.3f} meV")
    assert drifts[0.5] < 2e-3
    assert 3.0 < drifts[1.0] / drifts[0.5] < 5.0
