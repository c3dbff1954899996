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

from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp

from lecturenn.errors import UserError
from lecturenn.models.base import Model, bind, check_positive, setting
from lecturenn.nn import init as init_lib
from lecturenn.nn import layers, losses
from lecturenn.nn import recurrent as rec

KIND = "sequence_regressor"
CELLS = ("tanh", "irnn", "lstm")


@dataclass(frozen=True)
class SequenceRegressorConfig:
    input_dim: int | None = setting(None, "features per time step", data=True)
    cell: str = setting("irnn", "tanh, irnn (ReLU units, W_h = I) or lstm")
    hidden_dim: int = setting(100, "recurrent units")
    forget_bias: float = setting(1.0, "lstm: added to the forget-gate bias (Le et al.: 1–10)")
    init_scale: float = setting(0.001, "tanh / irnn: W_x ~ N(0, init_scale²) (Le et al.: 0.001)")
    dtype: str = setting("float32", "parameter and computation dtype")

    def check(self) -> None:
        if self.cell not in CELLS:
            raise UserError(f"model.cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        check_positive(self, "hidden_dim")


def init(cfg: SequenceRegressorConfig, key: jax.Array) -> tuple[dict, dict]:
    """The cell from recurrent.py (W_x ~ N(0, init_scale²) for tanh/IRNN, Glorot per gate block
    and the forget bias for the LSTM) and a small output layer w ~ N(0, 0.001²), c = 0."""
    dtype = jnp.dtype(cfg.dtype)
    key_cell, key_out = jax.random.split(key)
    D, H = cfg.input_dim, cfg.hidden_dim
    if cfg.cell == "lstm":
        cell = rec.lstm_init(
            key_cell, D, H, init="glorot", forget_bias=cfg.forget_bias, dtype=dtype
        )
    else:
        w_x = init_lib.normal(cfg.init_scale)
        cell = rec.rnn_init(key_cell, D, H, kind=cfg.cell, w_x=w_x, dtype=dtype)
    out = {"W": init_lib.normal(0.001)(key_out, (H, 1), dtype), "b": jnp.zeros((1,), dtype)}
    return {"cell": cell, "out": out}, {}


def _forward(cfg: SequenceRegressorConfig, params, x):
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


def loss(cfg: SequenceRegressorConfig, params, state, batch, key):
    pred, _ = _forward(cfg, params, batch["x"])
    mse = 2.0 * losses.squared_error(pred, batch["y"])  # squared_error is ½ mean (ŷ − y)²
    return mse, (state, {})


def manual_value_and_grad(cfg: SequenceRegressorConfig, params, state, batch, key):
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


def predict(cfg: SequenceRegressorConfig, params, state, x):
    return apply(cfg, params, x)


def make(cfg: SequenceRegressorConfig) -> Model:
    """The regressor's pure functions, bound to its config."""
    cfg.check()
    return bind(f"{KIND}_{cfg.cell}", cfg, init, loss, manual_value_and_grad, predict)


def toy(cfg: SequenceRegressorConfig) -> SequenceRegressorConfig:
    """A small float64 instance of the same cell, for gradient checks."""
    return replace(cfg, input_dim=2, hidden_dim=min(cfg.hidden_dim, 5), dtype="float64")


def example_batch(
    cfg: SequenceRegressorConfig, key: jax.Array, size: int = 4, length: int = 6
) -> dict:
    x_key, y_key = jax.random.split(key)
    return {
        "x": jax.random.normal(x_key, (size, length, cfg.input_dim), jnp.dtype(cfg.dtype)),
        "y": jax.random.normal(y_key, (size,), jnp.dtype(cfg.dtype)),
    }
