"""Deep MLP classifier (CS224n notes §1, MIT 6.036 neural-networks chapter): any depth, any
activation per layer, optional inverted dropout and batch normalization, softmax +
cross-entropy output.

Forward for hidden layer k:  z(k) = a(k−1) W(k) + b(k)  [→ batch norm]  a(k) = f(z(k))  [→ dropout]
Output:                      s = a(L−1) W(L) + b(L),  J = mean CE(softmax(s), y)
Backward (CS224n notes §1.6): δ(L) = (P − Y)/N;  δ(k) = f′(z(k)) ∘ (δ(k+1) W(k+1)ᵀ), and
∂J/∂W(k) = a(k−1)ᵀ δ(k), ∂J/∂b(k) = Σ δ(k) — composed here from the layer pairs in nn/layers.py.

Batch: ``{"x": (N, ...) inputs (flattened), "y": (N,) class ids}``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp

from lecturenn.errors import UserError
from lecturenn.models.base import Model, bind, check_positive, check_rate, setting
from lecturenn.nn import layers, losses
from lecturenn.nn.activations import ACTIVATIONS
from lecturenn.nn.init import get_initializer

KIND = "mlp"


@dataclass(frozen=True)
class MLPConfig:
    input_dim: int | None = setting(None, "input features per example", data=True)
    num_classes: int | None = setting(None, "number of classes", data=True)
    hidden: tuple[int, ...] = setting((64,), "hidden layer sizes, input side first")
    activation: str | tuple[str, ...] = setting(
        "relu", "hidden activation: one name for every layer, or one per layer"
    )
    dropout: float = setting(0.0, "inverted dropout rate after each hidden activation", traced=True)
    batchnorm: bool = setting(False, "batch normalization before each hidden activation")
    bn_momentum: float = setting(0.9, "batch norm: running ← m · running + (1 − m) · batch")
    init: str = setting("glorot_uniform", "weight initializer (nn/init.py names)")
    init_options: dict = setting({}, 'settings of the initializer, e.g. {std = 1.0} for "normal"')
    output_bias_from_frequencies: bool = setting(
        False, "start the output bias at the log class frequencies of the training set"
    )
    output_bias: tuple[float, ...] | None = setting(
        None, "initial output bias (log class frequencies)", data=True
    )
    dtype: str = setting("float32", "parameter and computation dtype")

    def activations(self) -> tuple[str, ...]:
        acts = (
            (self.activation,) * len(self.hidden)
            if isinstance(self.activation, str)
            else tuple(self.activation)
        )
        if len(acts) != len(self.hidden):
            raise UserError(
                f"model.activation lists {len(acts)} activations for "
                f"{len(self.hidden)} hidden layers; give one per layer or a single name"
            )
        for name in acts:
            if name not in ACTIVATIONS or name == "softmax":
                raise UserError(
                    f"model.activation: unknown activation {name!r}; expected one of "
                    f"{', '.join(n for n in ACTIVATIONS if n != 'softmax')}"
                )
        return acts

    def check(self) -> None:
        check_positive(self, "hidden")
        check_rate(self, "dropout")
        self.activations()
        get_initializer(self.init, **self.init_options)


def sizes(cfg: MLPConfig) -> tuple[int, ...]:
    return (cfg.input_dim, *cfg.hidden, cfg.num_classes)


def init(cfg: MLPConfig, key: jax.Array) -> tuple[dict, dict]:
    """Every W from the configured initializer, biases 0 (the output bias optionally the log
    class prior); batch norm γ = 1, β = 0 with running mean 0, variance 1."""
    dtype = jnp.dtype(cfg.dtype)
    initializer = get_initializer(cfg.init, **cfg.init_options)
    shape = sizes(cfg)
    keys = jax.random.split(key, len(shape) - 1)
    params = {
        "layers": [
            {"W": initializer(k, (m, n), dtype), "b": jnp.zeros((n,), dtype)}
            for k, m, n in zip(keys, shape[:-1], shape[1:], strict=True)
        ]
    }
    if cfg.output_bias is not None:
        params["layers"][-1]["b"] = jnp.asarray(cfg.output_bias, dtype)
    state = {}
    if cfg.batchnorm:
        pairs = [layers.batchnorm_init(n, dtype) for n in cfg.hidden]
        params["bn"] = [p for p, _ in pairs]
        state = {"bn": [s for _, s in pairs]}
    return params, state


def _forward(cfg: MLPConfig, params, state, x, key, train):
    """Runs every layer, keeping the caches the backward pass needs."""
    acts = cfg.activations()
    a = x.reshape(x.shape[0], -1).astype(jnp.dtype(cfg.dtype))
    use_dropout = train and layers.dropout_active(cfg.dropout)
    keys = jax.random.split(key, len(cfg.hidden)) if use_dropout else None
    caches, new_bn, hidden = [], [], []
    for k, act in enumerate(acts):
        z, affine_cache = layers.affine_forward(params["layers"][k], a)
        bn_cache = None
        if cfg.batchnorm:
            z, bn_state, bn_cache = layers.batchnorm_forward(
                params["bn"][k], state["bn"][k], z, train=train, momentum=cfg.bn_momentum
            )
            new_bn.append(bn_state)
        a, act_cache = layers.activation_forward(act, z)
        hidden.append(a)
        mask = None
        if keys is not None:
            a, mask = layers.dropout_forward(a, cfg.dropout, keys[k], True)
        caches.append((affine_cache, bn_cache, act_cache, mask))
    scores, out_cache = layers.affine_forward(params["layers"][-1], a)
    new_state = {"bn": new_bn} if cfg.batchnorm else state
    return scores, new_state, (caches, out_cache, hidden)


def loss(cfg: MLPConfig, params, state, batch, key):
    scores, new_state, _ = _forward(cfg, params, state, batch["x"], key, True)
    value = losses.softmax_cross_entropy(scores, batch["y"])
    return value, (new_state, {"accuracy": losses.accuracy(scores, batch["y"])})


def manual_value_and_grad(cfg: MLPConfig, params, state, batch, key):
    """CS224n notes §1.6, layer by layer in reverse: δ(L) = (P − Y)/N, then for each hidden
    layer the dropout mask, f′(z) ∘ δ, batch norm's backward and the affine rule."""
    acts = cfg.activations()
    scores, new_state, (caches, out_cache, _) = _forward(cfg, params, state, batch["x"], key, True)
    value, delta = losses.softmax_cross_entropy_value_and_grad(scores, batch["y"])
    grads = {"layers": [None] * (len(cfg.hidden) + 1)}
    grads["layers"][-1], da = layers.affine_backward(params["layers"][-1], out_cache, delta)
    if cfg.batchnorm:
        grads["bn"] = [None] * len(cfg.hidden)
    for k in reversed(range(len(cfg.hidden))):
        affine_cache, bn_cache, act_cache, mask = caches[k]
        if mask is not None:
            da = layers.dropout_backward(mask, da)
        dz = layers.activation_backward(acts[k], act_cache, da)
        if cfg.batchnorm:
            grads["bn"][k], dz = layers.batchnorm_backward(params["bn"][k], bn_cache, dz)
        grads["layers"][k], da = layers.affine_backward(params["layers"][k], affine_cache, dz)
    aux = {"accuracy": losses.accuracy(scores, batch["y"])}
    return (value, (new_state, aux)), grads


def predict(cfg: MLPConfig, params, state, x):
    """Class scores (N, K), eval mode (running batch-norm statistics, no dropout)."""
    return _forward(cfg, params, state, x, jax.random.PRNGKey(0), False)[0]


def hidden_activations(cfg: MLPConfig, params, state, x):
    return _forward(cfg, params, state, x, jax.random.PRNGKey(0), False)[2][2]


def make(cfg: MLPConfig) -> Model:
    """The MLP's pure functions, bound to its config."""
    cfg.check()
    return bind(
        KIND, cfg, init, loss, manual_value_and_grad, predict, hidden_activations=hidden_activations
    )


def toy(cfg: MLPConfig) -> MLPConfig:
    """A small float64 instance with the same structure, for gradient checks."""
    return replace(
        cfg,
        input_dim=6,
        num_classes=4,
        hidden=tuple(min(h, 7) for h in cfg.hidden),
        output_bias=None,
        dtype="float64",
    )


def example_batch(cfg: MLPConfig, key: jax.Array, size: int = 10) -> dict:
    x_key, y_key = jax.random.split(key)
    return {
        "x": jax.random.normal(x_key, (size, cfg.input_dim), jnp.dtype(cfg.dtype)),
        "y": jax.random.randint(y_key, (size,), 0, cfg.num_classes),
    }
