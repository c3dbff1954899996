"""Recurrent language models, word or character level (CS224n lectures 6–7; Zaremba et al. 2014):

    x_t = E[w_t]                              embedding lookup (T, B, d)
    h_t = stack of RNN (tanh / ReLU / IRNN) or LSTM layers, dropout on non-recurrent connections
    s_t = h_t U + b_out                       one (T·B, H) × (H, V) matmul for the whole window
    J   = Σ_t mean_b CE(softmax(s_t), w_{t+1})

Loss scaling (``loss_reduction``): ``"sum_steps"`` is Zaremba's — the cross-entropy summed over the
T steps of a window and averaged over the batch (= T × the token mean), which is what makes his
SGD learning rate of 1.0 work; ``"mean"`` is the plain token mean. Either way ``aux["nll"]`` is the
token mean in nats, so perplexity = exp(nll).

Weight tying (Press & Wolf 2017; Inan et al. 2017): ``tie_weights`` uses Eᵀ as the output matrix
U (needs ``embed_dim == hidden_dim``); E then receives both the lookup and the output gradient.

State carried between windows (truncated BPTT). The model's ``state`` is the recurrent carry:
``{"h": (L, B, H)}`` for RNN cells, ``{"h": (L, B, H), "c": (L, B, H)}`` for the LSTM. An empty
state ``{}`` means zeros (the start of the streams), so ``init`` returns ``(params, {})``.
``loss`` and ``manual_value_and_grad`` return the window's final carry as the new state, and no
gradient flows into the incoming state (``lax.stop_gradient``): the next window starts from it
as a constant. The task's epoch function (experiments/tasks/language.py) walks the windows in
order carrying this state and hands the runner back ``{}``, so checkpoints stay batch-size free.

Batch: ``{"x": (B, T) int ids, "y": (B, T) next-token ids}``, batch-major like the data; the
model works time-major inside (recurrent.py's layout).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax import lax

from lecturenn.errors import UserError
from lecturenn.models.base import Model
from lecturenn.nn import layers, losses
from lecturenn.nn import recurrent as rec

CELLS = ("lstm", "tanh", "relu", "irnn")
REDUCTIONS = ("sum_steps", "mean")


@dataclass(frozen=True)
class RNNLMConfig:
    vocab_size: int
    embed_dim: int = 200
    hidden_dim: int = 200
    num_layers: int = 2
    cell: str = "lstm"  # lstm | tanh | relu | irnn (ReLU units, W_h = I)
    dropout: float = 0.0
    init: str = "uniform"  # uniform (±init_scale, Zaremba); LSTM: glorot; tanh/relu: default
    init_scale: float = 0.1  # U[±init_scale] for E, U and (init = "uniform") the LSTM
    forget_bias: float = 0.0
    tie_weights: bool = False
    loss_reduction: str = "sum_steps"
    dtype: str = "float32"

    def check(self) -> None:
        if self.cell not in CELLS:
            raise UserError(f"model.cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        if self.loss_reduction not in REDUCTIONS:
            raise UserError(
                f"model.loss_reduction must be one of {', '.join(REDUCTIONS)}, "
                f"got {self.loss_reduction!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"model.dropout must be in [0, 1), got {self.dropout}")
        inits = ("uniform", "glorot") if self.cell == "lstm" else ("uniform", "default")
        if self.init not in inits:
            raise UserError(
                f"model.init for cell {self.cell!r} must be one of {', '.join(inits)}, "
                f"got {self.init!r}"
            )
        if self.num_layers < 1:
            raise UserError(f"model.num_layers must be >= 1, got {self.num_layers}")
        if self.tie_weights and self.embed_dim != self.hidden_dim:
            raise UserError(
                f"model.tie_weights needs embed_dim == hidden_dim, got {self.embed_dim} and "
                f"{self.hidden_dim}; set them equal or tie_weights = false"
            )


def zero_state(cfg: RNNLMConfig, batch_size: int, dtype=None) -> dict:
    """The carry at the start of the streams: zeros of shape (L, B, H)."""
    dtype = jnp.dtype(cfg.dtype) if dtype is None else dtype
    zeros = jnp.zeros((cfg.num_layers, batch_size, cfg.hidden_dim), dtype)
    return {"h": zeros, "c": zeros} if cfg.cell == "lstm" else {"h": zeros}


def init(cfg: RNNLMConfig, key: jax.Array) -> tuple[dict, dict]:
    """Embedding and output ~ U[±init_scale] (Zaremba), output bias 0; cells by recurrent.py."""
    dtype = jnp.dtype(cfg.dtype)
    key_e, key_u, *keys = jax.random.split(key, cfg.num_layers + 2)
    s = cfg.init_scale
    params = {"embed": jax.random.uniform(key_e, (cfg.vocab_size, cfg.embed_dim), dtype, -s, s)}
    cells = []
    for l, k in enumerate(keys):
        input_dim = cfg.embed_dim if l == 0 else cfg.hidden_dim
        if cfg.cell == "lstm":
            cells.append(
                rec.lstm_init(
                    k,
                    input_dim,
                    cfg.hidden_dim,
                    init=cfg.init,
                    scale=s,
                    forget_bias=cfg.forget_bias,
                    dtype=dtype,
                )
            )
        else:
            kind = "irnn" if cfg.cell == "irnn" else "tanh"
            cell = rec.rnn_init(k, input_dim, cfg.hidden_dim, kind=kind, dtype=dtype)
            if cfg.init == "uniform" and kind == "tanh":
                # U[±init_scale] as for the LSTM: a small W_h (spectral radius ≈ init_scale·√H
                # ·/√3 < 1) keeps the early gradients through time from exploding; the N(0, 1/H)
                # default sits at radius ≈ 1 ("default" keeps it).
                key_x, key_h = jax.random.split(k)
                cell["Wx"] = jax.random.uniform(key_x, cell["Wx"].shape, dtype, -s, s)
                cell["Wh"] = jax.random.uniform(key_h, cell["Wh"].shape, dtype, -s, s)
            cells.append(cell)
    params["layers"] = cells
    out = {"b": jnp.zeros((cfg.vocab_size,), dtype)}
    if not cfg.tie_weights:
        out["W"] = jax.random.uniform(key_u, (cfg.hidden_dim, cfg.vocab_size), dtype, -s, s)
    params["out"] = out
    return params, {}


# --- the RNN stack (the LSTM stack lives in recurrent.py) ----------------------------------------


def _dropout_sites(key, count, train, rate):
    use = train and rate > 0.0
    return (jax.random.split(key, count) if use else [None] * count), use


def _rnn_stack_forward(cfg, cells, xs, h0s, key, train):
    """Vanilla-RNN layers with the same L + 1 dropout sites as ``lstm_stack_forward``."""
    activation = "tanh" if cfg.cell == "tanh" else "relu"
    keys, use = _dropout_sites(key, len(cells) + 1, train, cfg.dropout)
    inputs, caches, masks, finals = xs, [], [], []
    for params, h0, k in zip(cells, h0s, keys[:-1], strict=True):
        inputs, mask = layers.dropout_forward(inputs, cfg.dropout, k, use)
        hs, cache = rec.rnn_forward(params, inputs, h0, activation=activation)
        caches.append(cache)
        masks.append(mask)
        finals.append(hs[-1])
        inputs = hs
    top, mask = layers.dropout_forward(inputs, cfg.dropout, keys[-1], use)
    masks.append(mask)
    return top, finals, (caches, masks)


def _rnn_stack_backward(cells, cache, dtop):
    caches, masks = cache
    delta = layers.dropout_backward(masks[-1], dtop)
    grads = [None] * len(cells)
    for l in reversed(range(len(cells))):
        dhT = jnp.zeros_like(delta[0])  # truncated BPTT: nothing flows in from the next window
        grads[l], delta, _ = rec.rnn_backward(cells[l], caches[l], delta, dhT)
        delta = layers.dropout_backward(masks[l], delta)
    return grads, delta


# --- forward / backward of the whole model -------------------------------------------------------


def _carry(cfg, state, batch_size, dtype):
    state = state if state else zero_state(cfg, batch_size, dtype)
    return jax.tree_util.tree_map(lax.stop_gradient, state)


def _output_matrix(cfg, params):
    return params["embed"].T if cfg.tie_weights else params["out"]["W"]


def _forward(cfg, params, state, ids, key, train):
    """(T·B, V) logits, the final carry and the caches; ids (B, T)."""
    batch_size, num_steps = ids.shape
    dtype = params["embed"].dtype
    carry = _carry(cfg, state, batch_size, dtype)
    xs, embed_cache = layers.embedding_forward(params["embed"], ids.T)  # (T, B, d)
    key = jax.random.PRNGKey(0) if key is None else key
    if cfg.cell == "lstm":
        states = [(carry["h"][l], carry["c"][l]) for l in range(cfg.num_layers)]
        top, finals, stack_cache = rec.lstm_stack_forward(
            params["layers"], xs, states, dropout_rate=cfg.dropout, key=key, train=train
        )
        new_state = {
            "h": jnp.stack([h for h, _ in finals]),
            "c": jnp.stack([c for _, c in finals]),
        }
    else:
        top, finals, stack_cache = _rnn_stack_forward(
            cfg, params["layers"], xs, list(carry["h"]), key, train
        )
        new_state = {"h": jnp.stack(finals)}
    rows = top.reshape(num_steps * batch_size, cfg.hidden_dim)
    logits = rows @ _output_matrix(cfg, params) + params["out"]["b"]
    return logits, new_state, (embed_cache, stack_cache, rows, carry)


def _loss_scale(cfg, num_steps):
    return float(num_steps) if cfg.loss_reduction == "sum_steps" else 1.0


def apply(
    cfg: RNNLMConfig,
    params: dict,
    state: dict,
    ids: jax.Array,
    *,
    train: bool = False,
    key: jax.Array | None = None,
) -> tuple[jax.Array, dict]:
    """Logits (B, T, V) for ids (B, T) starting from ``state``, and the final carry."""
    batch_size, num_steps = ids.shape
    logits, new_state, _ = _forward(cfg, params, state, ids, key, train)
    logits = logits.reshape(num_steps, batch_size, cfg.vocab_size).transpose(1, 0, 2)
    return logits, new_state


def make(cfg: RNNLMConfig) -> Model:
    """The LM's pure functions (models/base.py contract), closed over ``cfg``."""
    cfg.check()

    def init_fn(key):
        return init(cfg, key)

    def loss(params, state, batch, key):
        x, y = batch["x"], batch["y"]
        logits, new_state, _ = _forward(cfg, params, state, x, key, True)
        nll = losses.softmax_cross_entropy(logits, y.T.reshape(-1))
        return _loss_scale(cfg, x.shape[1]) * nll, (new_state, {"nll": nll})

    def manual_value_and_grad(params, state, batch, key):
        x, y = batch["x"], batch["y"]
        num_steps = x.shape[1]
        logits, new_state, cache = _forward(cfg, params, state, x, key, True)
        embed_cache, stack_cache, rows, _ = cache
        # CS224n: δ = (ŷ − y)/N at the scores, times Zaremba's T.
        nll, dlogits = losses.softmax_cross_entropy_value_and_grad(logits, y.T.reshape(-1))
        scale = _loss_scale(cfg, num_steps)
        dlogits = dlogits * scale
        U = _output_matrix(cfg, params)
        dU = rows.T @ dlogits  # one (H, T·B) × (T·B, V) product for the whole window
        drows = dlogits @ U.T
        dtop = drows.reshape(num_steps, x.shape[0], cfg.hidden_dim)
        if cfg.cell == "lstm":
            zeros = jnp.zeros_like(dtop[0])
            dstates = [(zeros, zeros)] * cfg.num_layers  # truncated BPTT at the window's end
            dcells, dxs, _ = rec.lstm_stack_backward(params["layers"], stack_cache, dtop, dstates)
        else:
            dcells, dxs = _rnn_stack_backward(params["layers"], stack_cache, dtop)
        dembed = layers.embedding_backward(cfg.vocab_size, embed_cache, dxs)
        dout = {"b": dlogits.sum(0)}
        if cfg.tie_weights:
            dembed = dembed + dU.T
        else:
            dout["W"] = dU
        grads = {"embed": dembed, "layers": dcells, "out": dout}
        return (scale * nll, (new_state, {"nll": nll})), grads

    def predict(params, state, x):
        return apply(cfg, params, state, x)[0]

    return Model(
        name=f"rnn_lm_{cfg.cell}",
        init=init_fn,
        loss=loss,
        manual_value_and_grad=manual_value_and_grad,
        predict=predict,
    )
