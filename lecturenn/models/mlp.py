"""Deep MLP classifier (CS224n notes §2, MIT 6.036 ch. 8): any depth, any activation per layer,
optional inverted dropout and batch normalization, softmax + cross-entropy output.

Forward for hidden layer k:  z(k) = a(k−1) W(k) + b(k)  [→ batch norm]  a(k) = f(z(k))  [→ dropout]
Output:                      s = a(L−1) W(L) + b(L),  J = mean CE(softmax(s), y)
Backward (CS224n notes §2.3): δ(L) = (P − Y)/N;  δ(k) = f′(z(k)) ∘ (δ(k+1) W(k+1)ᵀ), and
∂J/∂W(k) = a(k−1)ᵀ δ(k), ∂J/∂b(k) = Σ δ(k) — composed here from the layer pairs in nn/layers.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp

from lecturenn.errors import UserError
from lecturenn.models.base import Model
from lecturenn.nn import layers, losses
from lecturenn.nn.activations import ACTIVATIONS
from lecturenn.nn.init import get_initializer


@dataclass(frozen=True)
class MLPConfig:
    input_dim: int
    num_classes: int
    hidden: tuple[int, ...] = (64,)
    activation: str | tuple[str, ...] = "relu"
    dropout: float = 0.0
    batchnorm: bool = False
    init: str = "glorot_uniform"
    init_options: dict = field(default_factory=dict)  # e.g. {"std": 1.0} for init = "normal"
    bn_momentum: float = 0.9
    dtype: str = "float32"
    output_bias: tuple[float, ...] | None = field(default=None)

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


def make(cfg: MLPConfig) -> Model:
    """Build the MLP's pure functions, closed over its static config."""
    acts = cfg.activations()
    sizes = (cfg.input_dim, *cfg.hidden, cfg.num_classes)
    dtype = jnp.dtype(cfg.dtype)
    initializer = get_initializer(cfg.init, **cfg.init_options)
    if not 0.0 <= cfg.dropout < 1.0:
        raise UserError(f"model.dropout must be in [0, 1), got {cfg.dropout}")

    def init(key):
        keys = jax.random.split(key, len(sizes) - 1)
        params = {
            "layers": [
                {"W": initializer(k, (m, n), dtype), "b": jnp.zeros((n,), dtype)}
                for k, m, n in zip(keys, sizes[:-1], sizes[1:], strict=True)
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

    def _forward(params, state, x, key, train):
        """Runs every layer, keeping the caches the backward pass needs."""
        a = x.reshape(x.shape[0], -1).astype(dtype)
        keys = jax.random.split(key, len(cfg.hidden)) if train and cfg.dropout > 0 else None
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

    def loss(params, state, batch, key):
        scores, new_state, _ = _forward(params, state, batch["x"], key, True)
        value = losses.softmax_cross_entropy(scores, batch["y"])
        return value, (new_state, {"accuracy": _accuracy(scores, batch["y"])})

    def manual_value_and_grad(params, state, batch, key):
        scores, new_state, (caches, out_cache, _) = _forward(params, state, batch["x"], key, True)
        value, delta = losses.softmax_cross_entropy_value_and_grad(scores, batch["y"])
        grads = {"layers": [None] * len(sizes[:-1])}
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
        aux = {"accuracy": _accuracy(scores, batch["y"])}
        return (value, (new_state, aux)), grads

    def predict(params, state, x):
        scores, _, _ = _forward(params, state, x, jax.random.PRNGKey(0), False)
        return scores

    def hidden_activations(params, state, x):
        return _forward(params, state, x, jax.random.PRNGKey(0), False)[2][2]

    return Model("mlp", init, loss, manual_value_and_grad, predict, hidden_activations)


def _accuracy(scores, labels):
    return jnp.mean((jnp.argmax(scores, axis=-1) == labels).astype(jnp.float32))
