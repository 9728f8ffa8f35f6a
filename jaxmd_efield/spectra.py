"""Vibrational spectra. IR: from dipole trajectories (autocorrelation of the dipole derivative)
and in the harmonic approximation (normal modes of the model Hessian, intensities from the
atomic polar tensors). Raman: from polarizability trajectories and in the harmonic
approximation (polarizability derivatives by autodiff). Wavenumbers in cm^-1."""

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


def _derivative_spectrum(signal, dt_fs, window, zero_pad, n_blocks):
    """(wavenumbers cm^-1, D) with D(nu) = (2 pi c nu)^2 2 int_0^inf C(tau) w(tau) cos(2 pi c nu
    tau) dtau, the spectrum of C(tau) = <dx(0).dx(tau)> (dx: x less its block mean, summed over
    the components of x) times omega^2: the spectrum of <x_dot(0).x_dot(tau)>, with the time
    derivative taken exactly in the frequency domain (finite differences would damp the bands
    near the Nyquist frequency: by 50 % at 3000 cm^-1 when sampled every 2.5 fs).

    signal: (n, T, C) n trajectories of C components every dt_fs fs, each cut into n_blocks
    blocks. C(tau) by FFT with zero padding (no wrap-around), averaged over blocks and
    trajectories; w the lag window."""
    length = signal.shape[1] // n_blocks
    if length < 8:
        raise ValueError(f"blocks of {length} frames are too short for a spectrum")
    blocks = signal[:, : length * n_blocks].reshape(-1, length, signal.shape[-1])
    blocks = blocks - blocks.mean(axis=1, keepdims=True)
    n_fft = int(2 ** np.ceil(np.log2(zero_pad * length)))
    power = np.abs(np.fft.rfft(blocks, n=n_fft, axis=1)) ** 2
    acf = np.fft.irfft(power, n=n_fft, axis=1)[:, :length].sum(axis=-1).mean(axis=0)
    acf = acf / (length - np.arange(length)) * _lag_window(window, length)
    weights = np.ones(length)
    weights[0] = 0.5  # trapezoid: the tau = 0 term once in the symmetric transform
    frequencies = np.fft.rfftfreq(n_fft, dt_fs)  # 1/fs
    spectrum = (2 * np.pi * frequencies) ** 2 * 2 * dt_fs * np.fft.rfft(acf * weights, n=n_fft).real
    return frequencies / units.SPEED_OF_LIGHT_CM_PER_FS, spectrum


def _reduced_frequency(wavenumbers, temperature_K):
    """x = h c nu / kT (dimensionless) for wavenumbers in cm^-1."""
    return units.HBAR_EV_FS * 2 * np.pi * units.SPEED_OF_LIGHT_CM_PER_FS * np.asarray(wavenumbers) / (
        units.KB * temperature_K)


def ir_from_dipoles(dipoles, dt_fs, temperature_K=300.0, window="hann", zero_pad=4, n_blocks=1,
                    quantum_correction="harmonic"):
    """IR absorption from dipole trajectories.

    dipoles: (T, 3) or (n_trajectories, T, 3), e·Å, sampled every dt_fs fs. Each trajectory is
    cut into n_blocks blocks; the autocorrelation C(tau) = <mu(0).mu(tau)> (block mean removed)
    is computed by FFT with zero padding (no wrap-around), averaged over blocks and
    trajectories, multiplied by a lag window, cosine-transformed and multiplied by omega^2, the
    spectrum of the dipole derivative: I(nu) = omega^2 2 int_0^inf C(tau) w(tau) cos(omega tau)
    dtau, omega = 2 pi c nu (the time derivative taken exactly; sampling every dt_fs resolves
    nu < 1 / (2 c dt_fs), 8300 cm^-1 at 2 fs).

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
    wavenumbers, spectrum = _derivative_spectrum(mu, dt_fs, window, zero_pad, n_blocks)
    if quantum_correction != "harmonic":
        x = _reduced_frequency(wavenumbers, temperature_K)
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
    return dict(wavenumbers=wavenumbers, spectrum=spectra.mean(0),
                standard_error=spectra.std(0, ddof=1) / np.sqrt(len(spectra)), halves=halves,
                half_l1=relative_l1(wavenumbers, *halves, band))


def relative_l1(wavenumbers, a, b, band=(400.0, 3800.0)):
    """sum |a - b| / sum (a + b) / 2 over `band` (cm^-1): how far two spectra (e.g. of the two
    halves of an ensemble) differ (0: identical)."""
    inside = (wavenumbers >= band[0]) & (wavenumbers <= band[1])
    return float(np.abs(a - b)[inside].sum() / (0.5 * (a + b))[inside].sum())


def raman_invariants(tensor):
    """(a^2, gamma^2) of (..., 3, 3) tensors (symmetrised first): the square of the isotropic
    part a = tr/3 and the anisotropy gamma^2 = 1/2 [(xx - yy)^2 + (yy - zz)^2 + (zz - xx)^2
    + 6 (xy^2 + yz^2 + zx^2)] = 3/2 b:b, b the traceless part (Long, The Raman Effect, 2002)."""
    t = np.asarray(tensor, dtype=float)
    t = 0.5 * (t + np.swapaxes(t, -1, -2))
    a = np.trace(t, axis1=-2, axis2=-1) / 3
    b = t - a[..., None, None] * np.eye(3)
    return a**2, 1.5 * (b * b).sum((-2, -1))


def raman_cross_section(wavenumbers, temperature_K=300.0, laser_nm=None, quantum_correction="harmonic"):
    """Factor (relative units, cm) turning Raman activities S (Å^4/amu) at Stokes shifts nu
    (cm^-1) into scattering cross sections (Polavarapu, J. Phys. Chem. 94, 8106 (1990)):
    (nu_L - nu)^4 / nu_L^4 (only with an excitation wavelength `laser_nm`) times
    1 / (nu (1 - exp(-x))), x = h c nu / kT: the harmonic oscillator's (n(nu) + 1) h / (8 pi^2 c
    nu) per unit activity, the harmonic quantum correction; with quantum_correction="none" the
    classical limit 1 / (nu x). Zero at nu <= 0."""
    if quantum_correction not in ("harmonic", "none"):
        raise ValueError(f"quantum_correction must be 'harmonic' or 'none', got {quantum_correction!r}")
    nu = np.asarray(wavenumbers, dtype=float)
    safe = np.where(nu > 0, nu, 1.0)
    x = _reduced_frequency(safe, temperature_K)
    factor = 1 / (safe * (-np.expm1(-x) if quantum_correction == "harmonic" else x))
    if laser_nm is not None:
        laser = 1e7 / laser_nm
        if np.any(nu >= laser):
            raise ValueError(f"Stokes shifts up to {nu.max():.0f} cm^-1 exceed the laser's "
                             f"{laser:.0f} cm^-1 ({laser_nm} nm)")
        factor = factor * ((laser - nu) / laser) ** 4
    return np.where(nu > 0, factor, 0.0)


def raman_from_polarizabilities(polarizabilities, dt_fs, temperature_K=300.0, window="hann",
                                zero_pad=4, n_blocks=1, cross_section=False, laser_nm=None,
                                quantum_correction="harmonic"):
    """Raman spectra from polarizability trajectories (e.g. `simulate.run(record_response=True)`).

    polarizabilities: (T, 3, 3) or (n, T, 3, 3) e·Å²/V every dt_fs fs; n trajectories or
    replicas, each cut into n_blocks blocks, are averaged as in `ir_from_dipoles` (same lag
    window, zero padding, derivative correlation functions). With alpha in Å^3 (alpha / 4 pi
    eps0), a its isotropic part and b its traceless part (Thomas, Brehm, Kirchner, PCCP 15,
    6608 (2013)):

      isotropic(nu)   = 2c / kT * FT <a_dot(0) a_dot(t)>
      anisotropic(nu) = 2c / kT * FT 3/2 <b_dot(0):b_dot(t)>        (gamma^2 of `raman_invariants`)

    FT as in `ir_from_dipoles`, c in cm/fs and kT in amu Å²/fs², so both are densities in
    Å^4/amu per cm^-1: for classical harmonic motion the band of normal mode k integrates to
    its a'^2 and gamma'^2 (derivatives along the mass-weighted mode, as in `harmonic_raman`).
    From these, for linearly polarized light in 90-degree scattering:

      vv (polarized)        45 isotropic + 4 anisotropic
      vh (depolarized)      3 anisotropic
      unpolarized           45 isotropic + 7 anisotropic   (a band integrates to the activity S)
      depolarization        vh / vv

    cross_section=True multiplies vv, vh and unpolarized by `raman_cross_section` (temperature,
    optional laser_nm, quantum_correction "harmonic" (default) or "none"), turning activity
    densities into Stokes intensities (relative units).

    Returns dict(wavenumbers (cm^-1), isotropic, anisotropic, vv, vh, unpolarized, depolarization).
    """
    alpha = np.asarray(polarizabilities, dtype=float) * units.COULOMB_EV_A
    alpha = alpha[None] if alpha.ndim == 3 else alpha
    if alpha.ndim != 4 or alpha.shape[-2:] != (3, 3):
        raise ValueError(f"polarizabilities must be (T, 3, 3) or (n, T, 3, 3), got {np.shape(polarizabilities)}")
    alpha = 0.5 * (alpha + np.swapaxes(alpha, -1, -2))
    iso = np.trace(alpha, axis1=-2, axis2=-1) / 3
    traceless = (alpha - iso[..., None, None] * np.eye(3)).reshape(*alpha.shape[:2], 9)
    per_activity = 2 * units.SPEED_OF_LIGHT_CM_PER_FS / (units.KB * temperature_K * units.FS**2)
    wavenumbers, isotropic = _derivative_spectrum(iso[..., None], dt_fs, window, zero_pad, n_blocks)
    _, anisotropic = _derivative_spectrum(np.sqrt(1.5) * traceless, dt_fs, window, zero_pad, n_blocks)
    isotropic, anisotropic = per_activity * isotropic, per_activity * anisotropic
    out = dict(vv=45 * isotropic + 4 * anisotropic, vh=3 * anisotropic,
               unpolarized=45 * isotropic + 7 * anisotropic)
    scale = np.abs(out["vv"]).max()
    depolarization = np.where(out["vv"] > 1e-9 * scale, out["vh"] / np.where(out["vv"] > 0, out["vv"], 1), np.nan)
    if cross_section:
        factor = raman_cross_section(wavenumbers, temperature_K, laser_nm, quantum_correction)
        out = {k: v * factor for k, v in out.items()}
    return dict(wavenumbers=wavenumbers, isotropic=isotropic, anisotropic=anisotropic, **out,
                depolarization=depolarization)


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


def _normal_modes(hessian, R, masses):
    """(wavenumbers cm^-1 (imaginary modes negative), mass-weighted unit modes (n_modes, 3N),
    Cartesian displacements per unit normal coordinate (n_modes, N, 3), Å / (amu^1/2 Å)) of
    a Cartesian Hessian (3N, 3N) eV/Å², rigid-body motions projected out."""
    inv_sqrt_m = np.repeat(1 / np.sqrt(masses), 3)
    basis = _internal_basis(R, masses)
    eigenvalues, vectors = np.linalg.eigh(basis.T @ (hessian * np.outer(inv_sqrt_m, inv_sqrt_m)) @ basis)
    modes = (basis @ vectors).T
    wavenumbers = np.sign(eigenvalues) * np.sqrt(np.abs(eigenvalues)) * units.WAVENUMBER_PER_SQRT_EV_A2_AMU
    return wavenumbers, modes, (modes * inv_sqrt_m).reshape(len(modes), -1, 3)


def _ir_intensities(born_charges, displacements):
    """IR intensities (km/mol) N_A / (12 eps0 c²) |dmu/dQ|² of modes with Cartesian
    displacements (n_modes, N, 3) per unit normal coordinate, from Born charges (N, 3, 3) e."""
    dmu_dq = np.einsum("iab,kib->ka", np.asarray(born_charges, dtype=float), displacements)
    return units.KM_MOL_PER_E2_AMU * (dmu_dq**2).sum(1)


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
    wavenumbers, modes, displacements = _normal_modes(hessian, R, masses)
    return dict(wavenumbers=wavenumbers, intensities=_ir_intensities(born, displacements),
                modes=modes.reshape(-1, n, 3))


def harmonic_raman(energy_fn, R, masses, field=None, **kwargs):
    """Harmonic Raman of `energy_fn(R, field=..., **kwargs)` at positions R (Å), all by autodiff.

    Normal modes as in `harmonic_ir`; polarizability derivatives d alpha_ab / dR_ic =
    -d3E / dF_a dF_b dR_ic from two forward-mode field derivatives of the forces (one jitted
    program with the Hessian), in Å^3 (alpha / 4 pi eps0) per Å, projected on each mode's
    mass-weighted displacement: alpha'_k in Å²/amu^1/2. With a'^2 and gamma'^2 its invariants
    (`raman_invariants`), the conventions of quantum-chemistry codes (Gaussian, ORCA):

      activities      S = 45 a'^2 + 7 gamma'^2                      Å^4/amu
      depolarization  rho = 3 gamma'^2 / (45 a'^2 + 4 gamma'^2)      linearly polarized light
                      (0 to 3/4; nan for a mode with no activity)

    Returns dict(frequencies (cm^-1, ascending; imaginary negative), activities, depolarization,
    isotropic (a'^2), anisotropic (gamma'^2), polarizability_derivatives (n_modes, 3, 3),
    modes (n_modes, N, 3), intensities (IR, km/mol, as `harmonic_ir`: the Born charges come
    with the same program)). `raman_cross_section` turns activities into cross sections.
    Meaningful at a stationary point of E(R, field).
    """
    R = jnp.asarray(R)
    n = R.shape[0]
    field = jnp.zeros(3, R.dtype) if field is None else jnp.asarray(field, R.dtype)

    @jax.jit
    def derivatives(flat_R, field, kwargs):
        hessian = jax.hessian(lambda x: energy_fn(x.reshape(n, 3), field=field, **kwargs))(flat_R)
        # d/dF_b of Z[i, a, c] = d2 f_ic / dF_a dF_b = d alpha_ab / dR_ic; Z itself on the way
        born = lambda F: response.born_charges(energy_fn)(flat_R.reshape(n, 3), field=F, **kwargs)  # noqa: E731
        dZ_dF, Z = jax.jacfwd(lambda F: (born(F),) * 2, has_aux=True)(field)
        return hessian, jnp.einsum("iacb->abic", dZ_dF), Z

    hessian, dalpha_dR, born_charges = derivatives(R.ravel(), field, kwargs)
    return raman_modes(hessian, dalpha_dR, R, masses, born_charges)


def raman_modes(hessian, polarizability_derivatives, R, masses, born_charges=None):
    """Harmonic Raman from second derivatives however obtained (autodiff in `harmonic_raman`,
    finite differences in `reference.xtb_harmonic_raman`): Cartesian Hessian (3N, 3N) eV/Å²,
    polarizability_derivatives (3, 3, N, 3) d alpha_ab / dR_ic in e·Å/V, at R (N, 3) Å with
    masses (N,) amu; with Born charges (N, 3, 3) e also the IR intensities. Returns the dict of
    `harmonic_raman`."""
    R, masses = np.asarray(R, dtype=float), np.asarray(masses, dtype=float)
    frequencies, modes, displacements = _normal_modes(np.asarray(hessian, dtype=float), R, masses)
    ir = {} if born_charges is None else dict(intensities=_ir_intensities(born_charges, displacements))
    dalpha_dq = units.COULOMB_EV_A * np.einsum("abic,kic->kab", np.asarray(polarizability_derivatives, float),
                                               displacements)
    isotropic, anisotropic = raman_invariants(dalpha_dq)
    activities = 45 * isotropic + 7 * anisotropic
    with np.errstate(invalid="ignore", divide="ignore"):
        depolarization = np.where(activities > 1e-12 * max(activities.max(), 1e-30),
                                  3 * anisotropic / (45 * isotropic + 4 * anisotropic), np.nan)
    return dict(frequencies=frequencies, activities=activities, depolarization=depolarization,
                isotropic=isotropic, anisotropic=anisotropic, polarizability_derivatives=dalpha_dq,
                modes=modes.reshape(len(modes), -1, 3), **ir)


def broaden(wavenumbers, intensities, grid, fwhm=10.0):
    """Lorentzian-broadened stick spectrum on `grid` (cm^-1); each line keeps its area."""
    gamma = 0.5 * fwhm
    lines = gamma / np.pi / ((np.asarray(grid)[:, None] - np.asarray(wavenumbers)[None]) ** 2 + gamma**2)
    return lines @ np.asarray(intensities)
