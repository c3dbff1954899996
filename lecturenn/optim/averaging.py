"""Parameter averaging: an exponential moving average of the parameters the optimizer visits.

Polyak & Juditsky (1992, "Acceleration of stochastic approximation by averaging") show that the
average of SGD's iterates converges faster than the last iterate; in deep learning an exponential
moving average of the weights (Polyak averaging with a forgetting factor) is the usual form:

    θ̄_t = β θ̄_{t-1} + (1 - β) θ_t,   θ̄_0 = 0,   reported as θ̄_t / (1 - β^t)

(the division removes the bias towards the zero start, as Adam does for its moments). Training
follows θ_t unchanged; evaluation, the best epoch and the saved model use the average.

``average_params(inner, decay)`` wraps an optimizer: its updates are the inner ones, and its state
carries θ̄ and t, so the average runs inside a scanned epoch, a vmapped sweep and a checkpoint
like any other optimizer state. ``averaged_params(opt_state, params)`` reads it back.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class AverageState(NamedTuple):
    """``average``: β-weighted sum of the parameters after each update (zeros at init);
    ``count``: updates so far; ``decay``: β (float32, an array so a sweep can vary it)."""

    count: jax.Array
    decay: jax.Array
    average: Any
    inner_state: Any


def average_params(
    inner: optax.GradientTransformation, decay: float | jax.Array
) -> optax.GradientTransformation:
    """``inner`` plus an exponential moving average of the parameters after each of its
    updates (decay β per step: the average spans about 1 / (1 - β) steps)."""

    def init(params):
        return AverageState(
            count=jnp.zeros([], jnp.int32),
            decay=jnp.asarray(decay, jnp.float32),
            average=jax.tree.map(jnp.zeros_like, params),
            inner_state=inner.init(params),
        )

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("average_params needs the parameters: call update(g, state, params)")
        updates, inner_state = inner.update(updates, state.inner_state, params)
        new_params = optax.apply_updates(params, updates)

        def blend(a, p):
            beta = state.decay.astype(p.dtype)
            return beta * a + (1 - beta) * p

        average = jax.tree.map(blend, state.average, new_params)
        return updates, AverageState(state.count + 1, state.decay, average, inner_state)

    return optax.GradientTransformation(init, update)


def _is_average_state(node: Any) -> bool:
    return isinstance(node, AverageState)


def find_average_state(opt_state: Any) -> AverageState | None:
    """The first ``AverageState`` in a (chained, nested) optimizer state, or None."""
    nodes = jax.tree.leaves(opt_state, is_leaf=_is_average_state)
    return next((n for n in nodes if _is_average_state(n)), None)


def averaged_params(opt_state: Any, params: Any) -> Any:
    """The bias-corrected average θ̄_t / (1 - β^t) when the optimizer keeps one (``params``
    before any update, or without averaging). Works on a vmapped state (a leading trial axis on
    ``count``, ``decay`` and every leaf)."""
    found = find_average_state(opt_state)
    if found is None:
        return params
    count, decay = found.count, found.decay

    def debias(a, p):
        shape = jnp.shape(count) + (1,) * (jnp.ndim(p) - jnp.ndim(count))
        t = jnp.reshape(count, shape)
        correction = 1 - jnp.reshape(decay, shape).astype(p.dtype) ** t.astype(p.dtype)
        return jnp.where(t > 0, a / jnp.where(t > 0, correction, 1), p)

    return jax.tree.map(debias, found.average, params)
