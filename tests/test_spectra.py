"""IR spectra against analytic cases."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxmd_efield import spectra, units

K, R0, Q = 40.0, 1.1, 0.4  # eV/Å², Å, e


def charged_bonds(pairs, charges):
    """Harmonic bonds plus fixed point charges in a field: E = sum k/2 (r - r0)² - mu.F with
    mu = sum q_i R_i, so the Born charges are q_i times the identity."""
    def energy(R, field=None):
        field = jnp.zeros(3) if field is None else field
        bonds = sum(0.5 * K * (jnp.linalg.norm(R[i] - R[j]) - R0) ** 2 for i, j in pairs)
        return bonds - jnp.dot(jnp.asarray(charges) @ R, field)
    return energy


def test_harmonic_diatomic_matches_analytic():
    masses = np.array([12.0, 16.0])
    R = np.array([[0.0, 0.0, 0.0], [0.6, 0.8, 0.0]]) * R0  # bond of length R0, along (0.6, 0.8, 0)
    out = spectra.harmonic_ir(charged_bonds([(0, 1)], [Q, -Q]), R, masses)
    reduced = masses.prod() / masses.sum()
    assert out["wavenumbers"].shape == (1,)  # 3N - 5 for a linear molecule
    np.testing.assert_allclose(out["wavenumbers"][0], np.sqrt(K / reduced) * units.WAVENUMBER_PER_SQRT_EV_A2_AMU,
                               rtol=1e-6)
    np.testing.assert_allclose(out["intensities"][0], Q**2 / reduced * units.KM_MOL_PER_E2_AMU, rtol=1e-6)


def test_harmonic_triatomic_mode_count_and_symmetric_intensity():
    masses = np.array([16.0, 1.0, 1.0])
    angle = np.deg2rad(104.5)
    R = np.array([[0, 0, 0], [R0, 0, 0], [R0 * np.cos(angle), R0 * np.sin(angle), 0]])
    energy = charged_bonds([(0, 1), (0, 2), (1, 2)], [-2 * Q, Q, Q])
    out = spectra.harmonic_ir(energy, R, masses)
    assert out["wavenumbers"].shape == (3,) and np.all(out["intensities"] >= 0)
    assert out["modes"].shape == (3, 3, 3)


def test_md_spectrum_peak_and_corrections():
    dt, nu0 = 0.5, 1000.0  # fs, cm^-1
    t = np.arange(8000) * dt
    rng = np.random.default_rng(0)
    mu = np.stack([0.1 * np.cos(2 * np.pi * units.SPEED_OF_LIGHT_CM_PER_FS * nu0 * t),
                   np.zeros_like(t), 1e-4 * rng.normal(size=t.size)], axis=1)
    wavenumbers, spectrum = spectra.ir_from_dipoles(mu, dt, n_blocks=2)
    band = (wavenumbers > 200) & (wavenumbers < 4000)
    resolution = wavenumbers[1]
    assert abs(wavenumbers[band][np.argmax(spectrum[band])] - nu0) <= resolution
    for correction in ("standard", "none"):
        _, other = spectra.ir_from_dipoles(mu, dt, n_blocks=2, quantum_correction=correction)
        x = units.HBAR_EV_FS * 2 * np.pi * units.SPEED_OF_LIGHT_CM_PER_FS * nu0 / (units.KB * 300)
        expected = (1 - np.exp(-x)) / x * (np.exp(x / 2) if correction == "standard" else 1)
        peak = np.argmin(np.abs(wavenumbers - nu0))
        np.testing.assert_allclose(other[peak] / spectrum[peak], expected, rtol=0.02)
    with pytest.raises(ValueError, match="quantum_correction"):
        spectra.ir_from_dipoles(mu, dt, quantum_correction="classical")
    with pytest.raises(ValueError, match="dipoles must be"):
        spectra.ir_from_dipoles(mu[:, :2], dt)


def test_broadening_keeps_area():
    grid = np.linspace(0, 4000, 40001)
    line = spectra.broaden([1000.0, 2000.0], [1.0, 3.0], grid, fwhm=10.0)
    np.testing.assert_allclose(np.trapezoid(line, grid), 4.0, rtol=5e-3)


def test_ensemble_spectrum_error_and_half_agreement():
    """The ensemble spectrum is the spectrum of all trajectories together; the half-ensemble
    difference is zero for two identical halves and shrinks about as 1/sqrt(K) (8x the
    replicas: about 2.8x smaller)."""
    dt, nu0 = 1.0, 1500.0
    t = np.arange(1024) * dt
    rng = np.random.default_rng(3)

    def replicas(k):
        phase = rng.uniform(0, 2 * np.pi, size=(k, 1))
        line = 0.05 * np.cos(2 * np.pi * units.SPEED_OF_LIGHT_CM_PER_FS * nu0 * t + phase)
        return np.stack([line, 0.01 * rng.normal(size=line.shape), np.zeros_like(line)], axis=-1)

    few, many = replicas(8), replicas(64)
    out = spectra.ir_ensemble(few, dt)
    wavenumbers, together = spectra.ir_from_dipoles(few, dt)
    np.testing.assert_allclose(out["spectrum"], together, rtol=1e-10, atol=1e-14)
    assert out["standard_error"].shape == together.shape and np.all(out["standard_error"] >= 0)
    assert spectra.ir_ensemble(np.concatenate([few[:4], few[:4]]), dt)["half_l1"] == 0.0
    ratio = out["half_l1"] / spectra.ir_ensemble(many, dt)["half_l1"]
    assert 1.8 < ratio < 4.5, ratio
    with pytest.raises(ValueError, match="K >= 2 replicas"):
        spectra.ir_ensemble(few[:1], dt)
