"""One training step: gradients (hand-written or jax.grad), optimizer update, new parameters.

``make_step(model, optimizer, grads="manual")`` and ``grads="autodiff"`` differ only in where the
gradient comes from, and nothing else, so the two can be timed and compared.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import optax

from lecturenn.errors import UserError
from lecturenn.models.base import Model

GRAD_SOURCES = ("manual", "autodiff")


def value_and_grad_fn(model: Model, grads: str = "manual") -> Callable:
    """(params, state, batch, key) -> ((loss, (state, aux)), grads) from the chosen source."""
    if grads == "manual":
        return model.manual_value_and_grad
    if grads == "autodiff":
        return jax.value_and_grad(model.loss, has_aux=True)
    raise UserError(f"train.grads must be one of {', '.join(GRAD_SOURCES)}, got {grads!r}")


def make_step(
    model: Model,
    optimizer: optax.GradientTransformation,
    grads: str = "manual",
    *,
    jit: bool = True,
) -> Callable:
    """step(params, state, opt_state, batch, key) -> (params, state, opt_state, loss, aux)."""
    vg = value_and_grad_fn(model, grads)

    def step(params, state, opt_state, batch, key):
        (loss, (state, aux)), g = vg(params, state, batch, key)
        updates, opt_state = optimizer.update(g, opt_state, params)
        return optax.apply_updates(params, updates), state, opt_state, loss, aux

    return jax.jit(step) if jit else step
