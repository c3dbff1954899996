"""Bengio et al. (2003), "A Neural Probabilistic Language Model" (CS224n lecture 6):

    x = [C(w_{t-n}); …; C(w_{t-1})]           the n context words' shared feature vectors
    a = tanh(d + x H)                         hidden layer (row-vector convention: z = x W + b)
    y = b + x W + a U                         scores over the vocabulary; W is optional (direct
                                              input→output connections, "direct = true")
    J = mean CE(softmax(y), w_t)

Optional inverted dropout on ``a`` (``dropout``) and on the context features ``x``
(``embed_dropout``): not in the paper, modern regularizers, off by default.

Backward, each step the local derivative of its layer pair in nn/layers.py (CS224n notes §1.6):
δy = (P − Y)/N;  ∂U = aᵀδy, ∂W = xᵀδy, ∂b = Σδy;  δa = δy Uᵀ;  δz = (1 − a²) ∘ δa;
∂H = xᵀδz, ∂d = Σδz;  δx = δz Hᵀ (+ δy Wᵀ);  ∂C = scatter-add of δx's n blocks to their rows
(with dropout, each δ passes back through its layer's mask: δ ← m ∘ δ / (1 − p)).

Batch: ``{"x": (N, n) context ids, oldest first; "y": (N,) next-word ids}``; ``state`` is ``{}``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp

from lecturenn.errors import UserError
from lecturenn.models.base import (
    Model,
    bind,
    check_positive,
    check_rate,
    label_by_name,
    setting,
)
from lecturenn.nn import layers, losses
from lecturenn.nn.init import glorot_uniform

KIND = "nplm"


@dataclass(frozen=True)
class NPLMConfig:
    vocab_size: int | None = setting(None, "vocabulary size", data=True)
    context: int = setting(4, "n, the previous words the next one is predicted from")
    embed_dim: int = setting(100, "m, the size of a word's feature vector C(w)")
    hidden_dim: int = setting(200, "h, hidden tanh units")
    direct: bool = setting(False, "direct connections W from the features x to the scores")
    dropout: float = setting(0.0, "inverted dropout on the hidden layer a", traced=True)
    embed_dropout: float = setting(
        0.0, "inverted dropout on the context features x (before H and W)", traced=True
    )
    init_scale: float = setting(0.05, "C ~ U[±init_scale]; H, U, W Glorot-uniform; biases 0")
    dtype: str = setting("float32", "parameter and computation dtype")

    def check(self) -> None:
        if self.context < 1:
            raise UserError(f"model.context must be >= 1 previous word, got {self.context}")
        check_positive(self, "embed_dim", "hidden_dim")
        check_rate(self, "dropout", "embed_dropout")


def init(cfg: NPLMConfig, key: jax.Array) -> tuple[dict, dict]:
    dtype = jnp.dtype(cfg.dtype)
    key_c, key_h, key_u, key_w = jax.random.split(key, 4)
    V, n, m, h = cfg.vocab_size, cfg.context, cfg.embed_dim, cfg.hidden_dim
    s = cfg.init_scale
    params = {
        "C": jax.random.uniform(key_c, (V, m), dtype, -s, s),
        "hidden": {"W": glorot_uniform(key_h, (n * m, h), dtype), "b": jnp.zeros((h,), dtype)},
        "out": {"W": glorot_uniform(key_u, (h, V), dtype), "b": jnp.zeros((V,), dtype)},
    }
    if cfg.direct:
        params["direct"] = glorot_uniform(key_w, (n * m, V), dtype)
    return params, {}


def _forward(cfg: NPLMConfig, params, ids, key, train):
    """Scores (N, V) and the caches of every layer pair."""
    vectors, embed_cache = layers.embedding_forward(params["C"], ids)  # (N, n, m)
    x, window_cache = layers.window_forward(vectors)  # (N, n·m)
    key = jax.random.PRNGKey(0) if key is None else key
    use_x = train and layers.dropout_active(cfg.embed_dropout)
    key_x, key_a = jax.random.split(key) if use_x else (key, key)
    x, x_mask = layers.dropout_forward(x, cfg.embed_dropout, key_x, use_x)
    z, hidden_cache = layers.affine_forward(params["hidden"], x)
    a, act_cache = layers.activation_forward("tanh", z)
    use_dropout = train and layers.dropout_active(cfg.dropout)
    a, mask = layers.dropout_forward(a, cfg.dropout, key_a, use_dropout)
    scores, out_cache = layers.affine_forward(params["out"], a)
    if cfg.direct:
        scores = scores + x @ params["direct"]
    caches = (embed_cache, window_cache, x_mask, hidden_cache, act_cache, mask, out_cache, x)
    return scores, caches


def apply(cfg: NPLMConfig, params: dict, ids: jax.Array) -> jax.Array:
    """Scores (N, V) of the next word after each (N, n) context, evaluation mode."""
    return _forward(cfg, params, ids, None, False)[0]


def loss(cfg: NPLMConfig, params, state, batch, key):
    scores, _ = _forward(cfg, params, batch["x"], key, True)
    return losses.softmax_cross_entropy(scores, batch["y"]), (state, {})


def manual_value_and_grad(cfg: NPLMConfig, params, state, batch, key):
    scores, cache = _forward(cfg, params, batch["x"], key, True)
    embed_cache, window_cache, x_mask, hidden_cache, act_cache, mask, out_cache, x = cache
    value, dscores = losses.softmax_cross_entropy_value_and_grad(scores, batch["y"])
    grads = {}
    grads["out"], da = layers.affine_backward(params["out"], out_cache, dscores)
    da = layers.dropout_backward(mask, da)
    dz = layers.activation_backward("tanh", act_cache, da)
    grads["hidden"], dx = layers.affine_backward(params["hidden"], hidden_cache, dz)
    if cfg.direct:
        grads["direct"] = x.T @ dscores
        dx = dx + dscores @ params["direct"].T
    dx = layers.dropout_backward(x_mask, dx)
    dvectors = layers.window_backward(window_cache, dx)
    grads["C"] = layers.embedding_backward(cfg.vocab_size, embed_cache, dvectors)
    return (value, (state, {})), grads


def predict(cfg: NPLMConfig, params, state, x):
    return apply(cfg, params, x)


def labels(params) -> dict:
    """C is the lookup table of the words' feature vectors (fan-in 1), the rest by name."""
    return label_by_name(params, embeddings=("C",))


def make(cfg: NPLMConfig) -> Model:
    """The NPLM's pure functions, bound to its config."""
    cfg.check()
    return bind(KIND, cfg, init, loss, manual_value_and_grad, predict, labels=labels)


def toy(cfg: NPLMConfig) -> NPLMConfig:
    """A small float64 instance with the same structure, for gradient checks."""
    return replace(
        cfg,
        vocab_size=13,
        context=min(cfg.context, 3),
        embed_dim=min(cfg.embed_dim, 4),
        hidden_dim=min(cfg.hidden_dim, 5),
        dtype="float64",
    )


def example_batch(cfg: NPLMConfig, key: jax.Array, size: int = 8) -> dict:
    x_key, y_key = jax.random.split(key)
    return {
        "x": jax.random.randint(x_key, (size, cfg.context), 0, cfg.vocab_size),
        "y": jax.random.randint(y_key, (size,), 0, cfg.vocab_size),
    }
