"""Small convolutional classifier (CMU's CNN lecture): NHWC images, every gradient by hand.

Forward, one block per entry of ``channels`` (no conv bias with batch norm: β plays its part):
    z = x ⋆ W + b  [→ batch norm over N, H, W]  a = relu(z)  x' = maxpool₂(a)
then  h = relu(flatten(x') W_d + b_d)  [→ dropout]  s = h W_o + b_o,  J = mean CE(softmax(s), y).
Backward runs the same pairs in reverse (nn/conv.py, nn/layers.py): δ(s) = (P − Y)/N, the affine
and ReLU rules of CS224n notes §2.3, max-pool routing δ to each window's arg-max, and the conv
layer's two correlations (∂L/∂W = x ⋆ δ, ∂L/∂x = δ ⋆ flipped W).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp

from lecturenn.errors import UserError
from lecturenn.models.base import Model
from lecturenn.nn import conv, layers, losses
from lecturenn.nn.init import get_initializer


@dataclass(frozen=True)
class CNNConfig:
    input_shape: tuple[int, int, int]  # (H, W, C)
    num_classes: int
    channels: tuple[int, ...] = (32, 64)
    kernel: int = 3
    pool: int = 2
    dense: int = 128
    dropout: float = 0.0
    batchnorm: bool = False
    init: str = "he_normal"
    init_options: dict = field(default_factory=dict)
    bn_momentum: float = 0.9
    conv_impl: str = "auto"
    dtype: str = "float32"


def _flat_size(cfg: CNNConfig) -> int:
    h, w, _ = cfg.input_shape
    for _ in cfg.channels:  # "same" conv keeps H×W; valid pooling floors it
        h, w = (h - cfg.pool) // cfg.pool + 1, (w - cfg.pool) // cfg.pool + 1
        if h < 1 or w < 1:
            raise UserError(
                f"model.channels: {len(cfg.channels)} conv+pool blocks shrink a "
                f"{cfg.input_shape[0]}×{cfg.input_shape[1]} image to nothing; use fewer blocks"
            )
    return h * w * cfg.channels[-1]


def make(cfg: CNNConfig) -> Model:
    """Build the CNN's pure functions, closed over its static config."""
    if not 0.0 <= cfg.dropout < 1.0:
        raise UserError(f"model.dropout must be in [0, 1), got {cfg.dropout}")
    if not cfg.channels:
        raise UserError("model.channels must list at least one conv layer, e.g. [32, 64]")
    dtype = jnp.dtype(cfg.dtype)
    initializer = get_initializer(cfg.init, **cfg.init_options)
    in_channels = (cfg.input_shape[2], *cfg.channels[:-1])
    flat = _flat_size(cfg)
    k = cfg.kernel

    def init(key):
        keys = jax.random.split(key, len(cfg.channels) + 2)
        convs = []
        for kk, cin, cout in zip(keys[:-2], in_channels, cfg.channels, strict=True):
            # the initializers read fan-in/out from a 2-D shape: (k·k·C_in, C_out)
            W = initializer(kk, (k * k * cin, cout), dtype).reshape(k, k, cin, cout)
            # batch norm's shift β replaces the conv bias, whose gradient would be exactly 0
            convs.append({"W": W} if cfg.batchnorm else {"W": W, "b": jnp.zeros((cout,), dtype)})
        params = {
            "conv": convs,
            "dense": {
                "W": initializer(keys[-2], (flat, cfg.dense), dtype),
                "b": jnp.zeros((cfg.dense,), dtype),
            },
            "out": {
                "W": initializer(keys[-1], (cfg.dense, cfg.num_classes), dtype),
                "b": jnp.zeros((cfg.num_classes,), dtype),
            },
        }
        state = {}
        if cfg.batchnorm:
            pairs = [layers.batchnorm_init(c, dtype) for c in cfg.channels]
            params["bn"] = [p for p, _ in pairs]
            state = {"bn": [s for _, s in pairs]}
        return params, state

    def _forward(params, state, x, key, train):
        a = x.astype(dtype)
        blocks, new_bn = [], []
        for i in range(len(cfg.channels)):
            z, conv_cache = conv.conv2d_forward(
                _with_bias(params["conv"][i]), a, padding="same", impl=cfg.conv_impl
            )
            bn_cache = None
            if cfg.batchnorm:
                z, bn_state, bn_cache = layers.batchnorm_forward(
                    params["bn"][i], state["bn"][i], z, train=train, momentum=cfg.bn_momentum
                )
                new_bn.append(bn_state)
            r, relu_cache = layers.activation_forward("relu", z)
            a, pool_cache = conv.maxpool_forward(r, size=cfg.pool, stride=cfg.pool)
            blocks.append((conv_cache, bn_cache, relu_cache, pool_cache))
        f, flat_cache = conv.flatten_forward(a)
        z, dense_cache = layers.affine_forward(params["dense"], f)
        h, relu_cache = layers.activation_forward("relu", z)
        mask = None
        if train and cfg.dropout > 0:
            h, mask = layers.dropout_forward(h, cfg.dropout, key, True)
        scores, out_cache = layers.affine_forward(params["out"], h)
        new_state = {"bn": new_bn} if cfg.batchnorm else state
        head = (flat_cache, dense_cache, relu_cache, mask, out_cache)
        return scores, new_state, (blocks, head)

    def loss(params, state, batch, key):
        scores, new_state, _ = _forward(params, state, batch["x"], key, True)
        value = losses.softmax_cross_entropy(scores, batch["y"])
        return value, (new_state, {"accuracy": _accuracy(scores, batch["y"])})

    def manual_value_and_grad(params, state, batch, key):
        scores, new_state, (blocks, head) = _forward(params, state, batch["x"], key, True)
        flat_cache, dense_cache, relu_cache, mask, out_cache = head
        value, delta = losses.softmax_cross_entropy_value_and_grad(scores, batch["y"])
        grads = {}
        grads["out"], dh = layers.affine_backward(params["out"], out_cache, delta)
        if mask is not None:
            dh = layers.dropout_backward(mask, dh)
        dz = layers.activation_backward("relu", relu_cache, dh)
        grads["dense"], df = layers.affine_backward(params["dense"], dense_cache, dz)
        da = conv.flatten_backward(flat_cache, df)
        grads["conv"] = [None] * len(cfg.channels)
        if cfg.batchnorm:
            grads["bn"] = [None] * len(cfg.channels)
        for i in reversed(range(len(cfg.channels))):
            conv_cache, bn_cache, block_relu_cache, pool_cache = blocks[i]
            dr = conv.maxpool_backward(pool_cache, da)
            dz = layers.activation_backward("relu", block_relu_cache, dr)
            if cfg.batchnorm:
                grads["bn"][i], dz = layers.batchnorm_backward(params["bn"][i], bn_cache, dz)
            conv_grads, da = conv.conv2d_backward(params["conv"][i], conv_cache, dz)
            grads["conv"][i] = {name: conv_grads[name] for name in params["conv"][i]}
        aux = {"accuracy": _accuracy(scores, batch["y"])}
        return (value, (new_state, aux)), grads

    def predict(params, state, x):
        scores, _, _ = _forward(params, state, x, jax.random.PRNGKey(0), False)
        return scores

    return Model("cnn", init, loss, manual_value_and_grad, predict)


def _with_bias(p: dict) -> dict:
    return p if "b" in p else {"W": p["W"], "b": jnp.zeros((p["W"].shape[-1],), p["W"].dtype)}


def _accuracy(scores, labels):
    return jnp.mean((jnp.argmax(scores, axis=-1) == labels).astype(jnp.float32))
