"""Time-dependent uniform field protocols.

Each builder returns `field(t) -> (3,)` in V/Å for a time t in fs, a pure function of t built
from jax.numpy, so t may be traced (inside `scan`, `jit`, `vmap`). Directions are normalised
when the protocol is built; amplitudes are in V/Å.
"""

import jax.numpy as jnp
import numpy as np

#: cm^-1 to THz (speed of light in cm/ps).
CM_TO_THZ = 0.0299792458


def _unit(direction):
    direction = np.asarray(direction, dtype=float)
    if direction.shape != (3,) or not np.linalg.norm(direction) > 0:
        raise ValueError(f"direction must be a nonzero 3-vector, got {direction!r}")
    return jnp.asarray(direction / np.linalg.norm(direction))


def _angular_frequency(frequency_THz, wavenumber_cm):
    """rad/fs from exactly one of a frequency in THz or a wavenumber in cm^-1."""
    if (frequency_THz is None) == (wavenumber_cm is None):
        raise ValueError("give exactly one of frequency_THz and wavenumber_cm")
    f = frequency_THz if frequency_THz is not None else wavenumber_cm * CM_TO_THZ
    return 2 * np.pi * f * 1e-3


def constant(field):
    """F(t) = field (V/Å)."""
    field = jnp.asarray(field, dtype=float)
    if field.shape != (3,):
        raise ValueError(f"field must be a 3-vector in V/Å, got shape {field.shape}")
    return lambda t: field + 0.0 * t


def sinusoidal(amplitude, direction, frequency_THz=None, wavenumber_cm=None, phase=0.0):
    """F(t) = amplitude sin(omega t + phase) along direction; frequency in THz or cm^-1."""
    omega, e = _angular_frequency(frequency_THz, wavenumber_cm), _unit(direction)
    return lambda t: amplitude * jnp.sin(omega * t + phase) * e


def gaussian_pulse(amplitude, direction, center_fs, width_fs, frequency_THz=0.0,
                   wavenumber_cm=None, phase=0.0):
    """F(t) = amplitude exp(-(t - t0)^2 / (2 width^2)) cos(omega (t - t0) + phase) along
    direction: a half-cycle-free kick for omega = 0, a carrier-wave pulse otherwise."""
    if width_fs <= 0:
        raise ValueError("width_fs must be positive")
    omega = _angular_frequency(None if wavenumber_cm is not None else frequency_THz, wavenumber_cm)
    e = _unit(direction)

    def field(t):
        s = t - center_fs
        return amplitude * jnp.exp(-0.5 * (s / width_fs) ** 2) * jnp.cos(omega * s + phase) * e
    return field


def ramp(start, end, t_start_fs, t_end_fs):
    """Linear from the field `start` at t_start to `end` at t_end (V/Å), constant outside."""
    if t_end_fs <= t_start_fs:
        raise ValueError("t_end_fs must be after t_start_fs")
    start, end = constant(start)(0.0), constant(end)(0.0)

    def field(t):
        x = jnp.clip((t - t_start_fs) / (t_end_fs - t_start_fs), 0.0, 1.0)
        return start + x * (end - start)
    return field


def superpose(*protocols):
    """The sum of several protocols."""
    if not protocols:
        raise ValueError("superpose needs at least one protocol")
    return lambda t: sum(p(t) for p in protocols)
