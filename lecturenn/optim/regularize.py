"""Weight-only regularization (L1, L2) and Collobert's fan-in learning-rate scaling.

CS224n: regularize the weights, not the biases (a bias does not interact with the inputs, so
penalizing it only shifts the decision boundary). What each leaf is comes from a *labelling*: a
pytree of the params' structure with one of ``WEIGHT``, ``BIAS``, ``EMBEDDING`` (a lookup table:
regularized, fan-in 1) or ``NORM`` (batch norm's γ and β: not regularized) per leaf. Models give
their own (``Model.labels``); without one, ``labels_by_name`` reads the labels off the keys.
"""

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.tree_util import DictKey, GetAttrKey

from lecturenn.errors import UserError
from lecturenn.optim._concrete import is_concrete

WEIGHT, BIAS, EMBEDDING, NORM = "weight", "bias", "embedding", "norm"
_REGULARIZED = (WEIGHT, EMBEDDING)


def _name(key: Any) -> str | None:
    if isinstance(key, DictKey):
        return str(key.key)
    if isinstance(key, GetAttrKey):
        return key.name
    return None


def _names_on(path: tuple) -> list[str]:
    """The dict keys (and attribute names) on the path; list indices are skipped."""
    return [name for name in map(_name, path) if name is not None]


def label_of(path: tuple, embeddings: tuple[str, ...] | None = None) -> str:
    """A leaf's label from its path: the last key "b", "b_*" or "bias" is a bias; "gamma" or "beta"
    batch norm's; a key in ``embeddings`` on the path (by default: a last key starting with "E")
    a lookup table; everything else (W, Wx, Wh, kernels, transitions) a weight."""
    names = _names_on(path)
    last = names[-1] if names else ""
    if last in ("b", "bias") or last.startswith("b_"):
        return BIAS
    if last in ("gamma", "beta"):
        return NORM
    if embeddings is None and last.startswith("E"):
        return EMBEDDING
    if embeddings is not None and any(name in embeddings for name in names):
        return EMBEDDING
    return WEIGHT


def labels_by_name(params: Any, embeddings: tuple[str, ...] | None = None) -> Any:
    """The labelling of ``params`` read off its keys (see ``label_of``)."""
    return jax.tree_util.tree_map_with_path(lambda path, _: label_of(path, embeddings), params)


def _labels(params: Any, labels: Any | None) -> Any:
    return labels_by_name(params) if labels is None else labels


def is_weight(path: tuple) -> bool:
    """Whether the leaf at ``path`` is regularized, by its name (see ``label_of``)."""
    return label_of(path) in _REGULARIZED


def weight_mask(params: Any, labels: Any | None = None) -> Any:
    """A pytree of bools with the structure of ``params``: True where L1/L2 apply (weights and
    lookup tables)."""
    return jax.tree.map(lambda label: label in _REGULARIZED, _labels(params, labels))


def _check_params(params: Any, name: str) -> None:
    if params is None:
        raise ValueError(f"{name} needs params: call update(grads, state, params)")


def add_l2(l2: float, labels: Any | None = None) -> optax.GradientTransformation:
    """L2 on weights only: g ← g + λθ for weights, biases unchanged; the gradient of
    `l2_penalty` (λ/2 Σ‖W‖², CS224n). Before an adaptive optimizer this is L2, not decoupled
    weight decay. ``labels``: the params' labelling (default: by name).
    """
    if is_concrete(l2) and l2 < 0:
        raise UserError(f"add_l2: l2 must be >= 0, got {l2!r}")

    def update(updates, state, params=None):
        _check_params(params, "add_l2")
        mask = weight_mask(params, labels)
        updates = jax.tree.map(
            lambda g, p, m: g + jnp.asarray(l2, g.dtype) * p if m else g, updates, params, mask
        )
        return updates, state

    return optax.GradientTransformation(optax.init_empty_state, update)


def add_l1(l1: float, labels: Any | None = None) -> optax.GradientTransformation:
    """L1 on weights only: g ← g + λ·sign(θ) for weights (the subgradient of `l1_penalty`,
    taking 0 at θ = 0), biases unchanged. ``labels``: the params' labelling (default: by name).
    """
    if is_concrete(l1) and l1 < 0:
        raise UserError(f"add_l1: l1 must be >= 0, got {l1!r}")

    def update(updates, state, params=None):
        _check_params(params, "add_l1")
        mask = weight_mask(params, labels)
        updates = jax.tree.map(
            lambda g, p, m: g + jnp.asarray(l1, g.dtype) * jnp.sign(p) if m else g,
            updates,
            params,
            mask,
        )
        return updates, state

    return optax.GradientTransformation(optax.init_empty_state, update)


def _weights(params: Any, labels: Any | None = None) -> list[jax.Array]:
    mask = jax.tree_util.tree_leaves(weight_mask(params, labels))
    return [leaf for leaf, m in zip(jax.tree_util.tree_leaves(params), mask, strict=True) if m]


def l2_penalty(params: Any, l2: float, labels: Any | None = None) -> jax.Array:
    """λ/2 · Σ over weight leaves of Σ θ² (CS224n), to add to a loss; its gradient is λθ."""
    return 0.5 * l2 * sum(jnp.sum(jnp.square(w)) for w in _weights(params, labels))


def l1_penalty(params: Any, l1: float, labels: Any | None = None) -> jax.Array:
    """λ · Σ over weight leaves of Σ |θ|, to add to a loss; its gradient is λ·sign(θ)."""
    return l1 * sum(jnp.sum(jnp.abs(w)) for w in _weights(params, labels))


def _fan_in(path: tuple, leaf: Any, labels_flat: dict, params_flat: dict) -> int:
    label = labels_flat[path]
    if label == EMBEDDING:
        return 1
    shape = jnp.shape(leaf)
    if label == WEIGHT and len(shape) >= 2:
        return math.prod(shape[:-1])
    if len(shape) != 1:
        return 1
    # a bias (or a vector weight): the fan-in of the weights beside it that feed its units
    fans = [
        math.prod(jnp.shape(other)[:-1])
        for other_path, other in params_flat.items()
        if other_path[:-1] == path[:-1]
        and labels_flat[other_path] == WEIGHT
        and jnp.ndim(other) >= 2
        and jnp.shape(other)[-1] == shape[0]
    ]
    return sum(fans) if fans else 1


def fan_in_scales(params: Any, labels: Any | None = None) -> Any:
    """The learning-rate multiplier 1/fan-in of each leaf of ``params`` (Python floats).

    A weight of shape (..., fan_out) has fan-in = the product of all but its last axis: (fan_in,
    fan_out) matrices and HWIO convolution kernels. A bias or other 1-D leaf takes the fan-in of
    the weights beside it in the same dict whose last axis matches its length, summed when several
    feed the same units (an LSTM's Wx and Wh), else 1. Lookup tables (``EMBEDDING``) get 1:
    Collobert et al. treat a lookup table as a layer with fan-in 1, since each row sees one input.
    """
    labels = _labels(params, labels)
    params_flat = dict(jax.tree_util.tree_flatten_with_path(params)[0])
    labels_flat = dict(zip(params_flat, jax.tree_util.tree_leaves(labels), strict=True))
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: 1.0 / _fan_in(path, leaf, labels_flat, params_flat), params
    )


def scale_by_fan_in(params: Any, labels: Any | None = None) -> optax.GradientTransformation:
    """Collobert et al. 2011 (§3.5): each layer's learning rate divided by its fan-in.

    ``params`` is used only for its shapes (and, without ``labels``, its key names), read once
    here; see ``fan_in_scales``.
    """
    scales = fan_in_scales(params, labels)

    def update(updates, state, params=None):
        del params
        updates = jax.tree.map(lambda s, u: jnp.asarray(s, u.dtype) * u, scales, updates)
        return updates, state

    return optax.GradientTransformation(optax.init_empty_state, update)


def scale_by_label(params: Any, scales: dict[str, float], labels: Any | None = None):
    """Multiply the updates of the leaves labelled ``label`` by ``scales[label]`` (others by 1):
    a slower learning rate for pretrained lookup tables, say (``{EMBEDDING: 0.1}``)."""
    factors = jax.tree.map(lambda label: float(scales.get(label, 1.0)), _labels(params, labels))

    def update(updates, state, params=None):
        del params
        updates = jax.tree.map(
            lambda f, u: u if f == 1.0 else jnp.asarray(f, u.dtype) * u, factors, updates
        )
        return updates, state

    return optax.GradientTransformation(optax.init_empty_state, update)
