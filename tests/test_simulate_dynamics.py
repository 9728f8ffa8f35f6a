"""simulate.run's dynamics: every step against jax_md's own integrators, NVE energy conservation,
the field each step sees, and float32 against float64.

The driver's tests use a field-coupled spring model that compiles in about a second (the NequIP
model takes tens of seconds per run); the float32 test runs the tiny NequIP model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax_md import simulate as jmd

from jaxmd_efield import fields, simulate, units

DT_FS = 0.5
DRIVE = fields.superpose(fields.constant([0.1, 0.0, 0.0]),
                         fields.sinusoidal(0.5, [0, 1, 1], frequency_THz=40.0, phase=0.3))


def springs_in_field(R0, charges, r_cut=4.0):
    """A cheap field-dependent energy on a jax_md Sparse neighbor list: Morse springs
    (D = 1 eV, a = 1.5 /Å) between listed pairs at their lengths in R0 (Å), switched off smoothly
    at r_cut (Å), and point charges q (e) in the field, -F·sum_i q_i R_i. energy(R, neighbor,
    field) -> eV; the dipole is sum_i q_i R_i (e·Å)."""
    r0 = jnp.linalg.norm(R0[:, None] - R0[None], axis=-1)

    def energy(R, neighbor, field, **kwargs):
        i, j = neighbor.idx
        listed = i < len(R)
        i, j = jnp.where(listed, i, 0), jnp.where(listed, j, 1)  # padding: a real pair, masked
        r = jnp.linalg.norm(R[i] - R[j], axis=-1)
        pair = (1 - jnp.exp(-1.5 * (r - r0[i, j]))) ** 2 * (1 - (r / r_cut) ** 2) ** 2
        return 0.5 * jnp.sum(jnp.where(listed & (r < r_cut), pair, 0.0)) - field @ (charges @ R)
    return energy


def ethanol_springs(ethanol):
    """springs_in_field at ethanol's geometry, H +0.2 e, C -0.3 e, O -0.6 e (neutral)."""
    charges = jnp.asarray(np.select([ethanol["numbers"] == 1, ethanol["numbers"] == 6],
                                    [0.2, -0.3], -0.6))
    return springs_in_field(ethanol["R"], charges)


def run(ethanol, energy, field_fn, **kwargs):
    options = dict(dt_fs=DT_FS, record_every=1, temperature_K=300.0, key=jax.random.PRNGKey(3),
                   neighbors=ethanol["nbrs"], progress=False)
    return simulate.run(energy, ethanol["shift"], ethanol["neighbor_fn"], ethanol["R"],
                        ethanol["masses"], field_fn, **{**options, **kwargs})


@pytest.mark.parametrize("integrator", simulate.INTEGRATORS)
def test_every_step_equals_jax_md(ethanol, integrator):
    """40 steps of simulate.run equal jax_md's own apply_fn step by step (to 1e-10 Å, Å/fs) with
    the same energy, dt, kT, tau / gamma and key, the field F((i+1) dt) at step i (a 40 THz
    drive: a one-step lag changes F by up to 0.25 V/Å), the list updated after each step, and
    chunks of 8 steps; each frame's energy and dipole are those at its positions and field."""
    energy = ethanol_springs(ethanol)
    # jax_md's velocity_verlet and nvt_nose_hoover round dt and tau to float32 (util.f32), also
    # in float64: take float32-exact values so the comparison holds to float64 precision.
    dt, tau = (float(np.float32(t_fs * units.FS)) for t_fs in (DT_FS, 20.0))
    steps, friction_per_fs, kT = 40, 0.05, 300.0 * units.KB
    init_fn, apply_fn = {
        "nve": lambda: jmd.nve(energy, ethanol["shift"], dt),
        "nvt_nose_hoover": lambda: jmd.nvt_nose_hoover(
            energy, ethanol["shift"], dt, kT, chain_length=5, chain_steps=2, sy_steps=3, tau=tau),
        "nvt_langevin": lambda: jmd.nvt_langevin(energy, ethanol["shift"], dt, kT,
                                                 gamma=friction_per_fs / units.FS),
    }[integrator]()
    key = jax.random.PRNGKey(3)

    @jax.jit
    def reference():
        nbrs = ethanol["nbrs"]
        state = init_fn(key, ethanol["R"], kT=kT, mass=ethanol["masses"], neighbor=nbrs,
                        field=DRIVE(0.0))

        def step(carry, i):
            state, nbrs = carry
            field = DRIVE((i + 1) * dt / units.FS)
            state = apply_fn(state, neighbor=nbrs, field=field)
            e, minus_mu = jax.value_and_grad(lambda F: energy(state.position, nbrs, F))(field)
            return ((state, nbrs.update(state.position)),
                    (state.position, state.velocity * units.FS, e, -minus_mu))

        return jax.lax.scan(step, (state, nbrs), jnp.arange(steps))[1]

    out = run(ethanol, energy, DRIVE, steps=steps, dt_fs=dt / units.FS, integrator=integrator,
              key=key, tau_fs=tau / units.FS, friction_per_fs=friction_per_fs, frames_per_chunk=8)
    for name, expected in zip(("positions", "velocities", "potential_energy", "dipole"),
                              reference()):
        np.testing.assert_allclose(out[name], expected, rtol=0, atol=1e-10, err_msg=name)


def test_nve_conserves_energy_through_run(ethanol):
    """200 fs of simulate.run's NVE from 300 K in a constant field of 0.3 V/Å: max |E_tot(t) -
    E_tot(dt)| < 1 meV at dt = 0.5 fs (400 steps; measured 0.50 meV), and halving dt cuts it
    about 4x (Verlet's dt^2; measured 3.8x); a wrong kick or drift breaks both."""
    energy, field = ethanol_springs(ethanol), fields.constant([0.0, 0.2, 0.22])
    deviation = {}
    for dt_fs in (0.5, 0.25):
        total = run(ethanol, energy, field, steps=round(200 / dt_fs), dt_fs=dt_fs,
                    integrator="nve", frames_per_chunk=400)["total_energy"]
        deviation[dt_fs] = np.abs(total - total[0]).max()
        print(f"NVE through run, dt = {dt_fs} fs: max |E_tot(t) - E_tot(dt)| over 200 fs = "
              f"{deviation[dt_fs] * 1e3:.3f} meV")
    assert deviation[0.5] < 1e-3
    assert 3.5 < deviation[0.5] / deviation[0.25] < 4.5


@pytest.mark.parametrize("integrator", simulate.INTEGRATORS)
def test_field_switched_on_acts_from_its_step(ethanol, integrator):
    """F = F0 from t = 7 dt on: against a field-free run from the same state, the momenta first
    differ after step 7 (its closing kick sees F(7 dt)) and the positions after step 8."""
    energy, on_step = ethanol_springs(ethanol), 7
    F0 = jnp.array([0.0, 0.3, 0.4])
    switched = lambda t: jnp.where(t > (on_step - 0.5) * DT_FS, 1.0, 0.0) * F0  # noqa: E731
    free, driven = (run(ethanol, energy, f, steps=12, integrator=integrator, tau_fs=20.0)
                    for f in (fields.constant([0.0, 0.0, 0.0]), switched))
    for name, first_change in (("velocities", on_step), ("positions", on_step + 1)):
        change = np.abs(driven[name] - free[name]).max(axis=(1, 2))
        np.testing.assert_array_less(change[:first_change - 1], 1e-12, err_msg=name)
        assert change[first_change - 1] > 1e-6, name


@pytest.mark.filterwarnings("ignore:Explicitly requested dtype float64")  # jax_md's kinetic energy
def test_float32_agrees_with_float64(ethanol):
    """The tiny NequIP model (scaled to thermal forces) through 40 NVE steps (20 fs) in float32
    and in float64 from the same state: the float32 run is float32 throughout and agrees to
    float32 precision. Measured max |float32 - float64|: 4.2e-6 Å, 4.6e-7 Å/fs, 5.8e-6 eV,
    9.6e-7 e·Å (scales 2.4 Å, 0.05 Å/fs, 0.56 eV, 0.08 e·Å: 15-100 float32 roundings, grown
    over the run). The bounds leave about 10x."""
    z = np.random.default_rng(5).normal(size=(9, 3))
    momenta = np.sqrt(np.asarray(ethanol["masses"]) * 300.0 * units.KB)[:, None] * z * units.FS

    def go(dtype):
        cast = lambda x: jnp.asarray(x, dtype)  # noqa: E731
        params = jax.tree_util.tree_map(cast, ethanol["params"])
        energy = lambda R, **kw: 0.05 * ethanol["energy_fn"](params, R, **kw)  # noqa: E731
        field = fields.sinusoidal(0.3, [0, 1, 1], frequency_THz=40.0)
        return simulate.run(energy, ethanol["shift"], ethanol["neighbor_fn"], cast(ethanol["R"]),
                            cast(ethanol["masses"]), field, steps=40, record_every=1,
                            integrator="nve", momenta=cast(momenta), progress=False)

    double = go(jnp.float64)
    with jax.enable_x64(False):
        single = go(jnp.float32)
    for name, bound in (("positions", 5e-5), ("velocities", 5e-6), ("total_energy", 5e-5),
                        ("dipole", 2e-5)):
        assert single[name].dtype == np.float32, name
        err = np.abs(single[name] - double[name]).max()
        print(f"float32 vs float64 over 40 steps, {name}: max |diff| = {err:.2e} "
              f"(max |value| {np.abs(double[name]).max():.2g})")
        assert err < bound, name
