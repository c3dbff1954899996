"""RNN/IRNN/LSTM language models: hand-written BPTT against jax.grad (float64), truncated-window
carry, the loss scaling, weight tying and the perplexity of a uniform model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lecturenn.errors import UserError
from lecturenn.gradcheck import assert_trees_close, max_relative_error
from lecturenn.models import rnn_lm

V, B, T = 11, 3, 4


def make(**kw):
    base = dict(vocab_size=V, embed_dim=5, hidden_dim=5, num_layers=2, dtype="float64")
    cfg = rnn_lm.RNNLMConfig(**{**base, **kw})
    return cfg, rnn_lm.make(cfg)


def batch_of(seed, batch=B, steps=T):
    rng = np.random.default_rng(seed)
    ids = jnp.asarray(rng.integers(0, V, (batch, steps + 1)))
    return {"x": ids[:, :-1], "y": ids[:, 1:]}


def nonzero_state(cfg, seed):
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(
        lambda z: jnp.asarray(rng.uniform(-0.8, 0.8, z.shape)), rnn_lm.zero_state(cfg, B)
    )


def check(model, state, batch, key):
    @jax.jit
    def both(params):
        manual = model.manual_value_and_grad(params, state, batch, key)
        auto = jax.value_and_grad(model.loss, has_aux=True)(params, state, batch, key)
        return manual, auto

    params, _ = model.init(jax.random.PRNGKey(1))
    # Wider weights than ±0.1 so the gates and tanh leave their linear regime.
    params = jax.tree_util.tree_map(lambda p: 5.0 * p, params)
    ((loss_m, (state_m, aux_m)), g_m), ((loss_a, (state_a, aux_a)), g_a) = both(params)
    assert max_relative_error(loss_m, loss_a) <= 1e-12
    assert_trees_close(state_m, state_a, tol=1e-12)
    assert_trees_close(g_m, g_a, tol=1e-6)
    return params, loss_m, aux_m, state_m


@pytest.mark.parametrize(
    "kw",
    [
        dict(cell="lstm", dropout=0.3, forget_bias=1.0),
        dict(cell="lstm", tie_weights=True, loss_reduction="mean", num_layers=1),
        dict(cell="lstm", recurrent_bias=True, output_bias="uniform"),
        dict(cell="tanh", dropout=0.3, init="default"),
        dict(cell="irnn", num_layers=1),
        dict(cell="relu", tie_weights=True),
    ],
    ids=[
        "lstm-dropout",
        "lstm-tied-mean",
        "lstm-torch-biases",
        "tanh-dropout",
        "irnn",
        "relu-tied",
    ],
)
def test_manual_grads_match_jax_grad_with_a_carried_nonzero_state(kw):
    cfg, model = make(**kw)
    check(model, nonzero_state(cfg, 2), batch_of(3), jax.random.PRNGKey(4))


def test_empty_state_means_zero_carry():
    cfg, model = make(cell="lstm")
    params, _ = model.init(jax.random.PRNGKey(0))
    batch = batch_of(0)
    a, b = jax.jit(
        lambda p: (
            model.loss(p, {}, batch, None),
            model.loss(p, rnn_lm.zero_state(cfg, B), batch, None),
        )
    )(params)
    assert float(a[0]) == float(b[0])


@pytest.mark.parametrize("cell", ["lstm", "tanh"])
def test_truncated_bptt_across_a_window_boundary(cell):
    """Window 2's manual gradient, started from window 1's final state, is jax.grad of the two
    windows run in sequence with stop_gradient on the carry; without stop_gradient it differs."""
    cfg, model = make(cell=cell)
    params, _ = model.init(jax.random.PRNGKey(1))
    params = jax.tree_util.tree_map(lambda p: 5.0 * p, params)
    w1, w2 = batch_of(5), batch_of(6)
    key = jax.random.PRNGKey(0)

    def two_windows(p, stop):
        _, (carry, _) = model.loss(p, nonzero_state(cfg, 7), w1, key)
        if not stop:  # model.loss stops the incoming carry; recompute it differentiably
            return _full_bptt(cfg, p, nonzero_state(cfg, 7), w1, w2)
        return model.loss(p, carry, w2, key)[0]

    _, (carry1, _) = jax.jit(model.loss)(params, nonzero_state(cfg, 7), w1, key)
    (_, _), g_manual = jax.jit(model.manual_value_and_grad)(params, carry1, w2, key)
    g_truncated = jax.jit(jax.grad(lambda p: two_windows(p, True)))(params)
    assert_trees_close(g_manual, g_truncated, tol=1e-6)
    g_full = jax.jit(jax.grad(lambda p: two_windows(p, False)))(params)
    assert max_relative_error(g_full["layers"][0]["Wh"], g_truncated["layers"][0]["Wh"]) > 1e-3


def _full_bptt(cfg, params, state, w1, w2):
    """Window 2's loss as one 2T-step sequence: gradients flow through the boundary."""
    ids = jnp.concatenate([w1["x"], w2["x"]], axis=1)
    targets = jnp.concatenate([w1["y"], w2["y"]], axis=1)
    logits, _ = rnn_lm.apply(cfg, params, state, ids)
    log_p = jax.nn.log_softmax(logits[:, T:])
    nll = -jnp.take_along_axis(log_p, targets[:, T:, None], -1).mean()
    return T * nll


def test_sum_steps_loss_is_steps_times_token_mean_and_uniform_model_has_perplexity_v():
    cfg, model = make(cell="lstm")
    params, _ = model.init(jax.random.PRNGKey(0))
    # Zero output weights: every next word gets probability 1/V, so perplexity = V.
    params["out"] = jax.tree_util.tree_map(jnp.zeros_like, params["out"])
    loss, (_, aux) = model.loss(params, {}, batch_of(1), None)
    assert np.isclose(float(jnp.exp(aux["nll"])), V, rtol=1e-12)
    assert np.isclose(float(loss), T * float(aux["nll"]), rtol=1e-12)


def test_logits_match_an_independent_numpy_lstm():
    cfg, model = make(cell="lstm", num_layers=1)
    params, _ = model.init(jax.random.PRNGKey(3))
    p = jax.tree_util.tree_map(np.asarray, params)
    ids = np.asarray(batch_of(2)["x"])
    logits, state = rnn_lm.apply(cfg, params, {}, jnp.asarray(ids))
    sig = lambda z: 1 / (1 + np.exp(-z))
    H = cfg.hidden_dim
    h = c = np.zeros((B, H))
    cell = p["layers"][0]
    for t in range(T):
        z = p["embed"][ids[:, t]] @ cell["Wx"] + h @ cell["Wh"] + cell["b"]
        i, f, g, o = (
            sig(z[:, :H]),
            sig(z[:, H : 2 * H]),
            np.tanh(z[:, 2 * H : 3 * H]),
            sig(z[:, 3 * H :]),
        )
        c = f * c + i * g
        h = o * np.tanh(c)
        np.testing.assert_allclose(logits[:, t], h @ p["out"]["W"] + p["out"]["b"], rtol=1e-10)
    np.testing.assert_allclose(state["c"][0], c, rtol=1e-10)


def test_config_errors_name_the_key():
    with pytest.raises(UserError, match="tie_weights"):
        make(tie_weights=True, embed_dim=4)
    with pytest.raises(UserError, match="model.cell"):
        make(cell="gru")
    with pytest.raises(UserError, match="model.init"):
        make(cell="lstm", init="default")
    with pytest.raises(UserError, match="model.output_bias"):
        make(output_bias="random")
    with pytest.raises(UserError, match="model.recurrent_bias"):
        make(cell="tanh", recurrent_bias=True)


def test_torch_biases_change_the_start_not_the_function():
    """recurrent_bias / output_bias = "uniform" (Zaremba's Torch code): the other parameters are
    drawn as without them; b + b_h feeds the gates, so moving weight from b_h to b changes
    nothing; b_h's gradient is b's; both new biases lie in U[±init_scale]."""
    plain_cfg, plain = make(cell="lstm")
    torch_cfg, torch_like = make(cell="lstm", recurrent_bias=True, output_bias="uniform")
    p0, _ = plain.init(jax.random.PRNGKey(7))
    p1, _ = torch_like.init(jax.random.PRNGKey(7))
    for a, b in zip(p0["layers"], p1["layers"], strict=True):
        for name in ("Wx", "Wh", "b"):
            np.testing.assert_array_equal(a[name], b[name])
        assert 0 < np.max(np.abs(b["b_h"])) <= 0.1
        assert not np.array_equal(b["b_h"], b["b"])
    np.testing.assert_array_equal(p0["out"]["W"], p1["out"]["W"])
    assert np.all(p0["out"]["b"] == 0)
    assert 0 < np.max(np.abs(p1["out"]["b"])) <= 0.1
    shifted = jax.tree_util.tree_map(lambda x: x, p1)
    for layer in shifted["layers"]:
        layer["b"], layer["b_h"] = layer["b"] + layer["b_h"] - 0.3, jnp.full_like(layer["b"], 0.3)
    batch = batch_of(5)
    np.testing.assert_allclose(
        torch_like.predict(p1, {}, batch["x"]),
        torch_like.predict(shifted, {}, batch["x"]),
        rtol=1e-12,
    )
    (_, _), grads = torch_like.manual_value_and_grad(p1, {}, batch, None)
    for layer in grads["layers"]:
        np.testing.assert_array_equal(layer["b_h"], layer["b"])
