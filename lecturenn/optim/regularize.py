"""Weight-only regularization (L1, L2) and Collobert's fan-in learning-rate scaling.

CS224n: regularize the weights, not the biases (a bias does not interact with the inputs, so
penalizing it only shifts the decision boundary). Which leaves are weights is read from the
pytree path of each leaf, so any model's params dict works without declaring a mask.
"""

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.tree_util import DictKey, GetAttrKey, SequenceKey

from lecturenn.errors import UserError
from lecturenn.optim._concrete import is_concrete

# Bias and normalization names; everything else (W, Wx, Wh, E, kernels, transitions) is a weight.
_NOT_WEIGHT = ("b", "bias", "beta", "gamma")


def _name(key: Any) -> str | None:
    if isinstance(key, DictKey):
        return str(key.key)
    if isinstance(key, GetAttrKey):
        return key.name
    return None


def _last_name(path: tuple) -> str | None:
    """The last dict key (or attribute) name on the path; list indices after it are skipped."""
    for key in reversed(path):
        name = _name(key)
        if name is not None:
            return name
    return None


def _is_bias_name(name: str | None) -> bool:
    return name is not None and (name in _NOT_WEIGHT or name.startswith("b_"))


def is_weight(path: tuple) -> bool:
    """False for leaves whose last dict key is "b", "b_*", "bias", "beta" or "gamma"."""
    return not _is_bias_name(_last_name(path))


def weight_mask(params: Any) -> Any:
    """A pytree of bools with the structure of `params`: True where L1/L2 apply."""
    return jax.tree_util.tree_map_with_path(lambda path, _: is_weight(path), params)


def _check_params(params: Any, name: str) -> None:
    if params is None:
        raise ValueError(f"{name} needs params: call update(grads, state, params)")


def add_l2(l2: float) -> optax.GradientTransformation:
    """L2 on weights only: g ← g + λθ for weights, biases unchanged; the gradient of
    `l2_penalty` (λ/2 Σ‖W‖², CS224n). Before an adaptive optimizer this is L2, not decoupled
    weight decay.
    """
    if is_concrete(l2) and l2 < 0:
        raise UserError(f"add_l2: l2 must be >= 0, got {l2!r}")

    def update(updates, state, params=None):
        _check_params(params, "add_l2")
        updates = jax.tree_util.tree_map_with_path(
            lambda path, g, p: g + jnp.asarray(l2, g.dtype) * p if is_weight(path) else g,
            updates,
            params,
        )
        return updates, state

    return optax.GradientTransformation(optax.init_empty_state, update)


def add_l1(l1: float) -> optax.GradientTransformation:
    """L1 on weights only: g ← g + λ·sign(θ) for weights (the subgradient of `l1_penalty`,
    taking 0 at θ = 0), biases unchanged.
    """
    if is_concrete(l1) and l1 < 0:
        raise UserError(f"add_l1: l1 must be >= 0, got {l1!r}")

    def update(updates, state, params=None):
        _check_params(params, "add_l1")
        updates = jax.tree_util.tree_map_with_path(
            lambda path, g, p: g + jnp.asarray(l1, g.dtype) * jnp.sign(p) if is_weight(path) else g,
            updates,
            params,
        )
        return updates, state

    return optax.GradientTransformation(optax.init_empty_state, update)


def _weights(params: Any) -> list[jax.Array]:
    leaves = jax.tree_util.tree_leaves_with_path(params)
    return [leaf for path, leaf in leaves if is_weight(path)]


def l2_penalty(params: Any, l2: float) -> jax.Array:
    """λ/2 · Σ over weight leaves of Σ θ² (CS224n), to add to a loss; its gradient is λθ."""
    return 0.5 * l2 * sum(jnp.sum(jnp.square(w)) for w in _weights(params))


def l1_penalty(params: Any, l1: float) -> jax.Array:
    """λ · Σ over weight leaves of Σ |θ|, to add to a loss; its gradient is λ·sign(θ)."""
    return l1 * sum(jnp.sum(jnp.abs(w)) for w in _weights(params))


def _parent(params: Any, path: tuple) -> Any:
    """The container holding the leaf at `path`, or None for custom pytree nodes."""
    node = params
    for key in path[:-1]:
        if isinstance(key, DictKey):
            node = node[key.key]
        elif isinstance(key, SequenceKey):
            node = node[key.idx]
        elif isinstance(key, GetAttrKey):
            node = getattr(node, key.name)
        else:
            return None
    return node


def _fan_in(path: tuple, leaf: Any, params: Any) -> int:
    name = _last_name(path)
    if name is not None and name.startswith("E"):
        return 1
    shape = jnp.shape(leaf)
    if len(shape) >= 2:
        return math.prod(shape[:-1])
    if len(shape) == 0:
        return 1
    parent = _parent(params, path)
    siblings = parent.items() if isinstance(parent, dict) else ()
    fans = [
        _fan_in((*path[:-1], DictKey(key)), value, params)
        for key, value in siblings
        if jnp.ndim(value) >= 2
        and not _is_bias_name(str(key))
        and not str(key).startswith("E")
        and jnp.shape(value)[-1] == shape[0]
    ]
    return sum(fans) if fans else 1


def fan_in_scales(params: Any) -> Any:
    """The learning-rate multiplier 1/fan-in of each leaf of `params` (Python floats).

    A leaf of shape (..., fan_out) has fan-in = the product of all but its last axis: (fan_in,
    fan_out) matrices and HWIO convolution kernels. A bias or other 1-D leaf takes the fan-in of
    the weights beside it in the same dict whose last axis matches its length, summed when several
    feed the same units (an LSTM's Wx and Wh), else 1. Embeddings (key "E" or "E*") get 1:
    Collobert et al. treat a lookup table as a layer with fan-in 1, since each row sees one input.
    """
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: 1.0 / _fan_in(path, leaf, params), params
    )


def scale_by_fan_in(params: Any) -> optax.GradientTransformation:
    """Collobert et al. 2011 (§3.5): each layer's learning rate divided by its fan-in.

    `params` is used only for its shapes and key names, read once here; see `fan_in_scales`.
    """
    scales = fan_in_scales(params)

    def update(updates, state, params=None):
        del params
        updates = jax.tree.map(lambda s, u: jnp.asarray(s, u.dtype) * u, scales, updates)
        return updates, state

    return optax.GradientTransformation(optax.init_empty_state, update)
