"""Hand-written RNN/LSTM BPTT against jax.vjp, finite differences and a loop reference.

Test data come from numpy and every check runs as one jitted function, so that the time goes to
one compilation per test rather than to op-by-op dispatch.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from lecturenn.gradcheck import assert_trees_close
from lecturenn.nn import init
from lecturenn.nn.recurrent import (
    lstm_backward,
    lstm_forward,
    lstm_init,
    lstm_stack_backward,
    lstm_stack_forward,
    rnn_backward,
    rnn_forward,
    rnn_init,
)

T, B, D, H = 5, 3, 4, 5


def normal(rng, *shape):
    return jnp.asarray(rng.standard_normal(shape))


def lstm_params(rng, input_dim=D, hidden_dim=H):
    # Wider than Zaremba's ±0.1 so that the gates leave their linear regime.
    u = lambda *shape: jnp.asarray(rng.uniform(-0.5, 0.5, shape))
    return {
        "Wx": u(input_dim, 4 * hidden_dim),
        "Wh": u(hidden_dim, 4 * hidden_dim),
        "b": u(4 * hidden_dim),
    }


# --- forward -----------------------------------------------------------------------------------


def test_lstm_forward_matches_python_loop_reference():
    rng = np.random.default_rng(0)
    params = lstm_params(rng)
    xs, h, c = normal(rng, T, B, D), normal(rng, B, H), normal(rng, B, H)
    hs, (hT, cT), _ = jax.jit(lstm_forward)(params, xs, (h, c))

    sigmoid = lambda z: 1.0 / (1.0 + np.exp(-z))
    P = {name: np.asarray(value) for name, value in params.items()}
    blocks = {gate: slice(j * H, (j + 1) * H) for j, gate in enumerate("ifgo")}
    h, c = np.asarray(h), np.asarray(c)
    for t in range(T):
        x = np.asarray(xs[t])
        z = {gate: x @ P["Wx"][:, s] + h @ P["Wh"][:, s] + P["b"][s] for gate, s in blocks.items()}
        i, f, o = sigmoid(z["i"]), sigmoid(z["f"]), sigmoid(z["o"])
        c = f * c + i * np.tanh(z["g"])
        h = o * np.tanh(c)
        np.testing.assert_allclose(hs[t], h, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(hT, h, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cT, c, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_rnn_forward_matches_python_loop_reference(activation):
    rng = np.random.default_rng(1)
    params = {"Wx": normal(rng, D, H), "Wh": normal(rng, H, H) / 2, "b": normal(rng, H)}
    xs, h = normal(rng, T, B, D), np.asarray(normal(rng, B, H))
    hs, _ = jax.jit(functools.partial(rnn_forward, activation=activation))(params, xs, h)
    f = np.tanh if activation == "tanh" else (lambda z: np.maximum(z, 0.0))
    P = {name: np.asarray(value) for name, value in params.items()}
    for t in range(T):
        h = f(np.asarray(xs[t]) @ P["Wx"] + h @ P["Wh"] + P["b"])
        np.testing.assert_allclose(hs[t], h, rtol=1e-12, atol=1e-12)


# --- backward against jax.vjp ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tanh", "relu", "irnn"])
def test_rnn_backward_matches_vjp(kind):
    activation = "tanh" if kind == "tanh" else "relu"
    rng = np.random.default_rng(2)
    # IRNN's default input std 0.001 would keep every unit on one side of relu's kink.
    params = rnn_init(
        jax.random.key(0),
        D,
        H,
        kind=kind,
        w_x=init.normal(0.5),
        w_h=init.normal(0.5),
        dtype=jnp.float64,
    )
    params["b"] = 0.3 * normal(rng, H)
    xs, h0, dhs, dhT = (
        normal(rng, T, B, D),
        normal(rng, B, H),
        normal(rng, T, B, H),
        normal(rng, B, H),
    )

    def forward(p, x, h):
        hs, _ = rnn_forward(p, x, h, activation=activation)
        return hs, hs[-1]

    @jax.jit
    def manual_and_vjp(p, x, h):
        _, cache = rnn_forward(p, x, h, activation=activation)
        _, vjp = jax.vjp(forward, p, x, h)
        return rnn_backward(p, cache, dhs, dhT), vjp((dhs, dhT))

    assert_trees_close(*manual_and_vjp(params, xs, h0), tol=1e-6)


def test_lstm_backward_matches_vjp_with_nonzero_state_and_final_cotangents():
    rng = np.random.default_rng(3)
    params = lstm_params(rng)
    xs, h0, c0 = normal(rng, T, B, D), normal(rng, B, H), normal(rng, B, H)
    dhs, dhT, dcT = normal(rng, T, B, H), normal(rng, B, H), normal(rng, B, H)

    @jax.jit
    def manual_and_vjp(p, x, state):
        _, _, cache = lstm_forward(p, x, state)
        _, vjp = jax.vjp(lambda *args: lstm_forward(*args)[:2], p, x, state)
        return lstm_backward(p, cache, dhs, (dhT, dcT)), vjp((dhs, (dhT, dcT)))

    assert_trees_close(*manual_and_vjp(params, xs, (h0, c0)), tol=1e-6)


@pytest.mark.parametrize("hidden_dims", [[H], [H, 3]])
def test_lstm_stack_backward_with_dropout_matches_vjp(hidden_dims):
    rng = np.random.default_rng(4)
    dims = [D, *hidden_dims]
    layers = [lstm_params(rng, dims[j], dims[j + 1]) for j in range(len(hidden_dims))]
    states = [(normal(rng, B, n), normal(rng, B, n)) for n in hidden_dims]
    dstates = [(normal(rng, B, n), normal(rng, B, n)) for n in hidden_dims]
    xs, dhs_top = normal(rng, T, B, D), normal(rng, T, B, dims[-1])
    kwargs = dict(dropout_rate=0.4, key=jax.random.key(7), train=True)

    @jax.jit
    def manual_and_vjp(ls, x, ss):
        _, _, cache = lstm_stack_forward(ls, x, ss, **kwargs)
        _, vjp = jax.vjp(lambda *args: lstm_stack_forward(*args, **kwargs)[:2], ls, x, ss)
        return lstm_stack_backward(ls, cache, dhs_top, dstates), vjp((dhs_top, dstates))

    assert_trees_close(*manual_and_vjp(layers, xs, states), tol=1e-6)


# --- finite differences ------------------------------------------------------------------------


def test_lstm_gradient_matches_central_differences():
    rng = np.random.default_rng(5)
    params = lstm_params(rng, 2, 3)
    xs, h0, c0 = normal(rng, 3, 2, 2), normal(rng, 2, 3), normal(rng, 2, 3)
    dhs, dhT, dcT = normal(rng, 3, 2, 3), normal(rng, 2, 3), normal(rng, 2, 3)
    flat, unravel = ravel_pytree((params, xs, h0, c0))

    def loss(flat_args):  # the linear functional whose gradient the backward returns
        p, x, h, c = unravel(flat_args)
        hs, (hT, cT), _ = lstm_forward(p, x, (h, c))
        return jnp.sum(hs * dhs) + jnp.sum(hT * dhT) + jnp.sum(cT * dcT)

    eps = 1e-6
    coords = rng.choice(flat.size, 16, replace=False)
    bumps = eps * jax.nn.one_hot(coords, flat.size, dtype=flat.dtype)

    @jax.jit
    def analytic_and_numeric(flat):
        p, x, h, c = unravel(flat)
        _, _, cache = lstm_forward(p, x, (h, c))
        dparams, dxs, (dh0, dc0) = lstm_backward(p, cache, dhs, (dhT, dcT))
        analytic = ravel_pytree((dparams, dxs, dh0, dc0))[0][coords]
        numeric = (jax.vmap(loss)(flat + bumps) - jax.vmap(loss)(flat - bumps)) / (2 * eps)
        return analytic, numeric

    analytic, numeric = analytic_and_numeric(flat)
    np.testing.assert_allclose(numeric, analytic, rtol=1e-6, atol=1e-8)


# --- truncated BPTT: carrying the state across windows -----------------------------------------


def test_state_carried_across_windows_equals_one_long_run():
    rng = np.random.default_rng(6)
    params = lstm_params(rng)
    rnn_params = {"Wx": normal(rng, D, H), "Wh": normal(rng, H, H) / 2, "b": normal(rng, H)}
    xs, h0, c0 = normal(rng, 6, B, D), normal(rng, B, H), normal(rng, B, H)

    @jax.jit
    def runs(xs, h0, c0):
        full = lstm_forward(params, xs, (h0, c0))[:2]
        hs1, state1, _ = lstm_forward(params, xs[:4], (h0, c0))
        hs2, state2, _ = lstm_forward(params, xs[4:], state1)
        rnn_full, _ = rnn_forward(rnn_params, xs, h0)
        rnn1, _ = rnn_forward(rnn_params, xs[:2], h0)
        rnn2, _ = rnn_forward(rnn_params, xs[2:], rnn1[-1])
        windows = (jnp.concatenate([hs1, hs2]), state2), jnp.concatenate([rnn1, rnn2])
        return (full, rnn_full), windows

    full, windows = runs(xs, h0, c0)
    for a, b in zip(
        jax.tree_util.tree_leaves(windows), jax.tree_util.tree_leaves(full), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("truncate", [False, True])
def test_lstm_gradient_across_a_window_boundary(truncate):
    """Chaining window 2's dstate0 into window 1 is full BPTT; dropping it is truncated BPTT
    (what lax.stop_gradient on the carried state gives jax.grad)."""
    rng = np.random.default_rng(8)
    params = lstm_params(rng)
    xs, h0, c0 = normal(rng, 6, B, D), normal(rng, B, H), normal(rng, B, H)
    R = normal(rng, 6, B, H)

    def loss(p):
        hs1, state1, _ = lstm_forward(p, xs[:3], (h0, c0))
        if truncate:
            state1 = jax.lax.stop_gradient(state1)
        hs2, _, _ = lstm_forward(p, xs[3:], state1)
        return jnp.sum(hs1 * R[:3]) + jnp.sum(hs2 * R[3:])

    @jax.jit
    def manual_and_autodiff(p):
        _, state1, cache1 = lstm_forward(p, xs[:3], (h0, c0))
        _, _, cache2 = lstm_forward(p, xs[3:], state1)
        zeros = (jnp.zeros((B, H)), jnp.zeros((B, H)))
        g2, _, dstate1 = lstm_backward(p, cache2, R[3:], zeros)
        g1, _, _ = lstm_backward(p, cache1, R[:3], zeros if truncate else dstate1)
        return jax.tree_util.tree_map(jnp.add, g1, g2), jax.grad(loss)(p)

    assert_trees_close(*manual_and_autodiff(params), tol=1e-6)


# --- initialization and dropout ----------------------------------------------------------------


def test_irnn_init_is_identity_recurrence_with_zero_bias():
    params = rnn_init(jax.random.key(9), 3, 6, kind="irnn")
    np.testing.assert_array_equal(params["Wh"], np.eye(6))
    np.testing.assert_array_equal(params["b"], np.zeros(6))
    assert params["Wx"].shape == (3, 6) and 0 < np.std(params["Wx"]) < 0.01


def test_lstm_init_uniform_range_and_forget_bias_block():
    params = lstm_init(jax.random.key(10), 7, 8, scale=0.05, forget_bias=1.0)
    assert params["Wx"].shape == (7, 32) and params["Wh"].shape == (8, 32)
    for name in ("Wx", "Wh"):
        assert np.max(np.abs(params[name])) <= 0.05 and np.std(params[name]) > 0.02
    b = np.asarray(params["b"])
    assert np.all(np.abs(b[:8]) <= 0.05) and np.all(np.abs(b[16:]) <= 0.05)
    assert np.all(np.abs(b[8:16] - 1.0) <= 0.05)


def test_lstm_init_glorot_bounds_and_zero_bias():
    params = lstm_init(jax.random.key(11), 10, 6, init="glorot", forget_bias=2.0)
    assert np.max(np.abs(params["Wx"])) <= (6 / 16) ** 0.5
    assert np.max(np.abs(params["Wh"])) <= (6 / 12) ** 0.5
    np.testing.assert_array_equal(params["b"], np.r_[np.zeros(6), 2 * np.ones(6), np.zeros(12)])


def test_stack_dropout_masks_sit_on_layer_inputs_and_top_output():
    rng = np.random.default_rng(12)
    layers = [lstm_params(rng, D, H), lstm_params(rng, H, H)]
    states = [(normal(rng, B, H), normal(rng, B, H)) for _ in layers]
    xs, rate = normal(rng, T, B, D), 0.5

    @jax.jit
    def train_and_eval(layers, xs, states):
        train = lstm_stack_forward(
            layers, xs, states, dropout_rate=rate, key=jax.random.key(0), train=True
        )
        masks = train[2].masks
        # By hand from the recorded masks: on each layer's input and on the top output.
        h1, _, _ = lstm_forward(layers[0], xs * masks[0], states[0])
        h2, s2, _ = lstm_forward(layers[1], h1 * masks[1], states[1])
        by_hand = (h2 * masks[2], s2)
        eval_hs, _, eval_cache = lstm_stack_forward(layers, xs, states, dropout_rate=rate)
        plain = lstm_forward(layers[1], lstm_forward(layers[0], xs, states[0])[0], states[1])[0]
        return (train[0], train[1][1]), by_hand, masks, (eval_hs, plain), eval_cache.masks

    train, by_hand, masks, (eval_hs, plain), eval_masks = train_and_eval(layers, xs, states)
    assert len(masks) == 3
    assert all(np.shape(m) == () and float(m) == 1.0 for m in eval_masks)  # dropout off
    for mask in masks:
        assert set(np.unique(np.asarray(mask))) == {0.0, 1.0 / (1.0 - rate)}
    for a, b in zip(
        jax.tree_util.tree_leaves(train), jax.tree_util.tree_leaves(by_hand), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-13)
    np.testing.assert_allclose(eval_hs, plain, rtol=1e-13)
    with pytest.raises(ValueError, match="key"):
        lstm_stack_forward(layers, xs, states, dropout_rate=rate, train=True)
