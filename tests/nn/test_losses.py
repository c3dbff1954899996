"""Losses: values vs optax / brute force, gradients vs jax.grad and centered differences."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lecturenn.errors import UserError
from lecturenn.nn import losses

N, K = 6, 4
MASK = jnp.asarray([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
CLASSIFICATION = ["softmax_cross_entropy", "multiclass_hinge"]
ELEMENTWISE = ["squared_error", "sigmoid_binary_cross_entropy"]


def make_case(name, seed=0, n=N, k=K):
    """(scores, targets) in float64: targets are labels, reals, 0/1 or corrupt-window scores."""
    k1, k2 = jax.random.split(jax.random.key(seed))
    if name in CLASSIFICATION:
        return jax.random.normal(k1, (n, k)) * 2, jax.random.randint(k2, (n,), 0, k)
    if name == "squared_error":
        return jax.random.normal(k1, (n, k)), jax.random.normal(k2, (n, k))
    if name == "sigmoid_binary_cross_entropy":
        return jax.random.normal(k1, (n, k)) * 3, jax.random.bernoulli(k2, 0.4, (n, k)) * 1.0
    return jax.random.normal(k1, (n,)), jax.random.normal(k2, (n,))  # max_margin: (s, s_c)


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
    w = np.ones(len(rows)) if mask is None else np.asarray(mask)
    return float(np.dot(w, rows) / max(w.sum(), 1.0))


def optax_reference(name, scores, targets, mask):
    if name == "softmax_cross_entropy":
        per_row = optax.softmax_cross_entropy_with_integer_labels(scores, targets)
    else:
        per_row = optax.sigmoid_binary_cross_entropy(scores, targets).sum(-1)
    w = jnp.ones(per_row.shape) if mask is None else mask
    return jnp.sum(w * per_row) / jnp.maximum(w.sum(), 1.0)


@pytest.mark.parametrize("mask", [None, MASK], ids=["nomask", "mask"])
@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_value_matches_an_independent_reference(name, mask):
    scores, targets = make_case(name)
    value = losses.LOSSES[name].value(scores, targets, mask)
    if name in ("softmax_cross_entropy", "sigmoid_binary_cross_entropy"):
        expected = optax_reference(name, scores, targets, mask)
    else:
        expected = brute_force(name, scores, targets, mask)
    np.testing.assert_allclose(value, expected, rtol=1e-12)


@pytest.mark.parametrize("mask", [None, MASK], ids=["nomask", "mask"])
@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_grad_matches_jax_grad(name, mask):
    loss = losses.LOSSES[name]
    scores, targets = make_case(name, seed=1)
    if name == "max_margin":
        expected = jax.grad(loss.value, argnums=(0, 1))(scores, targets, mask)
    else:
        expected = jax.grad(loss.value)(scores, targets, mask)
    value, manual = loss.value_and_grad(scores, targets, mask)
    np.testing.assert_allclose(value, loss.value(scores, targets, mask), rtol=1e-14)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14), manual,
                 expected)  # fmt: skip
    jax.tree.map(np.testing.assert_array_equal, manual, loss.grad(scores, targets, mask))


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_grad_matches_centered_differences(name):
    loss = losses.LOSSES[name]
    scores, targets = make_case(name, seed=2)
    mask = MASK
    numeric = centered_differences(lambda s: float(loss.value(s, targets, mask)), scores)
    manual = loss.grad(scores, targets, mask)
    if name == "max_margin":
        numeric_c = centered_differences(lambda sc: float(loss.value(scores, sc, mask)), targets)
        np.testing.assert_allclose(manual[1], numeric_c, atol=1e-8)
        manual = manual[0]
    np.testing.assert_allclose(manual, numeric, atol=1e-8)


# Fixed shapes, so that the examples reuse compiled kernels; the masks and draws vary.
@settings(max_examples=10, deadline=None)
@given(
    name=st.sampled_from(sorted(losses.LOSSES)),
    keep=st.lists(st.booleans(), min_size=N, max_size=N),
    seed=st.integers(0, 1000),
)
def test_grad_matches_jax_grad_for_any_mask(name, keep, seed):
    loss = losses.LOSSES[name]
    scores, targets = make_case(name, seed)
    mask = jnp.asarray(keep, jnp.float64)
    argnums = (0, 1) if name == "max_margin" else 0
    expected = jax.grad(loss.value, argnums=argnums)(scores, targets, mask)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14),
                 loss.grad(scores, targets, mask), expected)  # fmt: skip


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_all_zero_mask_gives_zero_loss_and_gradient(name):
    loss = losses.LOSSES[name]
    scores, targets = make_case(name)
    value, grads = loss.value_and_grad(scores, targets, jnp.zeros(N))
    assert value == 0.0
    for g in jax.tree.leaves(grads):
        np.testing.assert_array_equal(g, 0.0)


def test_classification_losses_accept_extra_leading_axes():
    k1, k2 = jax.random.split(jax.random.key(3))
    scores, labels = jax.random.normal(k1, (2, 3, K)), jax.random.randint(k2, (2, 3), 0, K)
    mask = jnp.asarray([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    for name in CLASSIFICATION:
        loss = losses.LOSSES[name]
        flat = loss.value(scores.reshape(6, K), labels.reshape(6), mask.reshape(6))
        np.testing.assert_allclose(jax.jit(loss.value)(scores, labels, mask), flat, rtol=1e-14)
        expected = jax.jit(jax.grad(loss.value))(scores, labels, mask)
        np.testing.assert_allclose(jax.jit(loss.grad)(scores, labels, mask), expected, atol=1e-14)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_cross_entropies_are_finite_for_huge_logits(dtype):
    scores = jnp.asarray([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 999.0]], dtype)
    value, grad = losses.softmax_cross_entropy_value_and_grad(scores, jnp.asarray([1, 2]))
    assert value.dtype == dtype and np.isfinite(value) and np.isfinite(grad).all()
    np.testing.assert_allclose(value, (2000.0 + 1.0 + np.log1p(np.exp(-1.0))) / 2, rtol=1e-6)
    logits = jnp.asarray([[1000.0, -1000.0]], dtype)
    value, grad = losses.sigmoid_binary_cross_entropy_value_and_grad(logits, jnp.asarray([[0, 1]]))
    assert value.dtype == dtype and np.isfinite(grad).all()
    np.testing.assert_allclose(value, 2000.0, rtol=1e-6)
    np.testing.assert_allclose(grad, [[1.0, -1.0]], rtol=1e-6)


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
