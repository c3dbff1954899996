"""Activations: forward vs jax.nn, hand-written derivatives vs jax.grad, stability at |z| = 1000."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lecturenn.errors import UserError
from lecturenn.nn import activations as act

# Independent references: jax.nn's implementations, differentiated by jax.grad.
REFERENCES = {
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "hardtanh": jax.nn.hard_tanh,
    "softsign": jax.nn.soft_sign,
    "relu": jax.nn.relu,
    "leaky_relu": lambda z: jax.nn.leaky_relu(z, 0.01),
    "softplus": jax.nn.softplus,
    "identity": lambda z: z,
    "step": lambda z: jnp.where(z > 0, 1.0, 0.0),
}
KINKS = {"relu": (0.0,), "leaky_relu": (0.0,), "step": (0.0,), "hardtanh": (-1.0, 1.0)}
LARGE = np.array([-500.0, -50.0, -20.0, 20.0, 50.0, 500.0])


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-12)


def sample_points(name, seed=0):
    rng = np.random.default_rng(seed)
    z = np.concatenate([rng.normal(0, 3, 200), rng.uniform(-1.2, 1.2, 100), LARGE])
    for kink in KINKS.get(name, ()):
        z = z[np.abs(z - kink) > 1e-6]
    return jnp.asarray(z, jnp.float64)


def test_activation_table_has_the_lecture_activations():
    expected = {"sigmoid", "tanh", "hardtanh", "softsign", "relu", "leaky_relu", "softplus"}
    assert expected | {"identity", "step"} == set(act.ACTIVATIONS)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_forward_matches_jax_nn(name):
    z = sample_points(name)
    np.testing.assert_allclose(act.ACTIVATIONS[name].fn(z), REFERENCES[name](z), rtol=1e-12)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_derivative_matches_jax_grad(name):
    fn, grad = act.get_activation(name)
    z = sample_points(name)
    manual = grad(z, fn(z))
    for reference in (REFERENCES[name], fn):
        auto = jax.vmap(jax.grad(reference))(z)
        assert rel_err(manual, auto).max() <= 1e-7, name


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "hardtanh"])
def test_kink_derivatives_follow_jax_nn_convention(name):
    fn, grad = act.get_activation(name)
    z = jnp.asarray(KINKS[name], jnp.float64)
    auto = jax.vmap(jax.grad(REFERENCES[name]))(z)
    np.testing.assert_array_equal(grad(z, fn(z)), auto)


@settings(max_examples=15, deadline=None)
@given(
    name=st.sampled_from(sorted(REFERENCES)),
    values=st.lists(st.floats(-600, 600), min_size=1, max_size=8),
)
def test_derivative_matches_jax_grad_anywhere(name, values):
    z = jnp.asarray([v for v in values if all(abs(v - k) > 1e-9 for k in KINKS.get(name, ()))])
    if z.size == 0:
        return
    fn, grad = act.get_activation(name)
    auto = jax.vmap(jax.grad(REFERENCES[name]))(z)
    assert rel_err(grad(z, fn(z)), auto).max() <= 1e-7


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_no_overflow_at_large_inputs(name, dtype):
    fn, grad = act.get_activation(name)
    z = jnp.asarray([-1000.0, -100.0, 100.0, 1000.0], dtype)
    a = fn(z)
    assert a.dtype == dtype and grad(z, a).dtype == dtype
    assert np.isfinite(a).all() and np.isfinite(grad(z, a)).all()


def test_sigmoid_and_softplus_saturate_correctly():
    z = jnp.asarray([-1000.0, 1000.0])
    np.testing.assert_array_equal(act.sigmoid(z), [0.0, 1.0])
    np.testing.assert_array_equal(act.softplus(z), [0.0, 1000.0])


def test_softmax_matches_jax_nn_and_is_stable():
    z = jax.random.normal(jax.random.key(0), (4, 7), jnp.float64) * 5
    np.testing.assert_allclose(act.softmax(z), jax.nn.softmax(z), rtol=1e-12)
    np.testing.assert_allclose(act.softmax(z, axis=0), jax.nn.softmax(z, axis=0), rtol=1e-12)
    big = jnp.asarray([[1000.0, -1000.0, 999.0]], jnp.float32)
    p = act.softmax(big)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-6)


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_backward_matches_vjp(axis):
    k1, k2 = jax.random.split(jax.random.key(1))
    z = jax.random.normal(k1, (3, 5, 4), jnp.float64) * 3
    da = jax.random.normal(k2, z.shape, jnp.float64)
    a, vjp = jax.vjp(lambda v: jax.nn.softmax(v, axis=axis), z)
    (expected,) = vjp(da)
    manual = act.softmax_backward(act.softmax(z, axis=axis), da, axis=axis)
    np.testing.assert_allclose(manual, expected, rtol=1e-10, atol=1e-14)


def test_unknown_activation_names_the_valid_ones():
    with pytest.raises(UserError, match="'swish'.*hardtanh.*tanh"):
        act.get_activation("swish")
