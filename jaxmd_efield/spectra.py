"""IR spectra: from dipole trajectories (autocorrelation of the dipole derivative) and in the
harmonic approximation (normal modes of the model Hessian, intensities from the atomic polar
tensors). Wavenumbers in cm^-1."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxmd_efield import response, units

QUANTUM_CORRECTIONS = ("harmonic", "standard", "none")
WINDOWS = ("hann", "gaussian", "none")


def _lag_window(kind, n):
    lags = np.arange(n) / n
    if kind == "hann":
        return np.cos(0.5 * np.pi * lags) ** 2
    if kind == "gaussian":
        return np.exp(-0.5 * (lags / 0.3) ** 2)
    if kind == "none":
        return np.ones(n)
    raise ValueError(f"window must be one of {WINDOWS}, got {kind!r}")


def ir_from_dipoles(dipoles, dt_fs, temperature_K=300.0, window="hann", zero_pad=4, n_blocks=1,
                    quantum_correction="harmonic"):
    """IR absorption from dipole trajectories.

    dipoles: (T, 3) or (n_trajectories, T, 3), e·Å, sampled every dt_fs fs. Each trajectory is
    cut into n_blocks blocks; the autocorrelation C(tau) = <mu_dot(0).mu_dot(tau)> of the
    dipole time derivative (central differences) is computed by FFT with zero padding (no
    wrap-around), averaged over blocks and trajectories, multiplied by a lag window, and
    cosine-transformed: I(nu) = 2 int_0^inf C(tau) w(tau) cos(2 pi c nu tau) dtau.

    quantum_correction: "harmonic" (default: alpha(w) n(w) proportional to beta I(nu)),
    "standard" (Schofield, exp(beta hbar w / 2)) or "none" (the classical correlation function
    as if quantum); the latter two are returned relative to the harmonic one:
    I(nu) * (1 - exp(-x)) / x * [exp(x/2) for "standard"], x = hbar w / kT.

    Returns (wavenumbers in cm^-1, spectrum in (e·Å)²/fs): proportional to alpha(w) n(w) with
    the constant 2 pi beta / (3 c V eps0).
    """
    if quantum_correction not in QUANTUM_CORRECTIONS:
        raise ValueError(f"quantum_correction must be one of {QUANTUM_CORRECTIONS}")
    mu = np.asarray(dipoles, dtype=float)
    mu = mu[None] if mu.ndim == 2 else mu
    if mu.ndim != 3 or mu.shape[-1] != 3:
        raise ValueError(f"dipoles must be (T, 3) or (n, T, 3), got {np.shape(dipoles)}")
    length = mu.shape[1] // n_blocks
    if length < 8:
        raise ValueError(f"blocks of {length} frames are too short for a spectrum")
    blocks = mu[:, : length * n_blocks].reshape(-1, length, 3)
    mu_dot = np.gradient(blocks, dt_fs, axis=1)
    n_fft = int(2 ** np.ceil(np.log2(zero_pad * length)))
    power = np.abs(np.fft.rfft(mu_dot, n=n_fft, axis=1)) ** 2
    acf = np.fft.irfft(power, n=n_fft, axis=1)[:, :length].sum(axis=-1).mean(axis=0)
    acf = acf / (length - np.arange(length)) * _lag_window(window, length)
    weights = np.ones(length)
    weights[0] = 0.5  # trapezoid: the tau = 0 term once in the symmetric transform
    spectrum = 2 * dt_fs * np.fft.rfft(acf * weights, n=n_fft).real
    wavenumbers = np.fft.rfftfreq(n_fft, dt_fs) / units.SPEED_OF_LIGHT_CM_PER_FS
    if quantum_correction != "harmonic":
        x = units.HBAR_EV_FS * 2 * np.pi * units.SPEED_OF_LIGHT_CM_PER_FS * wavenumbers / (
            units.KB * temperature_K)
        factor = np.where(x > 1e-12, -np.expm1(-x) / np.maximum(x, 1e-12), 1.0)
        spectrum = spectrum * factor * (np.exp(x / 2) if quantum_correction == "standard" else 1.0)
    return wavenumbers, spectrum


def ir_ensemble(dipoles, dt_fs, band=(400.0, 3800.0), **kwargs):
    """IR absorption averaged over an ensemble of independent trajectories, with its
    uncertainty.

    dipoles: (K, T, 3) or (K, S, T, 3) e·Å: K replicas (each of S segments), every dt_fs fs;
    kwargs go to `ir_from_dipoles` (window, n_blocks, quantum correction, temperature_K).
    Each replica's spectrum is computed alone; their mean is the ensemble spectrum (equal to
    `ir_from_dipoles` of all trajectories together) and their standard deviation / sqrt(K) its
    standard error. As a convergence check, the spectra of the first and second half of the
    replicas are compared over `band` (cm^-1): relative L1 difference
    sum |I_a - I_b| / sum (I_a + I_b) / 2 (0: identical; it shrinks as 1/sqrt(K)).

    Returns dict(wavenumbers (cm^-1), spectrum, standard_error, halves (2, n), half_l1)."""
    mu = np.asarray(dipoles, dtype=float)
    if mu.ndim not in (3, 4) or len(mu) < 2:
        raise ValueError(f"dipoles must be (K, T, 3) or (K, S, T, 3) with K >= 2 replicas, got "
                         f"{np.shape(dipoles)}")
    per_replica = [ir_from_dipoles(m, dt_fs, **kwargs) for m in mu]
    wavenumbers = per_replica[0][0]
    spectra = np.stack([s for _, s in per_replica])
    half = len(spectra) // 2
    halves = np.stack([spectra[:half].mean(0), spectra[half:2 * half].mean(0)])
    inside = (wavenumbers >= band[0]) & (wavenumbers <= band[1])
    half_l1 = np.abs(halves[0] - halves[1])[inside].sum() / (halves.mean(0)[inside].sum())
    return dict(wavenumbers=wavenumbers, spectrum=spectra.mean(0),
                standard_error=spectra.std(0, ddof=1) / np.sqrt(len(spectra)), halves=halves,
                half_l1=float(half_l1))


def _internal_basis(R, masses):
    """Orthonormal basis (3N, 3N - 6 or 3N - 5) of mass-weighted displacements orthogonal to
    rigid translations and rotations."""
    R = np.asarray(R, dtype=float)
    sqrt_m = np.sqrt(np.asarray(masses, dtype=float))
    centered = R - (masses[:, None] * R).sum(0) / masses.sum()
    rigid = []
    for a in range(3):
        e = np.zeros(3)
        e[a] = 1.0
        rigid.append((sqrt_m[:, None] * e).ravel())
        rigid.append((sqrt_m[:, None] * np.cross(e, centered)).ravel())
    u, s, _ = np.linalg.svd(np.stack(rigid, axis=1), full_matrices=True)
    rank = int(np.sum(s > 1e-6 * s.max()))  # 6, or 5 for a linear molecule
    return u[:, rank:]


def harmonic_ir(energy_fn, R, masses, field=None, **kwargs):
    """Harmonic IR of `energy_fn(R, field=..., **kwargs)` at positions R (Å).

    Hessian by autodiff, mass-weighted, rigid-body motions projected out; intensities from the
    Born charges (atomic polar tensors dmu/dR, autodiff):
    A_k = N_A / (12 eps0 c²) |sum_i Z_i e_ki / sqrt(m_i)|².
    Returns dict(wavenumbers (cm^-1; imaginary modes negative), intensities (km/mol),
    modes (n_modes, N, 3): mass-weighted unit eigenvectors).
    Meaningful at a stationary point of E(R, field).
    """
    R = jnp.asarray(R)
    masses = np.asarray(masses, dtype=float)
    n = R.shape[0]

    @jax.jit  # un-jitted e3nn code is slow: 132 s eager vs 18 s jitted for ethanol
    def second_derivatives(flat_R, field, kwargs):
        hessian = jax.hessian(lambda x: energy_fn(x.reshape(n, 3), field=field, **kwargs))(flat_R)
        return hessian, response.born_charges(energy_fn)(flat_R.reshape(n, 3), field=field, **kwargs)

    hessian, born = (np.asarray(x, dtype=float) for x in second_derivatives(R.ravel(), field, kwargs))
    inv_sqrt_m = np.repeat(1 / np.sqrt(masses), 3)
    basis = _internal_basis(R, masses)
    eigenvalues, vectors = np.linalg.eigh(basis.T @ (hessian * np.outer(inv_sqrt_m, inv_sqrt_m)) @ basis)
    modes = (basis @ vectors).T
    wavenumbers = np.sign(eigenvalues) * np.sqrt(np.abs(eigenvalues)) * units.WAVENUMBER_PER_SQRT_EV_A2_AMU
    dmu_dq = np.einsum("iab,kib->ka", born, (modes * inv_sqrt_m).reshape(-1, n, 3))
    return dict(wavenumbers=wavenumbers, intensities=units.KM_MOL_PER_E2_AMU * (dmu_dq**2).sum(1),
                modes=modes.reshape(-1, n, 3))


def broaden(wavenumbers, intensities, grid, fwhm=10.0):
    """Lorentzian-broadened stick spectrum on `grid` (cm^-1); each line keeps its area."""
    gamma = 0.5 * fwhm
    lines = gamma / np.pi / ((np.asarray(grid)[:, None] - np.asarray(wavenumbers)[None]) ** 2 + gamma**2)
    return lines @ np.asarray(intensities)
