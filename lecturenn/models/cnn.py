"""Small convolutional classifier (CMU's CNN lecture): NHWC images, every gradient by hand.

Forward, one block per entry of ``channels`` (no conv bias with batch norm: β plays its part):
    z = x ⋆ W + b  [→ batch norm over N, H, W]  a = relu(z)  x' = maxpool₂(a)
then  h = relu(flatten(x') W_d + b_d)  [→ dropout]  s = h W_o + b_o,  J = mean CE(softmax(s), y).
Backward runs the same pairs in reverse (nn/conv.py, nn/layers.py): δ(s) = (P − Y)/N, the affine
and ReLU rules of CS224n notes §1.6, max-pool routing δ to each window's arg-max, and the conv
layer's two correlations (∂L/∂W = x ⋆ δ, ∂L/∂x = δ ⋆ flipped W).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp

from lecturenn.errors import UserError
from lecturenn.models.base import Model, bind, check_positive, check_rate, setting
from lecturenn.nn import conv, layers, losses
from lecturenn.nn.init import get_initializer

KIND = "cnn"
CONV_IMPLS = ("auto", "im2col", "lax")


@dataclass(frozen=True)
class CNNConfig:
    input_shape: tuple[int, int, int] | None = setting(None, "image (H, W, C)", data=True)
    num_classes: int | None = setting(None, "number of classes", data=True)
    channels: tuple[int, ...] = setting((32, 64), "output channels of each conv + pool block")
    kernel: int = setting(3, "square kernel size of every conv layer ('same' padding)")
    pool: int = setting(2, "max-pool window and stride after each conv layer")
    dense: int = setting(128, "units of the fully connected layer before the output")
    dropout: float = setting(0.0, "inverted dropout rate on the dense layer", traced=True)
    batchnorm: bool = setting(False, "batch norm after each conv (replaces the conv bias)")
    bn_momentum: float = setting(0.9, "batch norm: running ← m · running + (1 − m) · batch")
    init: str = setting("he_normal", "weight initializer (nn/init.py names)")
    init_options: dict = setting({}, "settings of the initializer")
    conv_impl: str = setting(
        "auto", "convolution: im2col (matmuls), lax (lax.conv), auto (im2col for 1 channel)"
    )
    dtype: str = setting("float32", "parameter and computation dtype")

    def check(self) -> None:
        if not self.channels:
            raise UserError("model.channels must list at least one conv layer, e.g. [32, 64]")
        check_positive(self, "channels", "kernel", "pool", "dense")
        check_rate(self, "dropout")
        if self.conv_impl not in CONV_IMPLS:
            raise UserError(
                f"model.conv_impl must be one of {', '.join(CONV_IMPLS)}, got {self.conv_impl!r}"
            )
        get_initializer(self.init, **self.init_options)
        if self.input_shape is not None:
            _flat_size(self)


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


def init(cfg: CNNConfig, key: jax.Array) -> tuple[dict, dict]:
    """Conv kernels (HWIO) and dense weights from the initializer, biases 0; with batch norm,
    γ = 1, β = 0 per channel and no conv bias."""
    dtype = jnp.dtype(cfg.dtype)
    initializer = get_initializer(cfg.init, **cfg.init_options)
    in_channels = (cfg.input_shape[2], *cfg.channels[:-1])
    k = cfg.kernel
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
            "W": initializer(keys[-2], (_flat_size(cfg), cfg.dense), dtype),
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


def _forward(cfg: CNNConfig, params, state, x, key, train):
    a = x.astype(jnp.dtype(cfg.dtype))
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
    if train and layers.dropout_active(cfg.dropout):
        h, mask = layers.dropout_forward(h, cfg.dropout, key, True)
    scores, out_cache = layers.affine_forward(params["out"], h)
    new_state = {"bn": new_bn} if cfg.batchnorm else state
    head = (flat_cache, dense_cache, relu_cache, mask, out_cache)
    return scores, new_state, (blocks, head)


def loss(cfg: CNNConfig, params, state, batch, key):
    scores, new_state, _ = _forward(cfg, params, state, batch["x"], key, True)
    value = losses.softmax_cross_entropy(scores, batch["y"])
    return value, (new_state, {"accuracy": losses.accuracy(scores, batch["y"])})


def manual_value_and_grad(cfg: CNNConfig, params, state, batch, key):
    scores, new_state, (blocks, head) = _forward(cfg, params, state, batch["x"], key, True)
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
    aux = {"accuracy": losses.accuracy(scores, batch["y"])}
    return (value, (new_state, aux)), grads


def predict(cfg: CNNConfig, params, state, x):
    """Class scores (N, K), eval mode (running batch-norm statistics, no dropout)."""
    return _forward(cfg, params, state, x, jax.random.PRNGKey(0), False)[0]


def make(cfg: CNNConfig) -> Model:
    """The CNN's pure functions, bound to its config."""
    cfg.check()
    return bind(KIND, cfg, init, loss, manual_value_and_grad, predict)


def _with_bias(p: dict) -> dict:
    return p if "b" in p else {"W": p["W"], "b": jnp.zeros((p["W"].shape[-1],), p["W"].dtype)}


def toy(cfg: CNNConfig) -> CNNConfig:
    """A small float64 instance with the same blocks, for gradient checks (small images: every
    ReLU and max-pool kink near the sampled point is a chance for centered differences to cross
    it)."""
    size = 2 * cfg.pool ** len(cfg.channels) if cfg.pool > 1 else 6
    return replace(
        cfg,
        input_shape=(size, size, 2),
        num_classes=3,
        channels=tuple(min(c, 3) for c in cfg.channels),
        dense=min(cfg.dense, 5),
        dtype="float64",
    )


def example_batch(cfg: CNNConfig, key: jax.Array, size: int = 4) -> dict:
    x_key, y_key = jax.random.split(key)
    return {
        "x": jax.random.normal(x_key, (size, *cfg.input_shape), jnp.dtype(cfg.dtype)),
        "y": jax.random.randint(y_key, (size,), 0, cfg.num_classes),
    }
