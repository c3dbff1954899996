"""Conv/pool backward passes against jax.vjp of independent lax references (float64).

Every check runs as one compiled program per case at XLA's lowest backend optimization level:
op-by-op dispatch or full optimization would spend the file's time budget compiling.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from lecturenn.gradcheck import max_relative_error
from lecturenn.nn.conv import (
    avgpool_backward,
    avgpool_forward,
    conv2d_backward,
    conv2d_forward,
    flatten_backward,
    flatten_forward,
    maxpool_backward,
    maxpool_forward,
)

TOL = 1e-7
fast_compile_jit = functools.partial(
    jax.jit, compiler_options={"xla_backend_optimization_level": 0}
)


def reference_conv(W, b, x, stride, padding):
    y = lax.conv_general_dilated(
        x, W, (stride, stride), padding.upper(), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return y + b


def random_conv_problem(seed, image_hw, kernel_hw, cin, cout, batch=2):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(*kernel_hw, cin, cout))
    b = rng.normal(size=(cout,))
    x = rng.normal(size=(batch, *image_hw, cin))
    return W, b, x


def random_like_output(fn, seed):
    shape = jax.eval_shape(fn).shape
    return np.random.default_rng(seed).normal(size=shape)


# Each stride/padding pair meets several kernel shapes, channel counts and odd image sizes; both
# implementations run on every case.
CONV_CASES = [
    # (image_hw, kernel_hw, cin, cout, stride, padding)
    ((7, 5), (3, 3), 1, 2, 1, "same"),
    ((7, 5), (3, 3), 3, 4, 2, "same"),
    ((7, 5), (3, 3), 3, 2, 2, "valid"),
    ((7, 5), (5, 5), 3, 2, 1, "valid"),
    ((7, 5), (5, 5), 1, 4, 2, "same"),
    ((6, 6), (1, 1), 1, 4, 2, "valid"),
    ((6, 6), (1, 1), 3, 2, 1, "same"),
    ((7, 5), (2, 3), 3, 4, 1, "same"),
    ((7, 5), (2, 3), 1, 2, 2, "valid"),
    ((7, 5), (2, 3), 3, 2, 1, "valid"),
    ((8, 7), (3, 3), 10, 2, 2, "same"),  # more than 8 input channels: per-shift matmuls
    ((8, 7), (3, 3), 10, 4, 1, "valid"),
]


@functools.partial(fast_compile_jit, static_argnames=("stride", "padding"))
def conv_outputs_ours_and_reference(W, b, x, dy, stride, padding):
    ref_y, ref_vjp = jax.vjp(lambda W, b, x: reference_conv(W, b, x, stride, padding), W, b, x)
    outputs = {"reference": (ref_y, *ref_vjp(dy))}
    for impl in ("im2col", "lax"):
        y, cache = conv2d_forward({"W": W, "b": b}, x, stride=stride, padding=padding, impl=impl)
        grads, dx = conv2d_backward({"W": W, "b": b}, cache, dy)
        outputs[impl] = (y, grads["W"], grads["b"], dx)
    return outputs


@pytest.mark.parametrize("image_hw,kernel_hw,cin,cout,stride,padding", CONV_CASES)
def test_conv2d_forward_and_backward_match_vjp_of_lax_conv(
    image_hw, kernel_hw, cin, cout, stride, padding
):
    W, b, x = random_conv_problem(0, image_hw, kernel_hw, cin, cout)
    dy = random_like_output(lambda: reference_conv(W, b, x, stride, padding), seed=1)
    outputs = conv_outputs_ours_and_reference(W, b, x, dy, stride=stride, padding=padding)
    reference = outputs.pop("reference")
    for impl, ours in outputs.items():
        for name, got, want in zip(["y", "dW", "db", "dx"], ours, reference, strict=True):
            assert got.shape == want.shape, (impl, name)
            assert max_relative_error(got, want) <= TOL, (impl, name)


def test_conv2d_im2col_forward_equals_lax_forward_in_float32():
    W, b, x = (a.astype(np.float32) for a in random_conv_problem(2, (9, 9), (3, 3), 4, 5))

    @fast_compile_jit
    def both_forwards(W, b, x):
        return [
            conv2d_forward({"W": W, "b": b}, x, stride=stride, impl=impl)[0]
            for stride in (1, 2)
            for impl in ("im2col", "lax")
        ]

    y1_im2col, y1_lax, y2_im2col, y2_lax = both_forwards(W, b, x)
    assert y1_im2col.dtype == jnp.float32
    np.testing.assert_allclose(y1_im2col, y1_lax, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y2_im2col, y2_lax, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", ["im2col", "lax"])
def test_conv2d_cache_crosses_a_jit_boundary(impl):
    W, b, x = random_conv_problem(3, (6, 6), (3, 3), 2, 3)
    params = {"W": W, "b": b}
    forward = fast_compile_jit(functools.partial(conv2d_forward, stride=2, impl=impl))
    y, cache = forward(params, x)
    grads, dx = fast_compile_jit(conv2d_backward)(params, cache, 2 * y)

    def loss(params, x):
        return jnp.sum(reference_conv(params["W"], params["b"], x, 2, "same") ** 2)

    ref_grads, ref_dx = jax.grad(loss, argnums=(0, 1))(params, x)
    assert max_relative_error(grads["W"], ref_grads["W"]) <= TOL
    assert max_relative_error(dx, ref_dx) <= TOL


def test_conv2d_auto_impl_is_im2col_for_one_input_channel_else_lax():
    for cin, expected in [(1, "im2col"), (3, "lax")]:
        W, b, x = random_conv_problem(0, (4, 4), (3, 3), cin, 2)
        _, cache = jax.eval_shape(lambda W, b, x: conv2d_forward({"W": W, "b": b}, x), W, b, x)
        assert cache.impl == expected


def test_conv2d_rejects_unknown_padding_and_impl():
    W, b, x = random_conv_problem(0, (4, 4), (3, 3), 1, 1)
    with pytest.raises(ValueError, match="padding"):
        conv2d_forward({"W": W, "b": b}, x, padding="full")
    with pytest.raises(ValueError, match="impl"):
        conv2d_forward({"W": W, "b": b}, x, impl="fft")


# --- pooling ---------------------------------------------------------------------------------

POOL_CASES = [
    # (image_hw, size, stride)
    ((8, 6), 2, 2),  # fast reshape path
    ((7, 5), 2, 2),  # fast path, remainder row/column dropped
    ((7, 5), 3, 3),
    ((7, 5), 3, 2),  # overlapping windows: general path
    ((6, 5), 2, 1),
    ((7, 7), 3, 1),
]
POOL_OPS = {
    "max": (maxpool_forward, maxpool_backward),
    "avg": (avgpool_forward, avgpool_backward),
}


def reference_pool(x, size, stride, kind):
    window, strides = (1, size, size, 1), (1, stride, stride, 1)
    if kind == "max":
        return lax.reduce_window(x, -jnp.inf, lax.max, window, strides, "VALID")
    return lax.reduce_window(x, 0.0, lax.add, window, strides, "VALID") / (size * size)


@functools.partial(fast_compile_jit, static_argnames=("size", "stride", "kind"))
def pool_outputs_ours_and_reference(x, dy, size, stride, kind):
    ref_y, ref_vjp = jax.vjp(lambda x: reference_pool(x, size, stride, kind), x)
    forward, backward = POOL_OPS[kind]
    y, cache = forward(x, size=size, stride=stride)
    return (y, backward(cache, dy)), (ref_y, ref_vjp(dy)[0])


@pytest.mark.parametrize("image_hw,size,stride", POOL_CASES)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_backward_matches_vjp_of_reduce_window(kind, image_hw, size, stride):
    # Continuous random values: no ties, so every reference routes the max gradient alike.
    x = np.random.default_rng(4).normal(size=(2, *image_hw, 3))
    dy = random_like_output(lambda: reference_pool(x, size, stride, kind), seed=5)
    ours, reference = pool_outputs_ours_and_reference(x, dy, size=size, stride=stride, kind=kind)
    for name, got, want in zip(["y", "dx"], ours, reference, strict=True):
        assert got.shape == want.shape, name
        assert max_relative_error(got, want) <= TOL, name


def test_maxpool_fast_path_matches_vjp_of_reshape_max():
    x = np.random.default_rng(6).normal(size=(3, 6, 4, 2))
    dy = np.random.default_rng(7).normal(size=(3, 3, 2, 2))

    @fast_compile_jit
    def ours_and_reference(x, dy):
        ref_y, ref_vjp = jax.vjp(lambda x: x.reshape(3, 3, 2, 2, 2, 2).max(axis=(2, 4)), x)
        y, cache = maxpool_forward(x)
        return (y, maxpool_backward(cache, dy)), (ref_y, ref_vjp(dy)[0])

    (y, dx), (ref_y, ref_dx) = ours_and_reference(x, dy)
    assert max_relative_error(y, ref_y) <= TOL
    assert max_relative_error(dx, ref_dx) <= TOL


def brute_force_first_max_pool_grad(x, dy, size, stride):
    """Row-major scan of each window; the first maximum takes the window's whole δ."""
    dx = np.zeros_like(x)
    n_, ho, wo, c_ = dy.shape
    for n, h, w, c in itertools.product(range(n_), range(ho), range(wo), range(c_)):
        best = None
        for i, j in itertools.product(range(size), range(size)):
            value = x[n, h * stride + i, w * stride + j, c]
            if best is None or value > best[0]:
                best = (value, i, j)
        dx[n, h * stride + best[1], w * stride + best[2], c] += dy[n, h, w, c]
    return dx


@pytest.mark.parametrize("image_hw,size,stride", POOL_CASES)
def test_maxpool_ties_give_all_gradient_to_first_max_in_row_major_order(image_hw, size, stride):
    # Values in {0, 1, 2}: most windows hold tied maxima.
    x = np.random.default_rng(8).integers(0, 3, size=(2, *image_hw, 2)).astype(np.float64)
    # The cache crosses a jit boundary here: sizes and strides are static pytree metadata.
    y, cache = fast_compile_jit(maxpool_forward, static_argnames=("size", "stride"))(
        x, size=size, stride=stride
    )
    dy = np.random.default_rng(9).normal(size=y.shape)
    dx = fast_compile_jit(maxpool_backward)(cache, dy)
    np.testing.assert_allclose(dx, brute_force_first_max_pool_grad(x, dy, size, stride), atol=1e-12)


def test_maxpool_tie_in_one_window_goes_to_top_left_first():
    x = jnp.array([[0.0, 5.0], [5.0, 5.0]]).reshape(1, 2, 2, 1)
    y, cache = maxpool_forward(x)
    dx = maxpool_backward(cache, jnp.ones_like(y))
    np.testing.assert_array_equal(dx.reshape(2, 2), [[0.0, 1.0], [0.0, 0.0]])


def test_pool_rejects_window_larger_than_image():
    with pytest.raises(ValueError, match="do not fit"):
        maxpool_forward(jnp.zeros((1, 2, 2, 1)), size=3, stride=1)


def test_flatten_backward_is_inverse_reshape_and_matches_vjp():
    x = np.random.default_rng(10).normal(size=(2, 3, 4, 5))
    y, cache = fast_compile_jit(flatten_forward)(x)
    assert y.shape == (2, 60)
    np.testing.assert_array_equal(y[1], x[1].ravel())
    dy = np.random.default_rng(11).normal(size=y.shape)
    (dx_ref,) = jax.vjp(lambda x: x.reshape(2, -1), x)[1](dy)
    np.testing.assert_array_equal(fast_compile_jit(flatten_backward)(cache, dy), dx_ref)
