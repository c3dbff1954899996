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
as a constant. The streams epoch (train/epochs.py) walks the windows in order carrying this state
from zeros and hands the training loop back ``{}``, so checkpoints stay batch-size free.

Batch: ``{"x": (B, T) int ids, "y": (B, T) next-token ids}``, batch-major like the data; the
model works time-major inside (recurrent.py's layout).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
from jax import lax

from lecturenn.errors import UserError
from lecturenn.models.base import Model, bind, check_positive, check_rate, label_by_name, setting
from lecturenn.nn import init as init_lib
from lecturenn.nn import layers, losses
from lecturenn.nn import recurrent as rec

KIND = "rnn_lm"
CELLS = ("lstm", "tanh", "relu", "irnn")
REDUCTIONS = ("sum_steps", "mean")
OUTPUT_BIASES = ("zero", "uniform")


@dataclass(frozen=True)
class RNNLMConfig:
    vocab_size: int | None = setting(None, "vocabulary size", data=True)
    cell: str = setting("lstm", "lstm, tanh, relu, or irnn (ReLU units, W_h = I)")
    embed_dim: int = setting(200, "word (or character) vector size")
    hidden_dim: int = setting(200, "units per recurrent layer")
    num_layers: int = setting(2, "stacked recurrent layers")
    dropout: float = setting(
        0.0, "inverted dropout on the non-recurrent connections (Zaremba et al.)", traced=True
    )
    init: str = setting(
        "uniform",
        "uniform (U[±init_scale], Zaremba); lstm: glorot per gate block; tanh/relu: default "
        "N(0, 1/fan_in)",
    )
    init_scale: float = setting(
        0.1,
        "U[±init_scale] for the embedding, the output layer and "
        "(init = uniform) the recurrent weights",
    )
    forget_bias: float = setting(0.0, "added to the LSTM forget-gate bias")
    recurrent_bias: bool = setting(
        False,
        "lstm: a second gate bias b_h on the recurrent side, drawn like b (Zaremba's Torch LSTM "
        "and torch.nn.LSTM: bias_ih and bias_hh)",
    )
    output_bias: str = setting(
        "zero", "zero, or uniform: U[±init_scale] like every parameter of Zaremba's Torch code"
    )
    tie_weights: bool = setting(False, "output matrix = embeddingᵀ (needs embed_dim = hidden_dim)")
    loss_reduction: str = setting(
        "sum_steps", "sum_steps (Zaremba: CE summed over the window's steps) or mean"
    )
    dtype: str = setting("float32", "parameter and computation dtype")

    def check(self) -> None:
        if self.cell not in CELLS:
            raise UserError(f"model.cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        if self.loss_reduction not in REDUCTIONS:
            raise UserError(
                f"model.loss_reduction must be one of {', '.join(REDUCTIONS)}, "
                f"got {self.loss_reduction!r}"
            )
        if self.output_bias not in OUTPUT_BIASES:
            raise UserError(
                f"model.output_bias must be one of {', '.join(OUTPUT_BIASES)}, "
                f"got {self.output_bias!r}"
            )
        if self.recurrent_bias and self.cell != "lstm":
            raise UserError(
                f"model.recurrent_bias is an LSTM setting; cell {self.cell!r} has one bias"
            )
        check_rate(self, "dropout")
        check_positive(self, "embed_dim", "hidden_dim", "num_layers")
        inits = ("uniform", "glorot") if self.cell == "lstm" else ("uniform", "default")
        if self.init not in inits:
            raise UserError(
                f"model.init for cell {self.cell!r} must be one of {', '.join(inits)}, "
                f"got {self.init!r}"
            )
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
    """Embedding and output ~ U[±init_scale] (Zaremba), the output bias 0 or (``output_bias =
    "uniform"``) U[±init_scale] as well; cells by recurrent.py."""
    dtype = jnp.dtype(cfg.dtype)
    key_e, key_u, *keys = jax.random.split(key, cfg.num_layers + 2)
    s = cfg.init_scale
    uniform = init_lib.uniform(s)
    params = {"embed": uniform(key_e, (cfg.vocab_size, cfg.embed_dim), dtype)}
    cells = []
    for l, k in enumerate(keys):
        input_dim = cfg.embed_dim if l == 0 else cfg.hidden_dim
        if cfg.cell == "lstm":
            cell = rec.lstm_init(
                k,
                input_dim,
                cfg.hidden_dim,
                init=cfg.init,
                scale=s,
                forget_bias=cfg.forget_bias,
                recurrent_bias=cfg.recurrent_bias,
                dtype=dtype,
            )
        elif cfg.cell == "irnn":
            cell = rec.rnn_init(k, input_dim, cfg.hidden_dim, kind="irnn", dtype=dtype)
        else:
            # U[±init_scale] as for the LSTM: a small W_h (spectral radius ≈ init_scale·√H/√3 < 1)
            # keeps the early gradients through time from exploding; the N(0, 1/H) default sits
            # at radius ≈ 1 ("default" keeps it).
            chosen = uniform if cfg.init == "uniform" else None
            cell = rec.rnn_init(k, input_dim, cfg.hidden_dim, w_x=chosen, w_h=chosen, dtype=dtype)
        cells.append(cell)
    params["layers"] = cells
    if cfg.output_bias == "uniform":
        out = {"b": uniform(jax.random.fold_in(key_u, 1), (cfg.vocab_size,), dtype)}
    else:
        out = {"b": jnp.zeros((cfg.vocab_size,), dtype)}
    if not cfg.tie_weights:
        out["W"] = uniform(key_u, (cfg.hidden_dim, cfg.vocab_size), dtype)
    params["out"] = out
    return params, {}


def _carry(cfg, state, batch_size, dtype):
    state = state if state else zero_state(cfg, batch_size, dtype)
    return jax.tree_util.tree_map(lax.stop_gradient, state)


def _output_matrix(cfg, params):
    return params["embed"].T if cfg.tie_weights else params["out"]["W"]


def _forward(cfg: RNNLMConfig, params, state, ids, key, train):
    """(T·B, V) logits, the final carry and the caches; ids (B, T)."""
    batch_size, num_steps = ids.shape
    dtype = params["embed"].dtype
    carry = _carry(cfg, state, batch_size, dtype)
    xs, embed_cache = layers.embedding_forward(params["embed"], ids.T)  # (T, B, d)
    key = jax.random.PRNGKey(0) if key is None else key
    stack = {"dropout_rate": cfg.dropout, "key": key, "train": train}
    if cfg.cell == "lstm":
        states = [(carry["h"][l], carry["c"][l]) for l in range(cfg.num_layers)]
        top, finals, stack_cache = rec.lstm_stack_forward(params["layers"], xs, states, **stack)
        new_state = {
            "h": jnp.stack([h for h, _ in finals]),
            "c": jnp.stack([c for _, c in finals]),
        }
    else:
        activation = "tanh" if cfg.cell == "tanh" else "relu"
        top, finals, stack_cache = rec.rnn_stack_forward(
            params["layers"], xs, list(carry["h"]), activation=activation, **stack
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


def loss(cfg: RNNLMConfig, params, state, batch, key):
    x, y = batch["x"], batch["y"]
    logits, new_state, _ = _forward(cfg, params, state, x, key, True)
    nll = losses.softmax_cross_entropy(logits, y.T.reshape(-1))
    return _loss_scale(cfg, x.shape[1]) * nll, (new_state, {"nll": nll})


def manual_value_and_grad(cfg: RNNLMConfig, params, state, batch, key):
    """δ = (ŷ − y)/N at the scores (CS224n), times Zaremba's T; the output layer as one
    (T·B)-row product; BPTT through the stack (recurrent.py); the embedding's scatter-add."""
    x, y = batch["x"], batch["y"]
    num_steps = x.shape[1]
    logits, new_state, cache = _forward(cfg, params, state, x, key, True)
    embed_cache, stack_cache, rows, _ = cache
    nll, dlogits = losses.softmax_cross_entropy_value_and_grad(logits, y.T.reshape(-1))
    scale = _loss_scale(cfg, num_steps)
    dlogits = dlogits * scale
    U = _output_matrix(cfg, params)
    dU = rows.T @ dlogits  # one (H, T·B) × (T·B, V) product for the whole window
    drows = dlogits @ U.T
    dtop = drows.reshape(num_steps, x.shape[0], cfg.hidden_dim)
    zeros = jnp.zeros_like(dtop[0])  # truncated BPTT: nothing flows in from the next window
    if cfg.cell == "lstm":
        dstates = [(zeros, zeros)] * cfg.num_layers
        dcells, dxs, _ = rec.lstm_stack_backward(params["layers"], stack_cache, dtop, dstates)
    else:
        dhTs = [zeros] * cfg.num_layers
        dcells, dxs, _ = rec.rnn_stack_backward(params["layers"], stack_cache, dtop, dhTs)
    dembed = layers.embedding_backward(cfg.vocab_size, embed_cache, dxs)
    dout = {"b": dlogits.sum(0)}
    if cfg.tie_weights:
        dembed = dembed + dU.T
    else:
        dout["W"] = dU
    grads = {"embed": dembed, "layers": dcells, "out": dout}
    return (scale * nll, (new_state, {"nll": nll})), grads


def predict(cfg: RNNLMConfig, params, state, x):
    return apply(cfg, params, state, x)[0]


def labels(params) -> dict:
    """The embedding is a lookup table (fan-in 1), the rest by name."""
    return label_by_name(params, embeddings=("embed",))


def make(cfg: RNNLMConfig) -> Model:
    """The LM's pure functions, bound to its config."""
    cfg.check()
    return bind(
        f"{KIND}_{cfg.cell}", cfg, init, loss, manual_value_and_grad, predict, labels=labels
    )


def toy(cfg: RNNLMConfig) -> RNNLMConfig:
    """A small float64 instance with the same cell, depth, dropout and tying."""
    size = min(cfg.hidden_dim, 5)
    return replace(
        cfg,
        vocab_size=11,
        embed_dim=size if cfg.tie_weights else min(cfg.embed_dim, 4),
        hidden_dim=size,
        num_layers=min(cfg.num_layers, 2),
        dtype="float64",
    )


def example_batch(cfg: RNNLMConfig, key: jax.Array, size: int = 3, num_steps: int = 4) -> dict:
    x_key, y_key = jax.random.split(key)
    return {
        "x": jax.random.randint(x_key, (size, num_steps), 0, cfg.vocab_size),
        "y": jax.random.randint(y_key, (size, num_steps), 0, cfg.vocab_size),
    }
