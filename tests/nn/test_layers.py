"""Layers: each hand-written backward vs jax.vjp of its forward; dropout and batch norm."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lecturenn.errors import UserError
from lecturenn.gradcheck import assert_trees_close
from lecturenn.nn import layers
from lecturenn.nn.activations import ACTIVATIONS


def randn(seed, shape, scale=1.0, shift=0.0):
    """Gaussian draws made by numpy: test data that costs no XLA compilation."""
    return jnp.asarray(shift + scale * np.random.default_rng(seed).normal(size=shape))


def check_backward_against_vjp(forward, backward, primals, seed=99, rtol=1e-10):
    """forward(*primals) -> (out, cache); backward(primals, cache, dout) -> grads of primals.

    Both sides run in one jitted function: a single compile instead of one per eager primitive.
    """

    @jax.jit
    def both(primals, dout):
        out, cache = forward(*primals)
        _, vjp = jax.vjp(lambda *p: forward(*p)[0], *primals)
        return out, backward(primals, cache, dout), vjp(dout)

    out_shape = jax.eval_shape(lambda *p: forward(*p)[0], *primals)
    dout = randn(seed, out_shape.shape)
    out, manual, expected = both(primals, dout)
    assert_trees_close(manual, expected, rtol=rtol)
    return np.asarray(out), manual, np.asarray(dout)


@pytest.mark.parametrize("leading", [(5,), (3, 4)], ids=["one_leading_axis", "two_leading_axes"])
def test_affine_backward_matches_vjp(leading):
    params = {"W": randn(0, (6, 4)), "b": randn(1, (4,))}
    x = randn(2, (*leading, 6))
    y, _, _ = check_backward_against_vjp(
        layers.affine_forward, lambda p, c, dy: layers.affine_backward(p[0], c, dy), (params, x)
    )
    expected = np.asarray(x) @ np.asarray(params["W"]) + np.asarray(params["b"])
    np.testing.assert_allclose(y, expected, rtol=1e-12)


@pytest.mark.parametrize("name", [*sorted(ACTIVATIONS), "softmax"])
def test_activation_backward_matches_vjp(name):
    z = randn(4, (3, 5), scale=3.0)
    a, _, _ = check_backward_against_vjp(
        lambda v: layers.activation_forward(name, v),
        lambda p, c, da: (layers.activation_backward(name, c, da),),
        (z,),
    )
    reference = jax.nn.softmax if name == "softmax" else ACTIVATIONS[name].fn
    np.testing.assert_allclose(a, reference(z), rtol=1e-12)


def test_activation_forward_rejects_unknown_names():
    with pytest.raises(UserError, match="'gelu'"):
        layers.activation_forward("gelu", jnp.zeros(3))


def test_embedding_backward_accumulates_repeated_ids():
    E = randn(6, (7, 3))
    ids = jnp.asarray([[1, 4, 1], [1, 6, 4]])  # row 1 three times, row 4 twice, rows 0/2/3/5 never
    x, (dE,), dx = check_backward_against_vjp(
        lambda table: layers.embedding_forward(table, ids),
        lambda p, c, dx: (layers.embedding_backward(7, c, dx),),
        (E,),
    )
    np.testing.assert_array_equal(x, np.asarray(E)[np.asarray(ids)])
    dE = np.asarray(dE)
    np.testing.assert_allclose(dE[1], dx[0, 0] + dx[0, 2] + dx[1, 0], rtol=1e-12)
    np.testing.assert_array_equal(dE[[0, 2, 3, 5]], 0.0)


def test_embedding_backward_keeps_the_dtype():
    E = jnp.ones((5, 2), jnp.float32)
    x, cache = layers.embedding_forward(E, jnp.asarray([0, 0, 3]))
    dE = layers.embedding_backward(5, cache, jnp.ones_like(x))
    assert x.dtype == dE.dtype == jnp.float32
    np.testing.assert_array_equal(dE[:, 0], [2.0, 0.0, 0.0, 1.0, 0.0])


def test_window_concatenates_and_backward_matches_vjp():
    x = randn(8, (2, 5, 3))
    y, _, _ = check_backward_against_vjp(
        layers.window_forward, lambda p, c, dy: (layers.window_backward(c, dy),), (x,)
    )
    x = np.asarray(x)
    np.testing.assert_array_equal(y, np.concatenate([x[:, i] for i in range(5)], axis=-1))


def brute_force_windows(ids, window_size, pad_id):
    half = window_size // 2
    return [
        [ids[j] if 0 <= j < len(ids) else pad_id for j in range(t - half, t + half + 1)]
        for t in range(len(ids))
    ]


@settings(max_examples=6, deadline=None)
@given(
    ids=st.lists(st.integers(1, 50), min_size=1, max_size=9),
    window_size=st.sampled_from([1, 3, 5]),
)
def test_sentence_windows_match_brute_force(ids, window_size):
    windows = jax.jit(layers.sentence_windows, static_argnums=(1, 2))(
        jnp.asarray(ids), window_size, 0
    )
    np.testing.assert_array_equal(windows, brute_force_windows(ids, window_size, 0))


def test_sentence_windows_batched_and_errors():
    ids = np.asarray([[5, 6, 7, 0], [8, 9, 0, 0]])
    windows = layers.sentence_windows(ids, 3, pad_id=0)
    assert windows.shape == (2, 4, 3)
    for b in range(2):
        np.testing.assert_array_equal(windows[b], brute_force_windows(list(ids[b]), 3, 0))
    with pytest.raises(UserError, match="odd.*got 4"):
        layers.sentence_windows(ids, 4, pad_id=0)


def test_dropout_backward_matches_vjp_with_a_fixed_key():
    x, key = randn(10, (4, 6)), jax.random.key(11)
    y, _, _ = check_backward_against_vjp(
        lambda v: layers.dropout_forward(v, 0.3, key, train=True),
        lambda p, c, dy: (layers.dropout_backward(c, dy),),
        (x,),
    )
    scale = y / np.asarray(x)
    assert np.all(np.isclose(scale, 0.0) | np.isclose(scale, 1 / 0.7, rtol=1e-12))
    assert 0 < np.sum(scale == 0) < scale.size


def test_dropout_is_unbiased_over_many_keys():
    rate, num_keys = 0.4, 4000
    x = randn(13, (32,))
    keys = jax.random.split(jax.random.key(14), num_keys)
    ys, masks = jax.jit(jax.vmap(lambda k: layers.dropout_forward(x, rate, k, train=True)))(keys)
    # Each y_i is x_i / (1 - rate) with probability 1 - rate, else 0: std |x_i| √(rate/(1-rate)).
    standard_error = np.abs(x) * np.sqrt(rate / (1 - rate) / num_keys)
    assert np.all(np.abs(ys.mean(0) - x) <= 5 * standard_error + 1e-12)
    np.testing.assert_allclose(np.mean(masks == 0), rate, atol=0.01)


def test_dropout_is_identity_in_eval_and_at_rate_zero():
    x, key = randn(15, (3, 4)), jax.random.key(0)
    for rate, train in [(0.5, False), (0.0, True)]:
        y, mask = layers.dropout_forward(x, rate, key, train=train)
        np.testing.assert_array_equal(y, x)
        np.testing.assert_array_equal(layers.dropout_backward(mask, x), x)
    with pytest.raises(UserError, match=r"\[0, 1\)"):
        layers.dropout_forward(x, 1.0, key, train=True)


@pytest.mark.parametrize("shape", [(8, 3), (2, 3, 4, 5)], ids=["N_D", "N_H_W_C"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_batchnorm_backward_matches_vjp(shape, train):
    params, state = layers.batchnorm_init(shape[-1], jnp.float64)
    params = {"gamma": randn(16, (shape[-1],), shift=1.0), "beta": randn(17, (shape[-1],))}
    state = {"mean": randn(18, (shape[-1],)), "var": randn(19, (shape[-1],), scale=0.1, shift=1.0)}
    x = randn(20, shape, scale=3.0, shift=2.0)

    def forward(p, v):
        y, _, cache = layers.batchnorm_forward(p, state, v, train=train)
        return y, cache

    check_backward_against_vjp(
        forward, lambda p, c, dy: layers.batchnorm_backward(p[0], c, dy), (params, x), rtol=1e-9
    )


@pytest.mark.parametrize("shape", [(8, 3), (2, 3, 4, 3)], ids=["N_D", "N_H_W_C"])
def test_batchnorm_train_normalizes_and_updates_running_stats(shape):
    params, state = layers.batchnorm_init(3, jnp.float64)
    state = {"mean": jnp.asarray([0.5, -1.0, 2.0]), "var": jnp.asarray([1.0, 2.0, 0.5])}
    x = randn(22, shape, scale=3.0, shift=2.0)
    forward = jax.jit(
        lambda v: layers.batchnorm_forward(params, state, v, train=True, momentum=0.8)[:2]
    )
    y, new_state = forward(x)
    rows = np.asarray(x).reshape(-1, 3)
    mean, var = rows.mean(0), rows.var(0)
    np.testing.assert_allclose(
        np.asarray(y).reshape(-1, 3), (rows - mean) / np.sqrt(var + 1e-5), rtol=1e-10
    )
    np.testing.assert_allclose(new_state["mean"], 0.8 * state["mean"] + 0.2 * mean, rtol=1e-12)
    unbiased = rows.var(0, ddof=1)
    np.testing.assert_allclose(new_state["var"], 0.8 * state["var"] + 0.2 * unbiased, rtol=1e-12)


def test_batchnorm_eval_uses_running_stats_and_keeps_them():
    params = {"gamma": jnp.asarray([2.0, 0.5]), "beta": jnp.asarray([0.1, -0.2])}
    state = {"mean": jnp.asarray([1.0, -3.0]), "var": jnp.asarray([4.0, 0.25])}
    x = randn(23, (5, 2))
    y, new_state, _ = layers.batchnorm_forward(params, state, x, train=False, eps=0.0)
    gamma, beta, mean, var = (np.asarray(a) for a in (*params.values(), *state.values()))
    np.testing.assert_allclose(y, gamma * (np.asarray(x) - mean) / np.sqrt(var) + beta, rtol=1e-12)
    assert new_state is state


def test_batchnorm_init_and_dtype():
    params, state = layers.batchnorm_init(4, jnp.float32)
    np.testing.assert_array_equal(params["gamma"], 1.0)
    np.testing.assert_array_equal(params["beta"], 0.0)
    np.testing.assert_array_equal(state["mean"], 0.0)
    np.testing.assert_array_equal(state["var"], 1.0)
    x = jnp.ones((3, 4), jnp.float32)
    y, new_state, _ = layers.batchnorm_forward(params, state, x, train=True)
    assert y.dtype == new_state["var"].dtype == jnp.float32
