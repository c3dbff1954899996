"""A recurrent net that reads a whole sequence and regresses one number from its last state — the
model of the adding problem (Hochreiter & Schmidhuber 1997; Le, Jaitly & Hinton 2015, the IRNN
slide of CS224n):

    h_t = RNN(h_{t-1}, x_t)  (tanh, ReLU with W_h = I (IRNN), or LSTM),  h_0 = 0
    ŷ   = h_T w + c
    J   = mean_n (ŷ_n − y_n)²                  (MSE: predicting 1 always scores 2/12 ≈ 0.167)

Backward: δŷ = 2(ŷ − y)/N; ∂w = h_Tᵀδŷ, ∂c = Σδŷ; δh_T = δŷ wᵀ enters BPTT as the gradient
arriving at the final state (recurrent.py's ``dhT``); no step has an output of its own.

Batch: ``{"x": (N, T, D) floats, "y": (N,)}``; ``state`` is ``{}``.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from lecturenn.errors import UserError
from lecturenn.models.base import Model
from lecturenn.nn import layers, losses
from lecturenn.nn import recurrent as rec

CELLS = ("tanh", "irnn", "lstm")


@dataclass(frozen=True)
class SequenceRegressorConfig:
    input_dim: int = 2
    hidden_dim: int = 100
    cell: str = "irnn"
    forget_bias: float = 1.0  # LSTM only (Le et al. use 1–10 on the adding problem)
    init_scale: float = 0.001  # std of W_x for tanh / IRNN (Le et al.: N(0, 0.001²))
    dtype: str = "float32"

    def check(self) -> None:
        if self.cell not in CELLS:
            raise UserError(f"model.cell must be one of {', '.join(CELLS)}, got {self.cell!r}")


def init(cfg: SequenceRegressorConfig, key: jax.Array) -> tuple[dict, dict]:
    dtype = jnp.dtype(cfg.dtype)
    key_cell, key_x, key_out = jax.random.split(key, 3)
    D, H = cfg.input_dim, cfg.hidden_dim
    if cfg.cell == "lstm":
        cell = rec.lstm_init(
            key_cell, D, H, init="glorot", forget_bias=cfg.forget_bias, dtype=dtype
        )
    else:
        kind = "irnn" if cfg.cell == "irnn" else "tanh"
        cell = rec.rnn_init(key_cell, D, H, kind=kind, dtype=dtype)
        cell["Wx"] = cfg.init_scale * jax.random.normal(key_x, (D, H), dtype)
    out = {"W": 0.001 * jax.random.normal(key_out, (H, 1), dtype), "b": jnp.zeros((1,), dtype)}
    return {"cell": cell, "out": out}, {}


def _forward(cfg, params, x):
    xs = jnp.swapaxes(x, 0, 1).astype(params["out"]["W"].dtype)  # (T, N, D), time-major
    h0 = jnp.zeros((xs.shape[1], cfg.hidden_dim), xs.dtype)
    if cfg.cell == "lstm":
        hs, _, cell_cache = rec.lstm_forward(params["cell"], xs, (h0, h0))
    else:
        activation = "relu" if cfg.cell == "irnn" else "tanh"
        hs, cell_cache = rec.rnn_forward(params["cell"], xs, h0, activation=activation)
    scores, out_cache = layers.affine_forward(params["out"], hs[-1])
    return scores[:, 0], (cell_cache, out_cache, hs)


def apply(cfg: SequenceRegressorConfig, params: dict, x: jax.Array) -> jax.Array:
    """ŷ (N,) for sequences x (N, T, D)."""
    return _forward(cfg, params, x)[0]


def make(cfg: SequenceRegressorConfig) -> Model:
    """The regressor's pure functions (models/base.py contract), closed over ``cfg``."""
    cfg.check()

    def init_fn(key):
        return init(cfg, key)

    def loss(params, state, batch, key):
        pred, _ = _forward(cfg, params, batch["x"])
        mse = 2.0 * losses.squared_error(pred, batch["y"])  # squared_error is ½ mean (ŷ − y)²
        return mse, (state, {})

    def manual_value_and_grad(params, state, batch, key):
        pred, (cell_cache, out_cache, hs) = _forward(cfg, params, batch["x"])
        half_mse, dpred = losses.squared_error_value_and_grad(pred, batch["y"])
        grads = {}
        grads["out"], dhT = layers.affine_backward(params["out"], out_cache, 2.0 * dpred[:, None])
        no_outputs = jnp.zeros_like(hs)
        if cfg.cell == "lstm":
            grads["cell"], _, _ = rec.lstm_backward(
                params["cell"], cell_cache, no_outputs, (dhT, jnp.zeros_like(dhT))
            )
        else:
            grads["cell"], _, _ = rec.rnn_backward(params["cell"], cell_cache, no_outputs, dhT)
        return (2.0 * half_mse, (state, {})), grads

    def predict(params, state, x):
        return apply(cfg, params, x)

    return Model(
        name=f"sequence_regressor_{cfg.cell}",
        init=init_fn,
        loss=loss,
        manual_value_and_grad=manual_value_and_grad,
        predict=predict,
    )
