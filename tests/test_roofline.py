"""benchmarks/roofline.py's FLOP count of a jaxpr: products, convolutions, scans, conds and
loops, checked against closed forms and against XLA's own cost analysis."""

from __future__ import annotations

import importlib
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from jax import lax

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def roofline(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module("roofline")


def flops(roofline, fn, *args):
    return roofline.matmul_flops(jax.make_jaxpr(fn)(*args))


def xla_flops(fn, *args):
    return jax.jit(fn).lower(*args).compile().cost_analysis()["flops"]


def test_a_product_and_a_batched_product(roofline):
    a, b = jnp.ones((3, 4)), jnp.ones((4, 5))
    assert flops(roofline, lambda a, b: a @ b, a, b) == 2 * 3 * 4 * 5
    x, y = jnp.ones((6, 3, 4)), jnp.ones((6, 4, 5))
    assert flops(roofline, jnp.matmul, x, y) == 6 * 2 * 3 * 4 * 5


def test_a_scan_body_counts_once_per_step_and_jit_calls_are_entered(roofline):
    def loop(h, W):
        step = jax.jit(lambda h, x: (jnp.tanh(h @ W + x), None))
        return lax.scan(step, h, jnp.ones((7, 3, 4)))[0]

    assert flops(roofline, loop, jnp.ones((3, 4)), jnp.ones((4, 4))) == 7 * 2 * 3 * 4 * 4


@pytest.mark.parametrize(
    "padding, strides", [("VALID", (1, 1)), ("SAME", (1, 1)), ("SAME", (2, 1))]
)
def test_convolutions_and_their_gradients_match_xla(roofline, padding, strides):
    """Padding costs nothing, as in XLA's count; each of the gradient's two convolutions (δ to
    the input: a padded, and when strided a dilated, one; δ to the kernel) costs what the forward
    does."""

    def conv(x, w):
        dims = ("NHWC", "HWIO", "NHWC")
        return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=dims)

    x, w = jnp.ones((2, 9, 9, 3)), jnp.ones((3, 3, 3, 8))
    assert flops(roofline, conv, x, w) == xla_flops(conv, x, w)
    if padding == "VALID":
        assert flops(roofline, conv, x, w) == 2 * 2 * 7 * 7 * 8 * 27
    grads = jax.grad(lambda x, w: (conv(x, w) ** 2).sum(), argnums=(0, 1))
    assert flops(roofline, grads, x, w) == 3 * flops(roofline, conv, x, w)


def test_cond_takes_its_costliest_branch_and_while_is_refused(roofline):
    a = jnp.ones((4, 4))
    branches = lambda p, a: lax.cond(p, lambda a: a @ a @ a, lambda a: a @ a, a)  # noqa: E731
    assert flops(roofline, branches, True, a) == 2 * (2 * 4 * 4 * 4)
    loop = lambda a: lax.while_loop(lambda c: c.sum() < 1e6, lambda c: c @ c, a)  # noqa: E731
    with pytest.raises(NotImplementedError, match="trip count"):
        flops(roofline, loop, a)
