"""Initializers: empirical bounds and variances on large samples, orthogonality, lookup by name."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lecturenn.errors import UserError
from lecturenn.nn import init

KEY = jax.random.key(0)
# 60,000 draws: the sample variance has relative std √((kurtosis - 1)/n) ≈ 0.6% (Gaussian) and
# 0.4% (uniform); a 4% tolerance is more than 6 standard deviations.
DENSE = (200, 300)
CONV = (3, 3, 16, 32)


def check_uniform(w, bound, var_rtol=0.04):
    w = np.asarray(w, np.float64)
    assert np.abs(w).max() <= bound
    assert np.abs(w).max() >= 0.99 * bound
    assert abs(w.mean()) < 0.02 * bound
    np.testing.assert_allclose(w.var(), bound**2 / 3, rtol=var_rtol)


def check_normal(w, std, var_rtol=0.04):
    w = np.asarray(w, np.float64)
    assert abs(w.mean()) < 0.03 * std
    np.testing.assert_allclose(w.var(), std**2, rtol=var_rtol)
    # A Gaussian, not a uniform: about 4.55% of draws beyond 2σ (a uniform of that variance has 0).
    assert 0.035 < np.mean(np.abs(w) > 2 * std) < 0.056


def test_fans_of_dense_conv_and_vector():
    assert init.fans((200, 300)) == (200, 300)
    assert init.fans(CONV) == (3 * 3 * 16, 3 * 3 * 32)
    assert init.fans((7,)) == (7, 7)


@pytest.mark.parametrize("shape", [DENSE, CONV])
def test_glorot_uniform_bound_and_variance(shape):
    fan_in, fan_out = init.fans(shape)
    bound = math.sqrt(6 / (fan_in + fan_out))
    w = init.glorot_uniform(KEY, shape)
    assert w.shape == shape and w.dtype == jnp.float32
    check_uniform(w, bound)
    np.testing.assert_allclose(np.var(w), 2 / (fan_in + fan_out), rtol=0.04)


def test_glorot_gain_and_sigmoid_variant_scale_the_bound():
    bound = math.sqrt(6 / sum(DENSE))
    check_uniform(init.glorot_uniform(KEY, DENSE, gain=2.0), 2 * bound)
    check_uniform(init.glorot_uniform_sigmoid(KEY, DENSE), 4 * bound)


@pytest.mark.parametrize("shape", [DENSE, CONV])
def test_glorot_normal_variance(shape):
    fan_in, fan_out = init.fans(shape)
    check_normal(init.glorot_normal(KEY, shape), math.sqrt(2 / (fan_in + fan_out)))


@pytest.mark.parametrize("shape", [DENSE, CONV])
def test_he_and_fan_in_variances(shape):
    fan_in, _ = init.fans(shape)
    check_normal(init.he_normal(KEY, shape), math.sqrt(2 / fan_in))
    check_uniform(init.he_uniform(KEY, shape), math.sqrt(6 / fan_in))
    check_normal(init.normal_fan_in(KEY, shape), math.sqrt(1 / fan_in))


def test_uniform_and_normal_factories():
    check_uniform(init.uniform(0.1)(KEY, DENSE), 0.1)
    check_normal(init.normal(0.5)(KEY, DENSE), 0.5)


def test_initializers_keep_the_requested_dtype():
    settings_by_name = {"uniform": {"scale": 0.1}, "normal": {"std": 1.0}, "constant": {"value": 2}}
    for name in init.INITIALIZERS:
        w = init.get_initializer(name, **settings_by_name.get(name, {}))(KEY, (6, 6), jnp.float64)
        assert w.shape == (6, 6) and w.dtype == jnp.float64, name
    # orthogonal runs its QR in float32 for half precision, then casts back.
    assert init.orthogonal(KEY, (6, 6), jnp.bfloat16).dtype == jnp.bfloat16


def test_different_keys_give_different_draws():
    a = init.glorot_uniform(jax.random.key(1), (4, 4))
    b = init.glorot_uniform(jax.random.key(2), (4, 4))
    assert not np.allclose(a, b)


def test_identity_is_scaled_eye_and_rejects_non_square():
    np.testing.assert_array_equal(init.identity(KEY, (5, 5)), np.eye(5))
    np.testing.assert_array_equal(init.identity(KEY, (3, 3), scale=0.5), 0.5 * np.eye(3))
    with pytest.raises(UserError, match=r"square.*\(3, 4\)"):
        init.identity(KEY, (3, 4))


@pytest.mark.parametrize("shape", [(7, 3), (3, 7), (6, 6)])
def test_orthogonal_rows_or_columns_are_orthonormal(shape):
    rows, cols = shape
    for seed in range(3):
        w = np.asarray(init.orthogonal(jax.random.key(seed), shape, jnp.float64))
        gram = w.T @ w if rows >= cols else w @ w.T
        np.testing.assert_allclose(gram, np.eye(min(rows, cols)), atol=1e-12)


def test_orthogonal_conv_kernel_and_gain():
    w = np.asarray(init.orthogonal(KEY, (3, 3, 4, 8), jnp.float64, gain=2.0)).reshape(36, 8)
    np.testing.assert_allclose(w.T @ w, 4.0 * np.eye(8), atol=1e-12)
    with pytest.raises(UserError, match="matrix"):
        init.orthogonal(KEY, (5,))


def test_orthogonal_entries_are_spread_like_a_haar_matrix():
    # Entries of a Haar-random n×n orthogonal matrix have mean 0 and variance 1/n.
    w = np.asarray(init.orthogonal(KEY, (200, 200), jnp.float64))
    np.testing.assert_allclose(w.var(), 1 / 200, rtol=0.03)
    assert abs(w.mean()) < 1e-3


def test_zeros_and_constant():
    np.testing.assert_array_equal(init.zeros(KEY, (2, 3)), np.zeros((2, 3)))
    np.testing.assert_array_equal(init.constant(1.5)(KEY, (4,)), np.full(4, 1.5))


def test_output_bias_gives_the_class_prior_under_softmax():
    counts = np.array([500, 300, 150, 50])
    b = init.output_bias_from_frequencies(counts, jnp.float64)
    np.testing.assert_allclose(jax.nn.softmax(b), counts / counts.sum(), rtol=1e-12)
    smoothed = init.output_bias_from_frequencies([3, 0, 1], jnp.float64, smoothing=1.0)
    np.testing.assert_allclose(jax.nn.softmax(smoothed), np.array([4, 1, 2]) / 7, rtol=1e-12)
    with pytest.raises(UserError, match=r"classes \[1\].*smoothing"):
        init.output_bias_from_frequencies([3, 0, 1])


def test_get_initializer_binds_settings():
    bound = init.get_initializer("glorot_uniform", gain=3.0)(KEY, (8, 8))
    np.testing.assert_array_equal(bound, init.glorot_uniform(KEY, (8, 8), gain=3.0))
    np.testing.assert_array_equal(
        init.get_initializer("uniform", scale=0.04)(KEY, (8, 8)), init.uniform(0.04)(KEY, (8, 8))
    )
    assert init.get_initializer("he_normal") is init.he_normal
    expected = {"glorot_uniform", "glorot_uniform_sigmoid", "glorot_normal", "he_normal"}
    expected |= {"he_uniform", "normal_fan_in", "uniform", "normal", "identity", "orthogonal"}
    assert set(init.INITIALIZERS) == expected | {"zeros", "constant"}


def test_get_initializer_errors_name_the_fix():
    with pytest.raises(UserError, match="'xavier'.*glorot_uniform"):
        init.get_initializer("xavier")
    with pytest.raises(UserError, match="no setting scale.*gain"):
        init.get_initializer("glorot_uniform", scale=0.1)
    with pytest.raises(UserError, match="needs the setting scale"):
        init.get_initializer("uniform")
