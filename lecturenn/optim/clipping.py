"""Gradient clipping (CS224n slides on exploding gradients), as optax transformations."""

from typing import Any

import jax
import jax.numpy as jnp
import optax

from lecturenn.errors import UserError
from lecturenn.optim._concrete import is_concrete


def global_norm(tree: Any) -> jax.Array:
    """‖g‖ = √(Σ over all leaves of Σ g²): the norm of the whole gradient as one vector."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(tree)))


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    """Pascanu et al. 2013 (CS224n): if ‖g‖ > threshold, g ← threshold · g / ‖g‖.

    The norm is taken over all leaves together, so the direction of the full gradient is kept.
    """
    if is_concrete(max_norm) and not max_norm > 0:
        raise UserError(f"clip_by_global_norm: max_norm must be > 0, got {max_norm!r}")

    def update(updates, state, params=None):
        del params
        norm = global_norm(updates)
        # max_norm / max(‖g‖, max_norm) is 1 below the threshold and never divides by zero.
        factor = max_norm / jnp.maximum(norm, max_norm)
        return jax.tree.map(lambda g: jnp.asarray(factor, g.dtype) * g, updates), state

    return optax.GradientTransformation(optax.init_empty_state, update)


def clip_elementwise(threshold: float) -> optax.GradientTransformation:
    """Mikolov's clipping (CS224n slides): each component is clipped to [−threshold, threshold]."""
    if is_concrete(threshold) and not threshold > 0:
        raise UserError(f"clip_elementwise: threshold must be > 0, got {threshold!r}")

    def update(updates, state, params=None):
        del params
        return jax.tree.map(lambda g: jnp.clip(g, -threshold, threshold), updates), state

    return optax.GradientTransformation(optax.init_empty_state, update)
