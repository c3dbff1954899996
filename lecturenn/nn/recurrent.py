"""Recurrent cells (vanilla RNN, LSTM) over whole sequences, with hand-written BPTT.

Sequences are time-major: inputs ``xs`` are (T, B, D), hidden states (T, B, H).

Parameters (row-vector convention of the CS224n notes, ``z = x W + h U + b``):

* RNN:  ``{"Wx": (D, H), "Wh": (H, H), "b": (H,)}``
* LSTM: ``{"Wx": (D, 4H), "Wh": (H, 4H), "b": (4H,)}``; the 4H columns are the gate blocks in the
  order **i, f, g, o** (input gate, forget gate, candidate cell, output gate), each H wide;
  optionally a second bias ``"b_h"`` (4H,) on the recurrent side (:func:`lstm_init`).

Speed: the forward projects every input in one (T·B, D) × (D, ·) matmul
before the time loop, so the loop only does ``h W_h`` and the gate nonlinearities. The backward
is a reverse ``lax.scan`` that carries only the deltas flowing through time and stacks the
pre-activation deltas δz_t; the weight gradients are then one (T·B)-row matmul each instead of T
small matmuls accumulated inside the loop, which is what ``jax.grad`` of a scan does.

Truncated BPTT: the state carried between windows enters as ``h0``/``c0``; the training code stops
its gradient. The backward passes still return d/dh0 (and d/dc0), so full BPTT across a window
boundary is the chain ``backward(window 2) -> dstate0 -> backward(window 1)``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from lecturenn.nn import init as init_lib
from lecturenn.nn import layers
from lecturenn.nn.init import Initializer

Array = jax.Array
Params = dict[str, Array]

_RNN_ACTIVATIONS = ("tanh", "relu")
_RNN_KINDS = ("tanh", "relu", "irnn")
_LSTM_INITS = ("uniform", "glorot")


# ---------------------------------------------------------------------------------------------
# Initialization


def rnn_init(
    key: Array,
    input_dim: int,
    hidden_dim: int,
    *,
    kind: str = "tanh",
    w_x: Initializer | None = None,
    w_h: Initializer | None = None,
    dtype: Any = jnp.float32,
) -> Params:
    """Parameters of a vanilla RNN, ``{"Wx": (D, H), "Wh": (H, H), "b": (H,)}``, b = 0.

    ``w_x`` and ``w_h`` are nn/init.py initializers. Defaults: for ``kind="tanh"`` or ``"relu"``
    N(0, 1/fan_in) for both matrices (``init.normal_fan_in``); for ``kind="irnn"`` (Le, Jaitly &
    Hinton 2015) W_h = I and W_x ~ N(0, 0.001²), their input-weight std; run the IRNN with
    ``activation="relu"``.
    """
    if kind not in _RNN_KINDS:
        raise ValueError(f"rnn_init: kind must be one of {_RNN_KINDS}, got {kind!r}")
    irnn = kind == "irnn"
    w_x = w_x or (init_lib.normal(0.001) if irnn else init_lib.normal_fan_in)
    w_h = w_h or (init_lib.identity if irnn else init_lib.normal_fan_in)
    key_x, key_h = jax.random.split(key)
    return {
        "Wx": w_x(key_x, (input_dim, hidden_dim), dtype),
        "Wh": w_h(key_h, (hidden_dim, hidden_dim), dtype),
        "b": init_lib.zeros(None, (hidden_dim,), dtype),
    }


def lstm_init(
    key: Array,
    input_dim: int,
    hidden_dim: int,
    *,
    init: str = "uniform",
    scale: float = 0.1,
    forget_bias: float = 0.0,
    recurrent_bias: bool = False,
    dtype: Any = jnp.float32,
) -> Params:
    """Parameters of an LSTM, ``{"Wx": (D, 4H), "Wh": (H, 4H), "b": (4H,)}``, gates i, f, g, o.

    ``init="uniform"`` (Zaremba et al. 2014): every entry, biases included, ~ U[−scale, scale]
    (0.1 small, 0.05 medium, 0.04 large). ``init="glorot"``: each H-wide gate block of W_x and W_h
    is Glorot-uniform, U[±√(6/(fan_in + H))] (``init.glorot_bound`` of one block); b = 0
    (``scale`` unused). ``forget_bias`` is then *added* to the forget-gate block b[H:2H] (Gers et
    al. 2000; Le et al. 2015 use 1–10 on the adding problem); 0.0 leaves the init unchanged.

    ``recurrent_bias=True`` adds a second bias ``"b_h"`` (4H,), drawn like ``b`` (without the
    forget offset): z_t = x_t W_x + b + h_{t-1} W_h + b_h, the parameterization of Zaremba's Torch
    code (two ``nn.Linear`` maps, i2h and h2h, each with its own bias, every parameter
    U[±0.1]) and of ``torch.nn.LSTM`` (bias_ih, bias_hh). The model is the same function, but the
    start differs (the sum of two uniforms) and SGD moves b + b_h twice as fast as one bias,
    since both receive the same gradient.
    """
    if init not in _LSTM_INITS:
        raise ValueError(f"lstm_init: init must be one of {_LSTM_INITS}, got {init!r}")
    D, H = input_dim, hidden_dim
    key_x, key_h, key_b = jax.random.split(key, 3)
    key_bh = jax.random.fold_in(key_b, 1)  # the other parameters stay as without b_h
    if init == "uniform":
        w_x = w_h = w_b = init_lib.uniform(scale)
    else:
        w_x = init_lib.uniform(init_lib.glorot_bound(D, H))
        w_h = init_lib.uniform(init_lib.glorot_bound(H, H))
        w_b = init_lib.zeros
    b = w_b(key_b, (4 * H,), dtype).at[H : 2 * H].add(forget_bias)
    params = {"Wx": w_x(key_x, (D, 4 * H), dtype), "Wh": w_h(key_h, (H, 4 * H), dtype), "b": b}
    if recurrent_bias:
        params["b_h"] = w_b(key_bh, (4 * H,), dtype)
    return params


def lstm_bias(params: Params) -> Array:
    """b, or b + b_h for the two-bias parameterization (:func:`lstm_init`)."""
    return params["b"] + params["b_h"] if "b_h" in params else params["b"]


# ---------------------------------------------------------------------------------------------
# Vanilla RNN


class RNNCache(NamedTuple):
    xs: Array  # (T, B, D) inputs
    h0: Array  # (B, H) initial state
    hs: Array  # (T, B, H) h_1 .. h_T
    dact: Array  # (T, B, H) f'(z_t), so the backward needs no knowledge of f


def _shift_in(first: Array, seq: Array) -> Array:
    """(first, seq_0, ..., seq_{T-2}): the states h_{t-1} aligned with step t."""
    return jnp.concatenate([first[None], seq[:-1]], axis=0)


def rnn_forward(
    params: Params, xs: Array, h0: Array, *, activation: str = "tanh"
) -> tuple[Array, RNNCache]:
    """h_t = f(z_t), z_t = x_t W_x + h_{t-1} W_h + b, for t = 1..T (CS224n RNN-LM notes).

    Returns ``hs`` (T, B, H) (h_T = ``hs[-1]``) and the cache for :func:`rnn_backward`.
    """
    if activation not in _RNN_ACTIVATIONS:
        raise ValueError(f"rnn_forward: activation must be one of {_RNN_ACTIVATIONS}")
    T, B, D = xs.shape
    H = h0.shape[-1]
    f = jnp.tanh if activation == "tanh" else jax.nn.relu
    zx = (xs.reshape(T * B, D) @ params["Wx"] + params["b"]).reshape(T, B, H)
    Wh = params["Wh"]

    def step(h, zx_t):
        h = f(zx_t + h @ Wh)
        return h, h

    _, hs = lax.scan(step, h0, zx)
    # f'(z) from h: tanh' = 1 - h², relu' = [h > 0]; done once on (T, B, H), outside the loop.
    dact = 1.0 - hs * hs if activation == "tanh" else (hs > 0).astype(hs.dtype)
    return hs, RNNCache(xs, h0, hs, dact)


def rnn_backward(
    params: Params, cache: RNNCache, dhs: Array, dhT: Array
) -> tuple[Params, Array, Array]:
    """BPTT for :func:`rnn_forward` (CS224n notes on vanishing gradients).

    ``dhs`` (T, B, H) is ∂J/∂h_t from each step's own output, ``dhT`` (B, H) the gradient arriving
    at h_T from beyond the window. Going back in time, with δh_{T+1}-carry = dhT:

        δh_t = dhs_t + δz_{t+1} W_hᵀ        (total gradient at h_t)
        δz_t = δh_t ∘ f'(z_t)
        δh_0 = δz_1 W_hᵀ

    and after the loop, with all T·B rows at once:
    dW_x = Σ_t x_tᵀ δz_t, dW_h = Σ_t h_{t-1}ᵀ δz_t, db = Σ_t 1ᵀδz_t, δx_t = δz_t W_xᵀ.

    Returns ``(dparams, dxs, dh0)``.
    """
    xs, h0, hs, dact = cache
    T, B, D = xs.shape
    H = h0.shape[-1]
    Wh_T = params["Wh"].T

    def step(dh_next, inputs):
        dh_t, dact_t = inputs
        dz = (dh_t + dh_next) * dact_t
        return dz @ Wh_T, dz

    dh0, dzs = lax.scan(step, dhT, (dhs, dact), reverse=True)
    dz = dzs.reshape(T * B, H)
    h_prev = _shift_in(h0, hs).reshape(T * B, H)
    dparams = {"Wx": xs.reshape(T * B, D).T @ dz, "Wh": h_prev.T @ dz, "b": dz.sum(0)}
    dxs = (dz @ params["Wx"].T).reshape(T, B, D)
    return dparams, dxs, dh0


# ---------------------------------------------------------------------------------------------
# LSTM


class LSTMCache(NamedTuple):
    xs: Array  # (T, B, D)
    h0: Array  # (B, H)
    c0: Array  # (B, H)
    hs: Array  # (T, B, H) h_1 .. h_T
    cs: Array  # (T, B, H) c_1 .. c_T
    gates: Array  # (T, B, 4H) activations [i, f, g, o]


def lstm_cell(z: Array, c_prev: Array) -> tuple[Array, Array, Array]:
    """One LSTM time step from its pre-activations z (B, 4H), gates i, f, g, o (lecture 7):
    i, f, o = σ(z^i), σ(z^f), σ(z^o), g = tanh(z^g), c = f ∘ c_prev + i ∘ g, h = o ∘ tanh(c).
    Returns (h, c, the activations [i, f, g, o] (B, 4H) that :func:`lstm_backward` reads)."""
    H = c_prev.shape[-1]
    i = jax.nn.sigmoid(z[:, :H])
    f = jax.nn.sigmoid(z[:, H : 2 * H])
    g = jnp.tanh(z[:, 2 * H : 3 * H])
    o = jax.nn.sigmoid(z[:, 3 * H :])
    c = f * c_prev + i * g
    h = o * jnp.tanh(c)
    return h, c, jnp.concatenate([i, f, g, o], axis=1)


def lstm_forward(
    params: Params, xs: Array, state: tuple[Array, Array]
) -> tuple[Array, tuple[Array, Array], LSTMCache]:
    """LSTM over a sequence (CS224n lecture 7 / CMU 11-785 notation, gate order i, f, g, o):

        z_t = x_t W_x + h_{t-1} W_h + b            (B, 4H), split into blocks z^i, z^f, z^g, z^o
        i_t = σ(z^i_t)    f_t = σ(z^f_t)    g_t = tanh(z^g_t)    o_t = σ(z^o_t)
        c_t = f_t ∘ c_{t-1} + i_t ∘ g_t
        h_t = o_t ∘ tanh(c_t)

    ``state`` is (h0, c0), each (B, H). Returns ``hs`` (T, B, H), the final state (h_T, c_T) and
    the cache for :func:`lstm_backward`.
    """
    h0, c0 = state
    T, B, D = xs.shape
    H = h0.shape[-1]
    zx = (xs.reshape(T * B, D) @ params["Wx"] + lstm_bias(params)).reshape(T, B, 4 * H)
    Wh = params["Wh"]

    def step(carry, zx_t):
        h, c = carry
        h, c, gates = lstm_cell(zx_t + h @ Wh, c)
        return (h, c), (h, c, gates)

    (hT, cT), (hs, cs, gates) = lax.scan(step, (h0, c0), zx)
    return hs, (hT, cT), LSTMCache(xs, h0, c0, hs, cs, gates)


def lstm_backward(
    params: Params, cache: LSTMCache, dhs: Array, dstate: tuple[Array, Array]
) -> tuple[Params, Array, tuple[Array, Array]]:
    """BPTT for :func:`lstm_forward`.

    ``dhs`` (T, B, H) is ∂J/∂h_t from each step's output; ``dstate = (dhT, dcT)`` is the gradient
    arriving at (h_T, c_T) from beyond the window. The reverse scan carries (δh, δc), starting
    from (dhT, dcT); at step t, with δh_t^next, δc_t^next the carries from step t+1:

        δh_t = dhs_t + δh_t^next
        δc_t = δc_t^next + δh_t ∘ o_t ∘ (1 − tanh²(c_t))
        δz^i_t = δc_t ∘ g_t ∘ i_t(1 − i_t)          δz^f_t = δc_t ∘ c_{t-1} ∘ f_t(1 − f_t)
        δz^g_t = δc_t ∘ i_t ∘ (1 − g_t²)            δz^o_t = δh_t ∘ tanh(c_t) ∘ o_t(1 − o_t)
        carry to t−1:  δh = δz_t W_hᵀ,  δc = δc_t ∘ f_t

    The stacked δz (T, B, 4H) then gives, as one (T·B)-row product each,
    dW_x = Σ_t x_tᵀ δz_t, dW_h = Σ_t h_{t-1}ᵀ δz_t, db = Σ_t 1ᵀδz_t and δx_t = δz_t W_xᵀ.

    Returns ``(dparams, dxs, (dh0, dc0))``.
    """
    xs, h0, c0, hs, cs, gates = cache
    T, B, D = xs.shape
    H = h0.shape[-1]
    Wh_T = params["Wh"].T

    def step(carry, inputs):
        dh_next, dc_next = carry
        dh_t, a, c, c_prev = inputs
        i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
        tanh_c = jnp.tanh(c)
        dh = dh_t + dh_next
        dc = dc_next + dh * o * (1.0 - tanh_c * tanh_c)
        dz = jnp.concatenate(
            [
                dc * g * i * (1.0 - i),
                dc * c_prev * f * (1.0 - f),
                dc * i * (1.0 - g * g),
                dh * tanh_c * o * (1.0 - o),
            ],
            axis=1,
        )
        return (dz @ Wh_T, dc * f), dz

    (dh0, dc0), dzs = lax.scan(
        step, tuple(dstate), (dhs, gates, cs, _shift_in(c0, cs)), reverse=True
    )
    dz = dzs.reshape(T * B, 4 * H)
    h_prev = _shift_in(h0, hs).reshape(T * B, H)
    dparams = {"Wx": xs.reshape(T * B, D).T @ dz, "Wh": h_prev.T @ dz, "b": dz.sum(0)}
    if "b_h" in params:
        dparams["b_h"] = dparams["b"]  # ∂z/∂b_h = ∂z/∂b = I
    dxs = (dz @ params["Wx"].T).reshape(T, B, D)
    return dparams, dxs, (dh0, dc0)


# ---------------------------------------------------------------------------------------------
# Stacked layers with dropout on the non-recurrent connections (Zaremba et al. 2014)


class StackCache(NamedTuple):
    layers: list  # one RNNCache or LSTMCache per layer, bottom first
    masks: list[Array]  # L + 1 inverted-dropout masks (a scalar 1 where dropout is off), see below


def _dropout_keys(key: Array | None, count: int, rate: float, train: bool) -> list:
    if not (train and layers.dropout_active(rate)):
        return [None] * count
    if key is None:
        raise ValueError("a recurrent stack trains with dropout only with key=jax.random.key(...)")
    return list(jax.random.split(key, count))


def _stack_forward(run_layer, params_list, xs, states, dropout_rate, key, train):
    """Layer l's hs are layer l+1's xs. Dropout (Zaremba et al. 2014, §3) acts only on the
    non-recurrent connections, at L + 1 places: on the input of every layer (``masks[l]``: the
    embeddings for l = 0, layer l−1's hs above it) and on the top layer's hs (``masks[L]``), i.e.
    before the softmax; never on h_{t-1} → h_t or c. Masks are drawn per time step and unit."""
    keys = _dropout_keys(key, len(params_list) + 1, dropout_rate, train)
    use = keys[0] is not None
    masks, caches, finals = [], [], []
    inputs = xs
    for params, state, site_key in zip(params_list, states, keys[:-1], strict=True):
        inputs, mask = layers.dropout_forward(inputs, dropout_rate, site_key, use)
        inputs, final_state, cache = run_layer(params, inputs, state)
        masks.append(mask)
        caches.append(cache)
        finals.append(final_state)
    top, mask = layers.dropout_forward(inputs, dropout_rate, keys[-1], use)
    masks.append(mask)
    return top, finals, StackCache(caches, masks)


def _stack_backward(backward_layer, params_list, cache: StackCache, dhs_top, dstates):
    """Top layer first; a dropout site's backward is the same mask multiply (∂(m ∘ x)/∂x = m)."""
    delta = layers.dropout_backward(cache.masks[-1], dhs_top)
    dlayers, dstates0 = [], []
    for l in reversed(range(len(params_list))):
        dparams, delta, dstate0 = backward_layer(params_list[l], cache.layers[l], delta, dstates[l])
        delta = layers.dropout_backward(cache.masks[l], delta)
        dlayers.append(dparams)
        dstates0.append(dstate0)
    return dlayers[::-1], delta, dstates0[::-1]


def rnn_stack_forward(
    layers_params: list[Params],
    xs: Array,
    h0s: list[Array],
    *,
    activation: str = "tanh",
    dropout_rate: float = 0.0,
    key: Array | None = None,
    train: bool = False,
) -> tuple[Array, list[Array], StackCache]:
    """L stacked vanilla-RNN layers (``rnn_forward``) with the dropout sites of
    :func:`lstm_stack_forward`. ``h0s``: one (B, H) initial state per layer. Returns the
    (dropped-out) top hs (T, B, H), each layer's h_T and the cache for ``rnn_stack_backward``."""

    def run_layer(params, inputs, h0):
        hs, cache = rnn_forward(params, inputs, h0, activation=activation)
        return hs, hs[-1], cache

    return _stack_forward(run_layer, layers_params, xs, h0s, dropout_rate, key, train)


def rnn_stack_backward(
    layers_params: list[Params], cache: StackCache, dhs_top: Array, dhTs: list[Array]
) -> tuple[list[Params], Array, list[Array]]:
    """Backward of :func:`rnn_stack_forward`; ``dhTs``: one (B, H) gradient arriving at each
    layer's h_T. Returns ``(dlayers, dxs, dh0s)``."""
    return _stack_backward(rnn_backward, layers_params, cache, dhs_top, dhTs)


def lstm_stack_forward(
    layers_params: list[Params],
    xs: Array,
    states: list[tuple[Array, Array]],
    *,
    dropout_rate: float = 0.0,
    key: Array | None = None,
    train: bool = False,
) -> tuple[Array, list[tuple[Array, Array]], StackCache]:
    """L stacked LSTMs (``lstm_forward``); dropout on the L + 1 non-recurrent connections as
    Zaremba et al. (2014, §3): the input of every layer and the top layer's output. Inverted
    dropout: a kept unit is scaled by 1/(1 − rate), so evaluation (``train=False``) uses the weights
    as they are (``key`` is required when ``train`` and ``dropout_rate > 0``).

    ``states`` is one (h0, c0) per layer. Returns the (dropped-out) top hs (T, B, H_top), one
    (h_T, c_T) per layer and the cache for :func:`lstm_stack_backward`.
    """
    return _stack_forward(lstm_forward, layers_params, xs, states, dropout_rate, key, train)


def lstm_stack_backward(
    layers_params: list[Params],
    cache: StackCache,
    dhs_top: Array,
    dstates: list[tuple[Array, Array]],
) -> tuple[list[Params], Array, list[tuple[Array, Array]]]:
    """Backward of :func:`lstm_stack_forward`. ``dstates`` is one (dhT, dcT) per layer. Returns
    ``(dlayers, dxs, dstates0)`` where ``dstates0`` is one (dh0, dc0) per layer."""
    return _stack_backward(lstm_backward, layers_params, cache, dhs_top, dstates)
