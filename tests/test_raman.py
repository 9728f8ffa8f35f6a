"""Raman: harmonic activities by autodiff against analytic values, central differences and
symmetry; spectra from polarizability trajectories against the harmonic activities they must
integrate to; polarizability recorded along MD."""

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax_md import partition, space

import jaxmd_efield as jef
from conftest import TINY
from jaxmd_efield import response, simulate, spectra, units

K, R0 = 40.0, 1.1                # eV/Å², Å
A0, DA, G0, DG = 0.3, 0.05, 0.1, 0.08  # bond polarizability (e·Å²/V) and its slopes (per Å)


def polarizable_bonds(pairs):
    """Harmonic bonds, each with a polarizability a(r) I + g(r) (u u^T - I/3) along its unit
    vector u, a and g linear in the bond length r: E = sum k/2 (r - r0)^2 - 1/2 F.alpha.F."""
    def energy(R, field=None):
        field = jnp.zeros(3) if field is None else field
        total = 0.0
        for i, j in pairs:
            d = R[j] - R[i]
            r = jnp.linalg.norm(d)
            u = d / r
            alpha = (A0 + DA * (r - R0)) * jnp.eye(3) + (G0 + DG * (r - R0)) * (jnp.outer(u, u) - jnp.eye(3) / 3)
            total = total + 0.5 * K * (r - R0) ** 2 - 0.5 * field @ alpha @ field
        return total
    return energy


def test_diatomic_activity_and_depolarization_are_analytic():
    masses = np.array([12.0, 16.0])
    R = np.array([[0.0, 0.0, 0.0], [0.6, 0.0, 0.8]]) * R0
    out = spectra.harmonic_raman(polarizable_bonds([(0, 1)]), R, masses)
    reduced = masses.prod() / masses.sum()
    # along the normal coordinate r changes by 1/sqrt(mu): a' = DA / sqrt(mu), gamma'^2 = DG^2 / mu
    a2, g2 = (units.COULOMB_EV_A * DA) ** 2 / reduced, (units.COULOMB_EV_A * DG) ** 2 / reduced
    np.testing.assert_allclose(out["frequencies"], [np.sqrt(K / reduced) * units.WAVENUMBER_PER_SQRT_EV_A2_AMU],
                               rtol=1e-6)
    np.testing.assert_allclose(out["activities"], [45 * a2 + 7 * g2], rtol=1e-6)
    np.testing.assert_allclose(out["depolarization"], [3 * g2 / (45 * a2 + 4 * g2)], rtol=1e-6)


def test_symmetric_linear_molecule_obeys_mutual_exclusion():
    """O-C-O with bond polarizabilities: only the symmetric stretch is Raman active; the
    antisymmetric stretch and the bends change alpha only at second order."""
    masses = np.array([16.0, 12.0, 16.0])
    R = np.array([[-R0, 0, 0], [0, 0, 0], [R0, 0, 0]]) + 0.3
    out = spectra.harmonic_raman(polarizable_bonds([(0, 1), (1, 2)]), R, masses)
    assert out["frequencies"].shape == (4,)  # 3N - 5
    stretch = np.abs(out["modes"][:, 0, 0] + out["modes"][:, 2, 0]) < 1e-6  # oxygens move apart
    symmetric = np.argmax(np.abs(out["modes"][:, 0, 0]) * stretch)
    assert out["activities"][symmetric] > 1.0
    np.testing.assert_allclose(np.delete(out["activities"], symmetric), 0.0, atol=1e-10)


def test_equivariant_model_on_co2_obeys_mutual_exclusion():
    """Any E(3)-equivariant field-dependent energy has an alpha even under inversion, so for a
    centrosymmetric geometry the modes odd under inversion (antisymmetric stretch, bends) have
    zero Raman activity, and the symmetric stretch zero IR intensity (tiny random model, in
    float32, what users run; float64 derivatives are pinned by the central differences below)."""
    R = jnp.asarray([[-1.16, 0, 0], [0, 0, 0], [1.16, 0, 0]], jnp.float32) + jnp.asarray([0.2, -0.1, 0.3], jnp.float32)
    masses = np.array([16.0, 12.0, 16.0])
    neighbor_fn, init_fn, energy_fn = jef.efield_nequip_neighbor_list(
        space.free()[0], 10.0, np.array([8, 6, 8]), TINY, disable_cell_list=True,
        format=partition.Dense)
    nbrs = neighbor_fn.allocate(R)
    params = init_fn(jax.random.PRNGKey(3), R, nbrs)
    energy = lambda R_, **kw: energy_fn(params, R_, neighbor=nbrs, **kw)  # noqa: E731
    raman = spectra.harmonic_raman(energy, R, masses)
    even = np.abs(raman["modes"][:, 0] + raman["modes"][:, 2]).max(1) < 1e-4  # O moves as -O: g mode
    assert even.sum() == 1
    active = raman["activities"][even][0]
    assert active > 0 and np.all(raman["activities"][~even] < 1e-6 * active)
    assert raman["intensities"][even][0] < 1e-6 * raman["intensities"].max()  # IR inactive


def test_polarizability_derivatives_match_central_differences(ethanol):
    """d alpha / dQ of every mode of the tiny ethanol model against central differences of the
    autodiff polarizability along the mode's Cartesian displacement."""
    R, masses = ethanol["R"], np.asarray(ethanol["masses"])
    energy = lambda R_, **kw: ethanol["energy"](R_, neighbor=ethanol["nbrs"].update(R_), **kw)  # noqa: E731
    field = jnp.array([0.0, 0.02, -0.01])
    out = spectra.harmonic_raman(energy, R, masses, field=field)
    alpha = jax.jit(lambda R_: response.polarizability(energy)(R_, field=field))
    displacements = out["modes"] / np.sqrt(masses)[None, :, None]  # Å per amu^1/2 Å
    h = 1e-4
    for k in (0, 10, 20):
        numeric = units.COULOMB_EV_A * (alpha(R + h * displacements[k]) - alpha(R - h * displacements[k])) / (2 * h)
        np.testing.assert_allclose(out["polarizability_derivatives"][k], numeric, rtol=1e-5, atol=1e-7)
    a2, g2 = spectra.raman_invariants(out["polarizability_derivatives"])
    np.testing.assert_allclose(out["activities"], 45 * a2 + 7 * g2)
    assert np.all(np.diff(out["frequencies"]) >= 0) and out["frequencies"].shape == (21,)
    assert np.all((out["depolarization"] >= 0) & (out["depolarization"] <= 0.75 + 1e-12))
    # the IR that comes along: |sum_i Z_i . displacement_i|^2 in km/mol, Z from `response`
    born = jax.jit(lambda R_: response.born_charges(energy)(R_, field=field))(R)
    dmu_dq = np.einsum("iab,kib->ka", born, displacements)
    np.testing.assert_allclose(out["intensities"], units.KM_MOL_PER_E2_AMU * (dmu_dq**2).sum(1), rtol=1e-8)


@pytest.mark.parametrize("dt, nu0", [(1.0, 1200.0), (4.0, 3000.0)])  # fs, cm^-1
def test_md_spectrum_integrates_to_the_harmonic_activity(dt, nu0):
    """A classical harmonic mode (<Q_dot^2> = kT) with a known d alpha / dQ: the unpolarized
    band integrates to S = 45 a'^2 + 7 gamma'^2, and vh / vv at the peak is the depolarization
    ratio of the harmonic formula; also for a CH-stretch band sampled every 4 fs, where finite
    differences for the time derivative would lose 88 % of the band."""
    T = 300.0  # K
    omega = 2 * np.pi * units.SPEED_OF_LIGHT_CM_PER_FS * nu0  # rad/fs
    kT = units.KB * T * units.FS**2  # amu Å²/fs²
    t = np.arange(16384) * dt
    rng = np.random.default_rng(0)
    derivative = rng.normal(size=(3, 3))
    derivative = 0.5 * (derivative + derivative.T)  # Å²/amu^1/2 in Å^3 units
    trajectories = []
    for phase in rng.uniform(0, 2 * np.pi, size=4):
        Q = np.sqrt(2 * kT) / omega * np.cos(omega * t + phase)  # amu^1/2 Å, <Q_dot^2> = kT
        trajectories.append((0.2 * np.eye(3) + derivative * Q[:, None, None]) / units.COULOMB_EV_A)
    out = spectra.raman_from_polarizabilities(np.stack(trajectories), dt, temperature_K=T, n_blocks=2)
    nu = out["wavenumbers"]
    band = (nu > nu0 - 150) & (nu < nu0 + 150)
    a2, g2 = spectra.raman_invariants(derivative)
    np.testing.assert_allclose(out["unpolarized"][band].sum() * (nu[1] - nu[0]), 45 * a2 + 7 * g2, rtol=0.02)
    np.testing.assert_allclose(out["isotropic"][band].sum() * (nu[1] - nu[0]), a2, rtol=0.02)
    peak = np.argmax(out["vv"])
    assert abs(nu[peak] - nu0) < 5
    np.testing.assert_allclose(out["depolarization"][peak], 3 * g2 / (45 * a2 + 4 * g2), rtol=1e-6)
    # the cross section scales every polarization the same way
    cross = spectra.raman_from_polarizabilities(np.stack(trajectories), dt, temperature_K=T, n_blocks=2,
                                                cross_section=True, laser_nm=532.0)
    factor = spectra.raman_cross_section(nu, T, 532.0)
    np.testing.assert_allclose(cross["vh"], out["vh"] * factor)
    np.testing.assert_allclose(cross["depolarization"], out["depolarization"])


def test_cross_section_factor():
    nu, T = np.array([0.0, 100.0, 1000.0, 3000.0]), 300.0
    x = units.HBAR_EV_FS * 2 * np.pi * units.SPEED_OF_LIGHT_CM_PER_FS * nu[1:] / (units.KB * T)
    harmonic = spectra.raman_cross_section(nu, T)
    np.testing.assert_allclose(harmonic[1:], 1 / (nu[1:] * (1 - np.exp(-x))))  # (n + 1) / nu
    assert harmonic[0] == 0
    classical = spectra.raman_cross_section(nu, T, quantum_correction="none")
    np.testing.assert_allclose(harmonic[1:] / classical[1:], x / (1 - np.exp(-x)))
    laser = spectra.raman_cross_section(nu, T, laser_nm=1000.0)  # 10^4 cm^-1
    np.testing.assert_allclose(laser[1:] / harmonic[1:], ((1e4 - nu[1:]) / 1e4) ** 4)
    with pytest.raises(ValueError, match="exceed the laser"):
        spectra.raman_cross_section(nu, T, laser_nm=5000.0)
    with pytest.raises(ValueError, match="quantum_correction"):
        spectra.raman_cross_section(nu, T, quantum_correction="standard")
    with pytest.raises(ValueError, match=r"\(T, 3, 3\) or \(n, T, 3, 3\)"):
        spectra.raman_from_polarizabilities(np.zeros((100, 3)), 1.0)


def test_md_records_polarizability_and_born_charges_at_frames(ethanol, tmp_path):
    energy = lambda R_, **kw: 0.05 * ethanol["energy"](R_, **kw)  # noqa: E731
    out = simulate.run(energy, ethanol["shift"], ethanol["neighbor_fn"], ethanol["R"], ethanol["masses"],
                       lambda t: jnp.array([0.0, 0.05, 0.01 * jnp.sin(t)]), steps=20, record_every=5,
                       integrator="nve", temperature_K=50.0, progress=False, record_response=True,
                       output=str(tmp_path / "traj.h5"))
    assert out["polarizability"].shape == (4, 3, 3) and out["born_charges"].shape == (4, 9, 3, 3)
    full = jax.jit(response.field_response(energy))
    for k in (0, 3):
        R = jnp.asarray(out["positions"][k])
        expected = full(R, field=out["field"][k], neighbor=ethanol["nbrs"].update(R))
        np.testing.assert_allclose(out["polarizability"][k], expected["polarizability"], rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(out["born_charges"][k], expected["born_charges"], rtol=1e-8, atol=1e-12)
    frames, _ = simulate.read_trajectory(str(tmp_path / "traj.h5"))
    np.testing.assert_array_equal(frames["polarizability"], out["polarizability"])
    with h5py.File(tmp_path / "traj.h5") as f:
        assert {k: f[k].attrs["units"] for k in simulate.RESPONSE_UNITS} == simulate.RESPONSE_UNITS
    alpha_only = simulate.run(energy, ethanol["shift"], ethanol["neighbor_fn"], ethanol["R"], ethanol["masses"],
                              lambda t: jnp.array([0.0, 0.05, 0.01 * jnp.sin(t)]), steps=20, record_every=5,
                              integrator="nve", temperature_K=50.0, progress=False,
                              record_response="polarizability")
    assert "born_charges" not in alpha_only
    np.testing.assert_allclose(alpha_only["polarizability"], out["polarizability"], rtol=1e-10, atol=1e-14)
    with pytest.raises(ValueError, match="record_response must be"):
        simulate.run(energy, ethanol["shift"], ethanol["neighbor_fn"], ethanol["R"], ethanol["masses"],
                     lambda t: jnp.zeros(3), steps=5, record_every=5, record_response="alpha")


def test_xtb_reference_raman_of_water_respects_its_symmetry():
    """GFN2-xTB by finite differences: water (C2v) has two totally symmetric modes (an
    isotropic part, rho < 3/4) and one B2 mode (the antisymmetric stretch): no isotropic part,
    so rho = 3/4 exactly (at the ASE geometry, a C2v point that is not xTB's minimum)."""
    from ase.build import molecule

    from jaxmd_efield.reference import xtb_harmonic_raman

    water = molecule("H2O")
    out = xtb_harmonic_raman(water.numbers, water.positions, water.get_masses())
    assert out["frequencies"].shape == (3,) and np.all(out["frequencies"] > 1000)
    assert np.all(out["activities"] > 0.1)
    b2 = np.argmax(out["depolarization"])
    a1 = np.delete(np.arange(3), b2)
    assert out["frequencies"][b2] > 3000  # a stretch, not the bend
    np.testing.assert_allclose(out["depolarization"][b2], 0.75, atol=1e-6)
    assert out["isotropic"][b2] < 1e-12 * out["isotropic"].max()
    assert np.all(out["depolarization"][a1] < 0.74) and np.all(out["isotropic"][a1] > 1e-3)
