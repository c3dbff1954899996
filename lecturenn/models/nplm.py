"""Bengio et al. (2003), "A Neural Probabilistic Language Model" (CS224n lecture 6):

    x = [C(w_{t-n}); …; C(w_{t-1})]           the n context words' shared feature vectors
    a = tanh(d + x H)                         hidden layer (row-vector convention: z = x W + b)
    y = b + x W + a U                         scores over the vocabulary; W is optional (direct
                                              input→output connections, "direct = true")
    J = mean CE(softmax(y), w_t)

Optional inverted dropout on ``a`` (``dropout``) and on the context features ``x``
(``embed_dropout``): not in the paper, modern regularizers, off by default.

Backward, each step the local derivative of its layer pair in nn/layers.py (CS224n notes §2.3):
δy = (P − Y)/N;  ∂U = aᵀδy, ∂W = xᵀδy, ∂b = Σδy;  δa = δy Uᵀ;  δz = (1 − a²) ∘ δa;
∂H = xᵀδz, ∂d = Σδz;  δx = δz Hᵀ (+ δy Wᵀ);  ∂C = scatter-add of δx's n blocks to their rows
(with dropout, each δ passes back through its layer's mask: δ ← m ∘ δ / (1 − p)).

Batch: ``{"x": (N, n) context ids, oldest first; "y": (N,) next-word ids}``; ``state`` is ``{}``.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from lecturenn.errors import UserError
from lecturenn.models.base import Model
from lecturenn.nn import layers, losses
from lecturenn.nn.init import glorot_uniform


@dataclass(frozen=True)
class NPLMConfig:
    vocab_size: int
    context: int = 4  # n previous words
    embed_dim: int = 100  # m, the size of a feature vector C(w)
    hidden_dim: int = 200  # h
    direct: bool = False  # direct connections W from x to the scores
    dropout: float = 0.0  # on the hidden layer a
    embed_dropout: float = 0.0  # on the context features x (before H and the direct W)
    init_scale: float = 0.05  # C ~ U[±init_scale]; H, U, W Glorot-uniform; biases 0
    dtype: str = "float32"

    def check(self) -> None:
        if self.context < 1:
            raise UserError(f"model.context must be >= 1 previous word, got {self.context}")
        for name in ("dropout", "embed_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise UserError(f"model.{name} must be in [0, 1), got {getattr(self, name)}")


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


def _forward(cfg, params, ids, key, train):
    """Scores (N, V) and the caches of every layer pair."""
    vectors, embed_cache = layers.embedding_forward(params["C"], ids)  # (N, n, m)
    x, window_cache = layers.window_forward(vectors)  # (N, n·m)
    key = jax.random.PRNGKey(0) if key is None else key
    use_x = train and cfg.embed_dropout > 0.0
    key_x, key_a = jax.random.split(key) if use_x else (key, key)
    x, x_mask = layers.dropout_forward(x, cfg.embed_dropout, key_x, use_x)
    z, hidden_cache = layers.affine_forward(params["hidden"], x)
    a, act_cache = layers.activation_forward("tanh", z)
    use_dropout = train and cfg.dropout > 0.0
    a, mask = layers.dropout_forward(a, cfg.dropout, key_a, use_dropout)
    scores, out_cache = layers.affine_forward(params["out"], a)
    if cfg.direct:
        scores = scores + x @ params["direct"]
    caches = (embed_cache, window_cache, x_mask, hidden_cache, act_cache, mask, out_cache, x)
    return scores, caches


def apply(cfg: NPLMConfig, params: dict, ids: jax.Array) -> jax.Array:
    """Scores (N, V) of the next word after each (N, n) context, evaluation mode."""
    return _forward(cfg, params, ids, None, False)[0]


def make(cfg: NPLMConfig) -> Model:
    """The NPLM's pure functions (models/base.py contract), closed over ``cfg``."""
    cfg.check()

    def init_fn(key):
        return init(cfg, key)

    def loss(params, state, batch, key):
        scores, _ = _forward(cfg, params, batch["x"], key, True)
        return losses.softmax_cross_entropy(scores, batch["y"]), (state, {})

    def manual_value_and_grad(params, state, batch, key):
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

    def predict(params, state, x):
        return apply(cfg, params, x)

    return Model(
        name="nplm",
        init=init_fn,
        loss=loss,
        manual_value_and_grad=manual_value_and_grad,
        predict=predict,
    )
