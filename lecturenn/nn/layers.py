"""Layers as forward/backward pairs: ``foo_forward -> (out, cache)``, then
``foo_backward(..., cache, dout) -> grads``. Batch axes lead; features are the last axis.

Caches hold only what the backward needs and are meant to be consumed inside the same trace
(one jitted step), not carried across ``jax.jit`` boundaries.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array, lax

from lecturenn.errors import UserError
from lecturenn.nn.activations import get_activation, softmax, softmax_backward

Params = dict[str, Array]

# --- affine ------------------------------------------------------------------------------------


def affine_forward(params: Params, x: Array) -> tuple[Array, Array]:
    """z = x W + b for x of shape (..., m), W (m, n), b (n,) (CS224n notes §1.6)."""
    return x @ params["W"] + params["b"], x


def affine_backward(params: Params, cache: Array, dy: Array) -> tuple[Params, Array]:
    """CS224n notes §1.6: ∂W = aᵀδ and ∂b = Σδ summed over every leading axis; δ_in = δ Wᵀ."""
    x = cache
    m, n = params["W"].shape
    x_rows, dy_rows = x.reshape(-1, m), dy.reshape(-1, n)
    # contract over the row axis directly (no materialized transposes): XLA CPU runs the
    # dot_general form faster than `x.T @ dy`, and it is what jax.grad emits
    dW = lax.dot_general(x_rows, dy_rows, (((0,), (0,)), ((), ())))
    dx = lax.dot_general(dy, params["W"], (((dy.ndim - 1,), (1,)), ((), ())))
    return {"W": dW, "b": jnp.sum(dy_rows, axis=0)}, dx


# --- activation --------------------------------------------------------------------------------


def activation_forward(name: str, z: Array) -> tuple[Array, tuple[Array, Array]]:
    """a = f(z) for any name in ``activations.ACTIVATIONS``, or "softmax" over the last axis."""
    if name == "softmax":
        a = softmax(z)
    else:
        a = get_activation(name).fn(z)
    return a, (z, a)


def activation_backward(name: str, cache: tuple[Array, Array], da: Array) -> Array:
    """δz = f'(z) ∘ δa (CS224n notes §1.6); softmax applies its full Jacobian: a ∘ (δa - Σ a∘δa)."""
    z, a = cache
    if name == "softmax":
        return softmax_backward(a, da)
    return get_activation(name).grad(z, a) * da


# --- embedding lookup --------------------------------------------------------------------------


def embedding_forward(E: Array, ids: Array) -> tuple[Array, Array]:
    """x = E[ids]: row lookup, i.e. the one-hot product L x of CS224n lecture 2, for ids of any
    integer shape; x has shape ids.shape + (d,)."""
    return E[ids], ids


def embedding_backward(num_rows: int, cache: Array, dx: Array) -> Array:
    """∂E = Σ over positions of δx scattered to row ids[position].

    A word used twice in a batch receives two contributions (micrograd's ``+=``), hence a
    scatter-add, never an assignment. The gradient has δx's dtype.
    """
    ids = cache
    d = dx.shape[-1]
    return jnp.zeros((num_rows, d), dx.dtype).at[ids.reshape(-1)].add(dx.reshape(-1, d))


# --- window concatenation ----------------------------------------------------------------------


def window_forward(x: Array) -> tuple[Array, tuple[int, ...]]:
    """(..., L, d) → (..., L·d): x_window = [x_{t-h}; …; x_{t+h}] (CS224n notes §1.4)."""
    return x.reshape(x.shape[:-2] + (x.shape[-2] * x.shape[-1],)), x.shape


def window_backward(cache: tuple[int, ...], dy: Array) -> Array:
    """Concatenation only moves entries, so δx is δy reshaped back to (..., L, d)."""
    return dy.reshape(cache)


def sentence_windows(ids: Array, window_size: int, pad_id: int) -> Array:
    """Ids of the window centred on every token: (..., T) → (..., T, window_size).

    The sequence is padded with ``window_size // 2`` copies of ``pad_id`` at both edges (the
    <s> / </s> padding of CS224n notes §1.4), so row t holds ids[t - h : t + h + 1].
    """
    if window_size < 1 or window_size % 2 == 0:
        raise UserError(
            f"window_size must be a positive odd number (a centre word and h words each side), "
            f"got {window_size}"
        )
    half = window_size // 2
    ids = jnp.asarray(ids)
    pad_width = [(0, 0)] * (ids.ndim - 1) + [(half, half)]
    padded = jnp.pad(ids, pad_width, constant_values=pad_id)
    positions = jnp.arange(ids.shape[-1])[:, None] + jnp.arange(window_size)[None, :]
    return padded[..., positions]


# --- dropout -----------------------------------------------------------------------------------


def is_number(value) -> bool:
    """True for a plain (Python or NumPy) number; False for a traced value (a vmapped sweep)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def dropout_active(rate) -> bool:
    """Whether a dropout rate may be non-zero: a traced rate always counts, so that trials of a
    sweep that differ in it share one program (the mask of a zero rate keeps every unit)."""
    return not is_number(rate) or rate > 0


def dropout_forward(x: Array, rate: float, key: Array, train: bool) -> tuple[Array, Array]:
    """Inverted dropout (Srivastava et al. 2014; CS224n): y = x ∘ mask, mask ∈ {0, 1/(1-rate)}.

    Scaling the kept units by 1/(1 - rate) at training time keeps E[y] = x, so evaluation uses
    the network unchanged. When ``train`` is False or ``rate`` is 0, y = x and the mask is a
    scalar 1 (so the backward is a multiply that XLA removes).
    """
    static_rate = is_number(rate)
    if static_rate and not 0.0 <= rate < 1.0:
        raise UserError(f"dropout rate must be in [0, 1), got {rate}")
    if not train or (static_rate and rate == 0.0):
        return x, jnp.ones((), x.dtype)
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    mask = keep.astype(x.dtype) / jnp.asarray(1.0 - rate, x.dtype)
    return x * mask, mask


def dropout_backward(mask: Array, dy: Array) -> Array:
    """δx = δy ∘ mask: dropped units pass no gradient, kept ones are scaled like the forward."""
    return dy * mask


# --- batch normalization -----------------------------------------------------------------------


class BatchNormCache(NamedTuple):
    x_hat: Array  # normalized input
    inv_std: Array  # 1/√(σ² + ε) per feature
    train: bool  # batch statistics (True) or running statistics (False) were used


def batchnorm_init(num_features: int, dtype=jnp.float32) -> tuple[Params, Params]:
    """(params {"gamma": 1, "beta": 0}, state {"mean": 0, "var": 1}) for ``num_features``."""
    params = {"gamma": jnp.ones(num_features, dtype), "beta": jnp.zeros(num_features, dtype)}
    state = {"mean": jnp.zeros(num_features, dtype), "var": jnp.ones(num_features, dtype)}
    return params, state


def batchnorm_forward(
    params: Params,
    state: Params,
    x: Array,
    *,
    train: bool,
    momentum: float = 0.9,
    eps: float = 1e-5,
) -> tuple[Array, Params, BatchNormCache]:
    """y = γ x̂ + β, x̂ = (x - μ)/√(σ² + ε) (Ioffe & Szegedy 2015, Algorithm 1).

    Statistics are per feature (the last axis) over every other axis, so (N, D) and (N, H, W, C)
    both work. Training normalizes with the batch mean and the biased batch variance (1/n) and
    updates the running statistics as running ← momentum · running + (1 - momentum) · batch,
    using the unbiased variance n/(n - 1) · σ² for the running variance, as PyTorch does
    (PyTorch's ``momentum=0.1`` is our ``momentum=0.9``). Evaluation normalizes with the
    running statistics and leaves them unchanged.
    """
    axes = tuple(range(x.ndim - 1))
    if train:
        n = x.size // x.shape[-1]
        mean = jnp.mean(x, axis=axes)
        var = jnp.mean(jnp.square(x - mean), axis=axes)
        unbiased = var * (n / max(n - 1, 1))
        new_state = {
            "mean": momentum * state["mean"] + (1.0 - momentum) * mean,
            "var": momentum * state["var"] + (1.0 - momentum) * unbiased,
        }
    else:
        mean, var, new_state = state["mean"], state["var"], state
    inv_std = jax.lax.rsqrt(var + eps)
    x_hat = (x - mean) * inv_std
    y = params["gamma"] * x_hat + params["beta"]
    return y, new_state, BatchNormCache(x_hat, inv_std, train)


def batchnorm_backward(params: Params, cache: BatchNormCache, dy: Array) -> tuple[Params, Array]:
    """∂γ = Σ δy ∘ x̂, ∂β = Σ δy, and in training (μ and σ depend on x)

    δx = (γ/σ)/n · (n·δy - Σ δy - x̂ ∘ Σ δy ∘ x̂) = (γ/σ)/n · (n·δy - ∂β - x̂ ∘ ∂γ)

    (Ioffe & Szegedy 2015, §3, collapsed to one line; σ = √(σ²_B + ε)), sums over the n rows of
    each feature; the two sums are ∂β and ∂γ, so they are computed once. In evaluation μ and σ
    are constants, so δx = δy ∘ γ/σ.
    """
    x_hat, inv_std, train = cache
    axes = tuple(range(dy.ndim - 1))
    dgamma, dbeta = jnp.sum(dy * x_hat, axis=axes), jnp.sum(dy, axis=axes)
    scale = params["gamma"] * inv_std
    if not train:
        return {"gamma": dgamma, "beta": dbeta}, dy * scale
    n = dy.size // dy.shape[-1]
    dx = (scale / n) * (n * dy - dbeta - x_hat * dgamma)
    return {"gamma": dgamma, "beta": dbeta}, dx
