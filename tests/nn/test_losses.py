"""Losses: values vs optax / brute force, gradients vs jax.grad and centered differences."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lecturenn.errors import UserError
from lecturenn.gradcheck import assert_trees_close
from lecturenn.nn import losses

N, K = 6, 4
MASK = jnp.asarray([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
CLASSIFICATION = ["softmax_cross_entropy", "multiclass_hinge"]


def make_case(name, seed=0):
    """(scores, targets) in float64, drawn by numpy (no compilation): targets are labels, reals,
    0/1 or the corrupt-window scores of max_margin."""
    rng = np.random.default_rng(seed)
    if name in CLASSIFICATION:
        return jnp.asarray(rng.normal(0, 2, (N, K))), jnp.asarray(rng.integers(0, K, N))
    if name == "squared_error":
        return jnp.asarray(rng.normal(size=(N, K))), jnp.asarray(rng.normal(size=(N, K)))
    if name == "sigmoid_binary_cross_entropy":
        return jnp.asarray(rng.normal(0, 3, (N, K))), jnp.asarray(rng.random((N, K)) < 0.4) * 1.0
    return jnp.asarray(rng.normal(size=N)), jnp.asarray(rng.normal(size=N))


@functools.cache
def evaluate(name, masked):
    """One jitted function per loss (and mask or not): value, value_and_grad, grad and jax.grad
    of the value, compiled once and reused across cases of the same shapes."""
    loss = losses.LOSSES[name]
    argnums = (0, 1) if name == "max_margin" else 0

    @jax.jit
    def run(scores, targets, mask):
        mask = mask if masked else None
        return {
            "value": loss.value(scores, targets, mask),
            "value_and_grad": loss.value_and_grad(scores, targets, mask),
            "grad": loss.grad(scores, targets, mask),
            "jax_grad": jax.grad(loss.value, argnums=argnums)(scores, targets, mask),
        }

    return run


def centered_differences(f, x, h=1e-6):
    x = np.asarray(x, np.float64)
    grad = np.zeros_like(x)
    for index in itertools.product(*map(range, x.shape)):
        plus, minus = x.copy(), x.copy()
        plus[index] += h
        minus[index] -= h
        grad[index] = (f(jnp.asarray(plus)) - f(jnp.asarray(minus))) / (2 * h)
    return grad


def brute_force(name, scores, targets, mask):
    """Per-row losses by loops over plain floats, then the masked mean."""
    s, t = np.asarray(scores), np.asarray(targets)
    rows = []
    for i in range(s.shape[0]):
        if name == "squared_error":
            rows.append(0.5 * sum((s[i, j] - t[i, j]) ** 2 for j in range(s.shape[1])))
        elif name == "multiclass_hinge":
            y = int(t[i])
            rows.append(sum(max(0.0, 1 - s[i, y] + s[i, j]) for j in range(s.shape[1]) if j != y))
        elif name == "max_margin":
            rows.append(max(0.0, 1 - s[i] + t[i]))
        elif name == "softmax_cross_entropy":
            top = s[i].max()
            rows.append(top + np.log(np.sum(np.exp(s[i] - top))) - s[i, int(t[i])])
        elif name == "sigmoid_binary_cross_entropy":
            p = 1 / (1 + np.exp(-s[i]))
            rows.append(-np.sum(t[i] * np.log(p) + (1 - t[i]) * np.log(1 - p)))
    w = np.ones(len(rows)) if mask is None else np.asarray(mask)
    return float(np.dot(w, rows) / max(w.sum(), 1.0))


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_value_matches_an_independent_reference(name, masked):
    scores, targets = make_case(name)
    mask = MASK if masked else None
    value = evaluate(name, masked)(scores, targets, MASK)["value"]
    np.testing.assert_allclose(value, brute_force(name, scores, targets, mask), rtol=1e-12)
    if name == "softmax_cross_entropy":
        per_row = np.asarray(optax.softmax_cross_entropy_with_integer_labels(scores, targets))
        w = np.ones(N) if mask is None else np.asarray(mask)
        np.testing.assert_allclose(value, np.dot(w, per_row) / max(w.sum(), 1.0), rtol=1e-12)


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_grad_matches_jax_grad(name, masked):
    out = evaluate(name, masked)(*make_case(name, seed=1), MASK)
    value, manual = out["value_and_grad"]
    np.testing.assert_allclose(value, out["value"], rtol=1e-14)
    assert_trees_close(manual, out["jax_grad"])
    jax.tree.map(np.testing.assert_array_equal, manual, out["grad"])


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_grad_matches_centered_differences(name):
    scores, targets = make_case(name, seed=2)
    run = evaluate(name, True)
    manual = run(scores, targets, MASK)["grad"]
    numeric = centered_differences(lambda s: float(run(s, targets, MASK)["value"]), scores)
    if name == "max_margin":
        numeric_c = centered_differences(lambda sc: float(run(scores, sc, MASK)["value"]), targets)
        np.testing.assert_allclose(manual[1], numeric_c, atol=1e-8)
        manual = manual[0]
    np.testing.assert_allclose(manual, numeric, atol=1e-8)


# Fixed shapes, so that the examples reuse the compiled evaluators; the masks and draws vary.
@settings(max_examples=10, deadline=None)
@given(
    name=st.sampled_from(sorted(losses.LOSSES)),
    keep=st.lists(st.booleans(), min_size=N, max_size=N),
    seed=st.integers(0, 1000),
)
def test_grad_matches_jax_grad_for_any_mask(name, keep, seed):
    out = evaluate(name, True)(*make_case(name, seed), jnp.asarray(keep, jnp.float64))
    assert_trees_close(out["grad"], out["jax_grad"])


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_all_zero_mask_gives_zero_loss_and_gradient(name):
    out = evaluate(name, True)(*make_case(name), jnp.zeros(N))
    value, grads = out["value_and_grad"]
    assert value == 0.0
    for g in jax.tree.leaves(grads):
        np.testing.assert_array_equal(g, 0.0)


def test_classification_losses_accept_extra_leading_axes():
    rng = np.random.default_rng(3)
    scores, labels = (
        jnp.asarray(rng.normal(size=(2, 3, K))),
        jnp.asarray(rng.integers(0, K, (2, 3))),
    )
    mask = jnp.asarray([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    for name in CLASSIFICATION:
        out = evaluate(name, True)(scores, labels, mask)
        flat = brute_force(name, scores.reshape(6, K), labels.reshape(6), mask.reshape(6))
        np.testing.assert_allclose(out["value"], flat, rtol=1e-14)
        assert_trees_close(out["grad"], out["jax_grad"])


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_cross_entropies_are_finite_for_huge_logits(dtype):
    @jax.jit
    def both(scores, labels, logits, bits):
        return (
            losses.softmax_cross_entropy_value_and_grad(scores, labels),
            losses.sigmoid_binary_cross_entropy_value_and_grad(logits, bits),
        )

    scores = jnp.asarray([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 999.0]], dtype)
    logits = jnp.asarray([[1000.0, -1000.0]], dtype)
    (ce, dce), (bce, dbce) = both(scores, jnp.asarray([1, 2]), logits, jnp.asarray([[0, 1]]))
    assert ce.dtype == bce.dtype == dtype
    assert np.isfinite(dce).all() and np.isfinite(dbce).all()
    np.testing.assert_allclose(ce, (2000.0 + 1.0 + np.log1p(np.exp(-1.0))) / 2, rtol=1e-6)
    np.testing.assert_allclose(bce, 2000.0, rtol=1e-6)
    np.testing.assert_allclose(dbce, [[1.0, -1.0]], rtol=1e-6)


def test_hinge_subgradient_is_zero_at_the_kink():
    # margins exactly 0: s_y - s_j = 1 for the multiclass hinge, s - s_c = 1 for max-margin.
    scores = jnp.asarray([[2.0, 1.0, -5.0]])
    np.testing.assert_array_equal(losses.multiclass_hinge_grad(scores, jnp.asarray([0])), 0.0)
    ds, ds_c = losses.max_margin_grad(jnp.asarray([3.0]), jnp.asarray([2.0]))
    np.testing.assert_array_equal(ds, 0.0)
    np.testing.assert_array_equal(ds_c, 0.0)


def test_max_margin_pushes_true_window_up_and_corrupt_window_down():
    ds, ds_c = losses.max_margin_grad(jnp.asarray([0.2, 5.0]), jnp.asarray([0.1, 0.0]))
    np.testing.assert_allclose(ds, [-0.5, 0.0])
    np.testing.assert_allclose(ds_c, [0.5, 0.0])


def test_unknown_loss_names_the_valid_ones():
    with pytest.raises(UserError, match="'nll'.*max_margin.*softmax_cross_entropy"):
        losses.get_loss("nll")
