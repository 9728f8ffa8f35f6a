import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmd_efield import fields


def test_protocol_values_and_tracing():
    sine = fields.sinusoidal(0.2, [0, 0, 2.0], frequency_THz=10.0)
    np.testing.assert_allclose(sine(25.0), [0, 0, 0.2])  # a quarter period of 100 fs
    np.testing.assert_allclose(fields.sinusoidal(0.2, [0, 0, 1], wavenumber_cm=1 / fields.CM_TO_THZ)(250.0),
                               [0, 0, 0.2], atol=1e-12)  # 1 THz
    pulse = fields.gaussian_pulse(0.3, [1, 0, 0], center_fs=50.0, width_fs=10.0)
    np.testing.assert_allclose(pulse(50.0), [0.3, 0, 0])
    np.testing.assert_allclose(pulse(60.0)[0], 0.3 * np.exp(-0.5))
    ramp = fields.ramp([0, 0, 0], [0, 0.4, 0], 10.0, 20.0)
    np.testing.assert_allclose([ramp(0.0)[1], ramp(15.0)[1], ramp(30.0)[1]], [0, 0.2, 0.4])
    both = fields.superpose(fields.constant([0.1, 0, 0]), ramp)
    times = jnp.linspace(0.0, 40.0, 9)
    traced = jax.jit(jax.vmap(both))(times)  # traceable, vmappable
    np.testing.assert_allclose(traced, np.stack([np.asarray(both(float(t))) for t in times]), atol=1e-12)
    assert traced.shape == (9, 3)


def test_protocol_errors():
    with pytest.raises(ValueError, match="exactly one"):
        fields.sinusoidal(0.1, [0, 0, 1])
    with pytest.raises(ValueError, match="nonzero 3-vector"):
        fields.sinusoidal(0.1, [0, 0, 0], frequency_THz=1.0)
    with pytest.raises(ValueError, match="3-vector"):
        fields.constant([0.1, 0.2])
    with pytest.raises(ValueError, match="after"):
        fields.ramp([0, 0, 0], [0, 0, 1], 5.0, 5.0)
