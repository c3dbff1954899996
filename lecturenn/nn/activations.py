"""Elementwise nonlinearities f(z) and their derivatives f'(z), plus softmax and its backward.

CS224n notes §2.4 (neuron units) and the activation table of the lecture slides: each activation is
an ``Activation(fn, grad)`` pair. ``grad(z, a)`` receives both the pre-activation ``z`` and the
forward output ``a = fn(z)`` so that derivatives which are cheapest in terms of the output reuse it
(tanh' = 1 - a², σ' = a(1 - a)). Backpropagation through the layer is then δ_z = f'(z) ∘ δ_a.

Derivatives at kinks follow what ``jax.grad`` of the matching ``jax.nn`` function returns, so the
hand-written and automatic gradients agree everywhere:

- relu'(0) = 0 (``jax.nn.relu``),
- leaky_relu'(0) = 1 (``jax.nn.leaky_relu`` uses ``z >= 0``),
- hardtanh'(±1) = 1 (``jax.nn.hard_tanh`` keeps the linear piece on the closed interval),
- step'(z) = 0 everywhere: the Heaviside step (perceptron, MIT 6.036) has no useful gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
from jax import Array

from lecturenn.errors import UserError

LEAKY_RELU_SLOPE = 0.01


class Activation(NamedTuple):
    """An elementwise nonlinearity: ``fn(z) -> a`` and ``grad(z, a) -> f'(z)``."""

    fn: Callable[[Array], Array]
    grad: Callable[[Array, Array], Array]


def sigmoid(z: Array) -> Array:
    """σ(z) = 1 / (1 + e^{-z}), computed from e^{-|z|} so no exponential overflows."""
    e = jnp.exp(-jnp.abs(z))
    return jnp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_grad(z: Array, a: Array) -> Array:
    """σ'(z) = σ(z)(1 - σ(z)) (CS224n notes §2.4), from the forward output."""
    del z
    return a * (1.0 - a)


def tanh(z: Array) -> Array:
    """tanh(z) = 2σ(2z) - 1."""
    return jnp.tanh(z)


def tanh_grad(z: Array, a: Array) -> Array:
    """tanh'(z) = 1 - tanh²(z)."""
    del z
    return 1.0 - a * a


def hardtanh(z: Array) -> Array:
    """Hard tanh (Collobert et al. 2011): -1 below -1, z on [-1, 1], 1 above 1."""
    return jnp.clip(z, -1.0, 1.0)


def hardtanh_grad(z: Array, a: Array) -> Array:
    """1 on the closed interval [-1, 1], 0 outside (jax.nn.hard_tanh's convention at ±1)."""
    del a
    return ((z >= -1.0) & (z <= 1.0)).astype(z.dtype)


def softsign(z: Array) -> Array:
    """softsign(z) = z / (1 + |z|)."""
    return z / (1.0 + jnp.abs(z))


def softsign_grad(z: Array, a: Array) -> Array:
    """softsign'(z) = 1 / (1 + |z|)²."""
    del a
    d = 1.0 + jnp.abs(z)
    return 1.0 / (d * d)


def relu(z: Array) -> Array:
    """ReLU(z) = max(z, 0)."""
    return jnp.maximum(z, 0.0)


def relu_grad(z: Array, a: Array) -> Array:
    """1 for z > 0, else 0 (relu'(0) = 0, as jax.nn.relu)."""
    del a
    return (z > 0).astype(z.dtype)


def leaky_relu(z: Array, negative_slope: float = LEAKY_RELU_SLOPE) -> Array:
    """z for z >= 0, negative_slope · z below."""
    return jnp.where(z >= 0, z, negative_slope * z)


def leaky_relu_grad(z: Array, a: Array, negative_slope: float = LEAKY_RELU_SLOPE) -> Array:
    """1 for z >= 0 (leaky_relu'(0) = 1, as jax.nn.leaky_relu), negative_slope below."""
    del a
    return jnp.where(z >= 0, 1.0, negative_slope).astype(z.dtype)


def softplus(z: Array) -> Array:
    """softplus(z) = log(1 + e^z) = max(z, 0) + log1p(e^{-|z|}), stable for any |z|."""
    return jnp.maximum(z, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(z)))


def softplus_grad(z: Array, a: Array) -> Array:
    """softplus'(z) = σ(z)."""
    del a
    return sigmoid(z)


def identity(z: Array) -> Array:
    """f(z) = z (linear output units)."""
    return z


def identity_grad(z: Array, a: Array) -> Array:
    """f'(z) = 1."""
    del a
    return jnp.ones_like(z)


def step(z: Array) -> Array:
    """Heaviside step: 1 for z > 0, else 0 (the perceptron's sign unit, MIT 6.036)."""
    return (z > 0).astype(z.dtype)


def step_grad(z: Array, a: Array) -> Array:
    """0 everywhere: the step passes no gradient (why the perceptron needs its own rule)."""
    del a
    return jnp.zeros_like(z)


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation(sigmoid, sigmoid_grad),
    "tanh": Activation(tanh, tanh_grad),
    "hardtanh": Activation(hardtanh, hardtanh_grad),
    "softsign": Activation(softsign, softsign_grad),
    "relu": Activation(relu, relu_grad),
    "leaky_relu": Activation(leaky_relu, leaky_relu_grad),
    "softplus": Activation(softplus, softplus_grad),
    "identity": Activation(identity, identity_grad),
    "step": Activation(step, step_grad),
}


def get_activation(name: str) -> Activation:
    """The activation called ``name``; a UserError lists the valid names otherwise."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        valid = ", ".join(sorted(ACTIVATIONS))
        raise UserError(f"unknown activation {name!r}; use one of: {valid}") from None


def softmax(z: Array, axis: int = -1) -> Array:
    """softmax(z)_i = e^{z_i} / Σ_j e^{z_j}, with max(z) subtracted first so no e^{z} overflows."""
    shifted = z - jnp.max(z, axis=axis, keepdims=True)
    e = jnp.exp(shifted)
    return e / jnp.sum(e, axis=axis, keepdims=True)


def softmax_backward(a: Array, da: Array, axis: int = -1) -> Array:
    """δz = a ∘ (δa - Σ_j a_j δa_j): the softmax Jacobian diag(a) - a aᵀ applied to δa."""
    return a * (da - jnp.sum(a * da, axis=axis, keepdims=True))
