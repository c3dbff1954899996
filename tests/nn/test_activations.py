"""Activations: forward vs jax.nn, hand-written derivatives vs jax.grad, stability at |z| = 1000."""

import functools

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


def away_from_kinks(name, z):
    """Nudge points within 1e-6 of a kink away from it (keeps the array's shape fixed)."""
    z = np.asarray(z, np.float64).copy()
    for kink in KINKS.get(name, ()):
        z[np.abs(z - kink) <= 1e-6] = kink + 0.5
    return z


def sample_points(name, seed=0):
    rng = np.random.default_rng(seed)
    z = np.concatenate([rng.normal(0, 3, 200), rng.uniform(-1.2, 1.2, 100), LARGE])
    return away_from_kinks(name, z)


@functools.cache
def evaluate(name):
    """One jitted function per activation (one compile, reused for every array of a shape):
    ours f(z) and f'(z), the reference's value, jax.grad of the reference and of our forward."""
    fn, grad = act.get_activation(name)

    @jax.jit
    def run(z):
        a = fn(z)
        by_autodiff = [jax.vmap(jax.grad(f))(z) for f in (REFERENCES[name], fn)]
        return a, grad(z, a), REFERENCES[name](z), by_autodiff

    return run


def test_activation_table_has_the_lecture_activations():
    expected = {"sigmoid", "tanh", "hardtanh", "softsign", "relu", "leaky_relu", "softplus"}
    assert expected | {"identity", "step"} == set(act.ACTIVATIONS)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_forward_and_derivative_match_jax_nn_and_jax_grad(name):
    a, manual, reference, by_autodiff = evaluate(name)(sample_points(name))
    np.testing.assert_allclose(a, reference, rtol=1e-12)
    for auto in by_autodiff:
        assert rel_err(manual, auto).max() <= 1e-7, name


def test_module_level_functions_are_the_table_entries():
    for name, (fn, grad) in act.ACTIVATIONS.items():
        assert fn is getattr(act, name) and grad is getattr(act, f"{name}_grad")


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "hardtanh"])
def test_kink_derivatives_follow_jax_nn_convention(name):
    kinks = np.resize(np.asarray(KINKS[name], np.float64), 8)
    _, manual, _, (auto, _) = evaluate(name)(kinks)
    np.testing.assert_array_equal(manual, auto)


@settings(max_examples=15, deadline=None)
@given(
    name=st.sampled_from(sorted(REFERENCES)),
    values=st.lists(st.floats(-600, 600), min_size=8, max_size=8),
)
def test_derivative_matches_jax_grad_anywhere(name, values):
    _, manual, _, (auto, _) = evaluate(name)(away_from_kinks(name, values))
    assert rel_err(manual, auto).max() <= 1e-7


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_no_overflow_at_large_inputs(dtype):
    @jax.jit
    def all_activations(z):
        return {name: (fn(z), grad(z, fn(z))) for name, (fn, grad) in act.ACTIVATIONS.items()}

    z = jnp.asarray([-1000.0, -100.0, 100.0, 1000.0], dtype)
    for name, (a, da) in all_activations(z).items():
        assert a.dtype == dtype and da.dtype == dtype, name
        assert np.isfinite(a).all() and np.isfinite(da).all(), name


def test_sigmoid_and_softplus_saturate_correctly():
    z = jnp.asarray([-1000.0, 1000.0])
    np.testing.assert_array_equal(act.sigmoid(z), [0.0, 1.0])
    np.testing.assert_array_equal(act.softplus(z), [0.0, 1000.0])


def test_softmax_matches_jax_nn_and_is_stable():
    z = jnp.asarray(np.random.default_rng(0).normal(0, 5, (4, 7)))
    both = jax.jit(
        lambda v, axis: (act.softmax(v, axis), jax.nn.softmax(v, axis)), static_argnums=1
    )
    for axis in (0, -1):
        ours, theirs = both(z, axis)
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    p = act.softmax(jnp.asarray([[1000.0, -1000.0, 999.0]], jnp.float32))
    assert p.dtype == jnp.float32 and np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-6)


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_backward_matches_vjp(axis):
    rng = np.random.default_rng(1)
    z, da = jnp.asarray(rng.normal(0, 3, (3, 5, 4))), jnp.asarray(rng.normal(size=(3, 5, 4)))

    @jax.jit
    def both(z, da):
        _, vjp = jax.vjp(lambda v: jax.nn.softmax(v, axis=axis), z)
        return act.softmax_backward(act.softmax(z, axis=axis), da, axis=axis), vjp(da)[0]

    manual, expected = both(z, da)
    np.testing.assert_allclose(manual, expected, rtol=1e-10, atol=1e-14)


def test_unknown_activation_names_the_valid_ones():
    with pytest.raises(UserError, match="'swish'.*hardtanh.*tanh"):
        act.get_activation("swish")
