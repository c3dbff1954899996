"""Convolution, pooling and flatten with hand-written backward passes (NHWC images, HWIO kernels).

CMU's convolution lecture: a conv layer correlates the input with each filter,
``z[n, h, w, o] = Σ_{i, j, c} x[n, s·h + i, s·w + j, c] · W[i, j, c, o] + b[o]``,
and backpropagation gives two more correlations:

* ``∂L/∂W[i, j, c, o] = Σ_{n, h, w} x[n, s·h + i, s·w + j, c] · δ[n, h, w, o]`` — the input
  correlated with δ;
* ``∂L/∂x = full correlation of δ (dilated by the stride) with the kernel flipped in space and
  in/out channels swapped`` — the "transposed convolution".

Two implementations, chosen by ``impl``; both compute ∂L/∂W as shifted matmuls:

* ``"lax"`` calls ``lax.conv_general_dilated`` for the forward and for δ-to-input (flipped
  kernel, in/out swapped, lhs dilation for stride > 1). On XLA CPU these two are the fastest
  choice for C_in > 1, both in a jitted step and inside ``lax.scan``. The filter gradient written
  as a convolution (batch and channels swapped, which is what autodiff emits) is the piece that
  falls into a trap of XLA CPU: measured 10–150× slower inside ``lax.scan`` than outside, so
  it is never used here.
* ``"im2col"`` gathers the kh·kw shifted (strided) slices of the padded input and turns every
  correlation into matmuls (a C_in = 1 correlation into fused multiply-adds).
* ``"auto"`` (default) takes ``"im2col"`` for C_in = 1 and ``"lax"`` otherwise: a whole
  28×28×1→32 layer step measured 5× faster with im2col, a 14×14×32→64 one faster with lax.

Caches are pytrees whose strides, sizes and paddings are static metadata, so a cache may cross a
``jax.jit`` or ``lax.scan`` boundary.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal

import jax
import jax.numpy as jnp
from jax import Array, lax

Padding = Literal["same", "valid"]
Impl = Literal["auto", "im2col", "lax"]

_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")
# Below this many input channels one concatenated (M × kh·kw·C_in) matrix beats kh·kw thin
# per-shift products (measured: for C_in = 1 the 9-column im2col is the fast one).
_CONCAT_MAX_CHANNELS = 8


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["x_padded"],
    meta_fields=["input_hw", "stride", "pads", "impl"],
)
@dataclasses.dataclass(frozen=True)
class Conv2dCache:
    x_padded: Array
    input_hw: tuple[int, int]
    stride: int
    pads: tuple[tuple[int, int], tuple[int, int]]
    impl: str


def _axis_padding(size: int, kernel: int, stride: int, padding: Padding) -> tuple[int, int]:
    """(low, high) zero padding of one axis; "same" follows lax/TF: out = ceil(size / stride)."""
    if padding == "valid":
        return 0, 0
    if padding != "same":
        raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _shifted_slices(xp: Array, kh: int, kw: int, stride: int) -> list[Array]:
    """The kh·kw views xp[:, i + s·h, j + s·w, :] in row-major (i, j) order, each (N, Ho, Wo, C)."""
    n, hp, wp, c = xp.shape
    ho, wo = (hp - kh) // stride + 1, (wp - kw) // stride + 1
    return [
        lax.slice(
            xp,
            (0, i, j, 0),
            (n, i + (ho - 1) * stride + 1, j + (wo - 1) * stride + 1, c),
            (1, stride, stride, 1),
        )
        for i in range(kh)
        for j in range(kw)
    ]


def _correlate_im2col(xp: Array, W: Array, stride: int) -> Array:
    """Valid correlation of a pre-padded input with HWIO filters, as matmuls."""
    kh, kw, cin, cout = W.shape
    slices = _shifted_slices(xp, kh, kw, stride)
    n, ho, wo, _ = slices[0].shape
    if cin == 1:
        # A K = kh·kw matmul wastes the matrix unit; broadcast multiply-adds fuse into one loop.
        Wk = W.reshape(kh * kw, cout)
        return sum(s * Wk[k] for k, s in enumerate(slices))
    if cin <= _CONCAT_MAX_CHANNELS:
        cols = jnp.concatenate(slices, axis=-1).reshape(n * ho * wo, kh * kw * cin)
        y = cols @ W.reshape(kh * kw * cin, cout)
    else:
        Wk = W.reshape(kh * kw, cin, cout)
        y = sum(s.reshape(n * ho * wo, cin) @ Wk[k] for k, s in enumerate(slices))
    return y.reshape(n, ho, wo, cout)


def _filter_grad_im2col(xp: Array, dy: Array, kh: int, kw: int, stride: int) -> Array:
    """∂L/∂W[i, j] = Σ_{n,h,w} x[n, i + s·h, j + s·w]ᵀ δ[n, h, w]: one product per shift."""
    n, ho, wo, cout = dy.shape
    cin = xp.shape[-1]
    slices = _shifted_slices(xp, kh, kw, stride)
    delta = dy.reshape(n * ho * wo, cout)
    if cin <= _CONCAT_MAX_CHANNELS:
        cols = jnp.concatenate(slices, axis=-1).reshape(n * ho * wo, kh * kw * cin)
        return (cols.T @ delta).reshape(kh, kw, cin, cout)
    dW = jnp.stack([s.reshape(n * ho * wo, cin).T @ delta for s in slices])
    return dW.reshape(kh, kw, cin, cout)


def conv2d_forward(
    params: dict, x: Array, *, stride: int = 1, padding: Padding = "same", impl: Impl = "auto"
) -> tuple[Array, Conv2dCache]:
    """CMU conv layer: z = x ⋆ W + b (cross-correlation, zero padding, stride s).

    ``params = {"W": (kh, kw, C_in, C_out), "b": (C_out,)}``, ``x``: (N, H, W, C_in).
    ``padding="same"`` gives ceil(H / s) outputs (lax/TF convention, extra pad at the bottom/right);
    ``"valid"`` gives floor((H − kh) / s) + 1.
    """
    W, b = params["W"], params["b"]
    kh, kw = W.shape[:2]
    h, w = x.shape[1:3]
    pads = (_axis_padding(h, kh, stride, padding), _axis_padding(w, kw, stride, padding))
    xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    if impl == "auto":
        impl = "im2col" if W.shape[2] == 1 else "lax"
    if impl == "im2col":
        y = _correlate_im2col(xp, W, stride)
    elif impl == "lax":
        y = lax.conv_general_dilated(
            xp, W, (stride, stride), "VALID", dimension_numbers=_DIMENSION_NUMBERS
        )
    else:
        raise ValueError(f"impl must be 'auto', 'im2col' or 'lax', got {impl!r}")
    return y + b, Conv2dCache(xp, (h, w), stride, pads, impl)


def conv2d_backward(params: dict, cache: Conv2dCache, dy: Array) -> tuple[dict, Array]:
    """Backward of ``conv2d_forward``: returns ({"W": ∂L/∂W, "b": ∂L/∂b}, ∂L/∂x).

    ∂L/∂b = Σ_{n,h,w} δ;  ∂L/∂W = x ⋆ δ (input correlated with δ);  ∂L/∂x = full correlation of
    δ, dilated by the stride, with W flipped in space and in/out swapped. The full correlation's
    padding is shifted by the forward's padding so that it lands directly on the unpadded input.
    """
    W = params["W"]
    kh, kw = W.shape[:2]
    xp, (h, w), stride, pads = cache.x_padded, cache.input_hw, cache.stride, cache.pads
    ho, wo = dy.shape[1:3]
    db = dy.sum(axis=(0, 1, 2))

    # Low pad kh−1−pad_lo; high pad chosen so that exactly H rows come out (may crop if negative).
    dilated_h, dilated_w = (ho - 1) * stride + 1, (wo - 1) * stride + 1
    full_pads = (
        (kh - 1 - pads[0][0], h - dilated_h + pads[0][0]),
        (kw - 1 - pads[1][0], w - dilated_w + pads[1][0]),
    )
    W_transposed = jnp.flip(W, (0, 1)).transpose(0, 1, 3, 2)

    dW = _filter_grad_im2col(xp, dy, kh, kw, stride)
    if cache.impl == "im2col":
        dy_full = lax.pad(
            dy,
            jnp.zeros((), dy.dtype),
            ((0, 0, 0), (*full_pads[0], stride - 1), (*full_pads[1], stride - 1), (0, 0, 0)),
        )
        dx = _correlate_im2col(dy_full, W_transposed, 1)
    else:
        dx = lax.conv_general_dilated(
            dy,
            W_transposed,
            (1, 1),
            full_pads,
            lhs_dilation=(stride, stride),
            dimension_numbers=_DIMENSION_NUMBERS,
        )
    return {"W": dW, "b": db}, dx


# --- pooling -------------------------------------------------------------------------------------
# Pooling is "valid": windows never leave the image, so rows/columns past the last full window
# (odd H with size = stride = 2, say) are dropped by the forward and receive zero gradient.


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["argmax"],
    meta_fields=["x_shape", "size", "stride"],
)
@dataclasses.dataclass(frozen=True)
class PoolCache:
    argmax: Array | None  # max pooling: window position (row-major) of each output's max
    x_shape: tuple[int, ...]
    size: int
    stride: int


def _pool_output_hw(x: Array, size: int, stride: int) -> tuple[int, int]:
    h, w = x.shape[1:3]
    if size < 1 or stride < 1 or size > h or size > w:
        raise ValueError(f"pool size {size} / stride {stride} do not fit a {h}×{w} image")
    return (h - size) // stride + 1, (w - size) // stride + 1


def _tiles(x: Array, size: int) -> Array:
    """size == stride: (N, H, W, C) → (N, Ho, size, Wo, size, C), remainder rows/columns dropped."""
    n, h, w, c = x.shape
    ho, wo = h // size, w // size
    return x[:, : ho * size, : wo * size, :].reshape(n, ho, size, wo, size, c)


def _untile(dx6: Array, x_shape: tuple[int, ...]) -> Array:
    n, ho, size, wo, _, c = dx6.shape
    dx = dx6.reshape(n, ho * size, wo * size, c)
    return jnp.pad(dx, ((0, 0), (0, x_shape[1] - ho * size), (0, x_shape[2] - wo * size), (0, 0)))


def _scatter_window_position(d: Array, x_shape: tuple[int, ...], i: int, j: int, stride: int):
    """Place d (N, Ho, Wo, C) at x[:, i + s·h, j + s·w, :] in a zero array of x's shape."""
    ho, wo = d.shape[1:3]
    zero = jnp.zeros((), d.dtype)
    return lax.pad(
        d,
        zero,
        (
            (0, 0, 0),
            (i, x_shape[1] - i - (ho - 1) * stride - 1, stride - 1),
            (j, x_shape[2] - j - (wo - 1) * stride - 1, stride - 1),
            (0, 0, 0),
        ),
    )


def _reduce_windows(x: Array, size: int, stride: int, combine) -> Array:
    slices = _shifted_slices(x, size, size, stride)
    out = slices[0]
    for s in slices[1:]:
        out = combine(out, s)
    return out


def _window_candidates(x: Array, size: int, stride: int) -> list[Array]:
    """The size² inputs of every window, each (N, Ho, Wo, C), in row-major window order."""
    if size == stride:
        x6 = _tiles(x, size)
        return [x6[:, :, i, :, j, :] for i in range(size) for j in range(size)]
    return _shifted_slices(x, size, size, stride)


def maxpool_forward(x: Array, *, size: int = 2, stride: int = 2) -> tuple[Array, PoolCache]:
    """Max pooling over size×size windows with the given stride ("valid", NHWC).

    The forward records which window position held the maximum (the first one in row-major order
    on ties; the first NaN if the window holds one, whose output is then NaN) as a small integer
    array. The backward reads that index instead of testing
    ``x == max`` again. That test gave wrong conv/BN gradients once compiled (right eagerly),
    most likely because XLA recomputes x in two fusions with different rounding (e.g. an FMA
    in one and not the other), so no input equals the recomputed max and δ is lost.
    """
    _pool_output_hw(x, size, stride)
    candidates = _window_candidates(x, size, stride)
    y = candidates[0]
    argmax = jnp.zeros(y.shape, jnp.int8 if size * size < 128 else jnp.int32)
    for k, candidate in enumerate(candidates[1:], start=1):
        # strict: an earlier position keeps a tie; a NaN wins (and then stays), so a NaN in a
        # window reaches the output as lax.reduce_window and PyTorch's max-pool give it
        better = (candidate > y) | (jnp.isnan(candidate) & ~jnp.isnan(y))
        y = jnp.where(better, candidate, y)
        argmax = jnp.where(better, jnp.asarray(k, argmax.dtype), argmax)
    return y, PoolCache(argmax, tuple(x.shape), size, stride)


def maxpool_backward(cache: PoolCache, dy: Array) -> Array:
    """CMU: max pooling routes δ to the arg-max of each window; every other input gets zero.

    Ties: the first maximum in row-major window order (top row first, left to right) receives all
    of δ, so the gradient is deterministic and sums to δ per window. (``jax.grad`` of
    ``reduce_window`` max may pick another tied element; the two agree on tie-free inputs.)
    Overlapping windows (stride < size) add their contributions.
    """
    argmax, x_shape, size, stride = cache.argmax, cache.x_shape, cache.size, cache.stride
    routed = [jnp.where(argmax == k, dy, 0) for k in range(size * size)]
    if size == stride:
        rows = [jnp.stack(routed[i * size : (i + 1) * size], axis=3) for i in range(size)]
        return _untile(jnp.stack(rows, axis=2), x_shape)
    dx = jnp.zeros(x_shape, dy.dtype)
    for k, d in enumerate(routed):
        i, j = divmod(k, size)
        dx = dx + _scatter_window_position(d, x_shape, i, j, stride)
    return dx


def avgpool_forward(x: Array, *, size: int = 2, stride: int = 2) -> tuple[Array, PoolCache]:
    """Average pooling over size×size windows with the given stride ("valid", NHWC)."""
    _pool_output_hw(x, size, stride)
    if size == stride:
        y = _tiles(x, size).mean(axis=(2, 4))
    else:
        y = _reduce_windows(x, size, stride, jnp.add) / (size * size)
    return y, PoolCache(None, tuple(x.shape), size, stride)


def avgpool_backward(cache: PoolCache, dy: Array) -> Array:
    """Each input of a window gets δ / size²; overlapping windows add their contributions."""
    x_shape, size, stride = cache.x_shape, cache.size, cache.stride
    share = dy / (size * size)
    if size == stride:
        n, ho, wo, c = dy.shape
        dx6 = jnp.broadcast_to(share[:, :, None, :, None, :], (n, ho, size, wo, size, c))
        return _untile(dx6, x_shape)
    dx = jnp.zeros(x_shape, dy.dtype)
    for i in range(size):
        for j in range(size):
            dx = dx + _scatter_window_position(share, x_shape, i, j, stride)
    return dx


@functools.partial(jax.tree_util.register_dataclass, data_fields=[], meta_fields=["shape"])
@dataclasses.dataclass(frozen=True)
class FlattenCache:
    shape: tuple[int, ...]


def flatten_forward(x: Array) -> tuple[Array, FlattenCache]:
    """(N, H, W, C) → (N, H·W·C), row-major (channels fastest)."""
    return x.reshape(x.shape[0], -1), FlattenCache(tuple(x.shape))


def flatten_backward(cache: FlattenCache, dy: Array) -> Array:
    return dy.reshape(cache.shape)
