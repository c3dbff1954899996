"""Losses on raw scores, each as a triple: ``name``, ``name_grad``, ``name_value_and_grad``.

``name(scores, targets, mask=None) -> scalar``; ``name_grad(...) -> dscores``;
``name_value_and_grad(...) -> (scalar, dscores)`` shares the forward work with the gradient.

Reduction: the per-row losses are averaged over the rows that ``mask`` keeps. ``mask`` is an
optional 0/1 (or any non-negative) weight per row; the mean divides by max(Σ mask, 1), so an
all-zero mask (a batch of padding) gives loss 0 and gradient 0 rather than nan. A "row" is:

- ``squared_error`` and ``sigmoid_binary_cross_entropy``: one entry of axis 0 (per-row terms are
  summed over the other axes, e.g. the outputs of a regression or the labels of a multi-label
  problem); mask has shape (N,).
- ``softmax_cross_entropy`` and ``multiclass_hinge``: every position of the integer ``targets``,
  i.e. all axes of ``scores`` but the last (the K class scores); mask has the shape of targets.
- ``max_margin``: every entry of ``s``; mask has the shape of ``s``.

Hinge subgradients: at the kink (margin exactly 0) we take the subgradient 0, the same convention
as ``jax.nn.relu`` (a margin term contributes only when strictly positive).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from lecturenn.errors import UserError
from lecturenn.nn.activations import sigmoid


class Loss(NamedTuple):
    """A loss by name: its value, its gradient w.r.t. the scores, and both at once."""

    value: Callable[..., Array]
    grad: Callable[..., Array]
    value_and_grad: Callable[..., tuple[Array, Array]]


def _masked_mean(per_row: Array, mask: Array | None) -> tuple[Array, Array]:
    """(Σ_rows w·ℓ / max(Σ w, 1), dloss/dℓ per row = w / max(Σ w, 1))."""
    if mask is None:
        row_weight = jnp.asarray(1.0 / max(per_row.size, 1), per_row.dtype)
        return jnp.sum(per_row) * row_weight, row_weight
    assert mask.shape == per_row.shape, (mask.shape, per_row.shape)
    w = mask.astype(per_row.dtype)
    row_weight = w / jnp.maximum(jnp.sum(w), 1.0)
    return jnp.sum(per_row * row_weight), row_weight


def _expand(row_weight: Array, ndim: int) -> Array:
    """Trailing unit axes so a per-row weight broadcasts against a (rows..., features...) array."""
    return row_weight.reshape(row_weight.shape + (1,) * (ndim - row_weight.ndim))


def _sum_after_first_axis(x: Array) -> Array:
    return jnp.sum(x, axis=tuple(range(1, x.ndim))) if x.ndim > 1 else x


# --- squared error (MIT 6.036 neural-networks chapter, regression) --------------------------------


def squared_error(scores: Array, targets: Array, mask: Array | None = None) -> Array:
    """J = mean over rows of ½‖s - t‖²."""
    diff = scores - targets.astype(scores.dtype)
    return _masked_mean(0.5 * _sum_after_first_axis(diff * diff), mask)[0]


def squared_error_value_and_grad(
    scores: Array, targets: Array, mask: Array | None = None
) -> tuple[Array, Array]:
    """∂J/∂s = (s - t) · w_row / count."""
    diff = scores - targets.astype(scores.dtype)
    loss, row_weight = _masked_mean(0.5 * _sum_after_first_axis(diff * diff), mask)
    return loss, diff * _expand(row_weight, diff.ndim)


def squared_error_grad(scores: Array, targets: Array, mask: Array | None = None) -> Array:
    return squared_error_value_and_grad(scores, targets, mask)[1]


# --- softmax + negative log-likelihood (cross-entropy; CS224n slides, softmax classifier) ---


def _log_softmax(scores: Array) -> Array:
    shifted = scores - jnp.max(scores, axis=-1, keepdims=True)
    return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True))


def _one_hot(targets: Array, num_classes: int, dtype) -> Array:
    return (targets[..., None] == jnp.arange(num_classes)).astype(dtype)


def _target_entries(log_p: Array, targets: Array) -> Array:
    """log_p[..., y] for each row: a gather of one entry a row (a target outside [0, K) reads the
    nearest class; its row should be masked out)."""
    index = targets[..., None].astype(jnp.int32)
    return jnp.take_along_axis(log_p, index, axis=-1, mode="clip")[..., 0]


def target_log_probs(scores: Array, targets: Array) -> Array:
    """log softmax(s)_y of each row: the log probability a model gives the target class."""
    return _target_entries(_log_softmax(scores), targets)


def softmax_cross_entropy(scores: Array, targets: Array, mask: Array | None = None) -> Array:
    """J = mean over rows of -log softmax(s)_y = logsumexp(s) - s_y (max-subtracted, stable)."""
    return _masked_mean(-target_log_probs(scores, targets), mask)[0]


def softmax_cross_entropy_value_and_grad(
    scores: Array, targets: Array, mask: Array | None = None
) -> tuple[Array, Array]:
    """∂J/∂s = (P - Y) · w_row / count, P = softmax(s), Y one-hot (CS224n: ŷ - y). The loss
    gathers log P at the targets rather than summing Y ∘ log P, which would write and read back
    a whole (rows × K) array (16 MB a step for the PTB LSTM's 10,000-way output)."""
    log_p = _log_softmax(scores)
    loss, row_weight = _masked_mean(-_target_entries(log_p, targets), mask)
    y = _one_hot(targets, scores.shape[-1], scores.dtype)
    return loss, (jnp.exp(log_p) - y) * _expand(row_weight, scores.ndim)


def softmax_cross_entropy_grad(scores: Array, targets: Array, mask: Array | None = None) -> Array:
    return softmax_cross_entropy_value_and_grad(scores, targets, mask)[1]


# --- sigmoid + binary cross-entropy from logits (MIT 6.036 NLL loss) ----------------------------


def _bce_terms(scores: Array, targets: Array) -> Array:
    # -t log σ(s) - (1 - t) log(1 - σ(s)) = max(s, 0) - s·t + log(1 + e^{-|s|}), finite for any s.
    return jnp.maximum(scores, 0.0) - scores * targets + jnp.log1p(jnp.exp(-jnp.abs(scores)))


def sigmoid_binary_cross_entropy(scores: Array, targets: Array, mask: Array | None = None) -> Array:
    """J = mean over rows of Σ [max(s, 0) - s·t + log1p(e^{-|s|})], targets t ∈ [0, 1]."""
    terms = _bce_terms(scores, targets.astype(scores.dtype))
    return _masked_mean(_sum_after_first_axis(terms), mask)[0]


def sigmoid_binary_cross_entropy_value_and_grad(
    scores: Array, targets: Array, mask: Array | None = None
) -> tuple[Array, Array]:
    """∂J/∂s = (σ(s) - t) · w_row / count."""
    targets = targets.astype(scores.dtype)
    loss, row_weight = _masked_mean(_sum_after_first_axis(_bce_terms(scores, targets)), mask)
    return loss, (sigmoid(scores) - targets) * _expand(row_weight, scores.ndim)


def sigmoid_binary_cross_entropy_grad(
    scores: Array, targets: Array, mask: Array | None = None
) -> Array:
    return sigmoid_binary_cross_entropy_value_and_grad(scores, targets, mask)[1]


# --- multiclass hinge (Crammer & Singer 2001; CS231n's SVM loss) --------------------------------


def _hinge_margins(scores: Array, targets: Array) -> tuple[Array, Array]:
    """(margins 1 - s_y + s_j with the j = y entries zeroed, one-hot Y)."""
    y = _one_hot(targets, scores.shape[-1], scores.dtype)
    true_score = jnp.sum(y * scores, axis=-1, keepdims=True)
    return (1.0 - true_score + scores) * (1.0 - y), y


def multiclass_hinge(scores: Array, targets: Array, mask: Array | None = None) -> Array:
    """J = mean over rows of Σ_{j≠y} max(0, 1 - s_y + s_j)."""
    margins, _ = _hinge_margins(scores, targets)
    return _masked_mean(jnp.sum(jnp.maximum(margins, 0.0), axis=-1), mask)[0]


def multiclass_hinge_value_and_grad(
    scores: Array, targets: Array, mask: Array | None = None
) -> tuple[Array, Array]:
    """∂ℓ/∂s_j = 1[margin_j > 0] for j ≠ y, ∂ℓ/∂s_y = -Σ_{j≠y} 1[margin_j > 0]."""
    margins, y = _hinge_margins(scores, targets)
    active = (margins > 0).astype(scores.dtype)  # j = y has margin 0 here, so never active
    loss, row_weight = _masked_mean(jnp.sum(margins * active, axis=-1), mask)
    dscores = active - y * jnp.sum(active, axis=-1, keepdims=True)
    return loss, dscores * _expand(row_weight, scores.ndim)


def multiclass_hinge_grad(scores: Array, targets: Array, mask: Array | None = None) -> Array:
    return multiclass_hinge_value_and_grad(scores, targets, mask)[1]


# --- max-margin over true and corrupt windows (CS224n notes §1.4; Collobert & Weston 2008) ------


def max_margin(s: Array, s_c: Array, mask: Array | None = None) -> Array:
    """J = mean of max(0, 1 - s + s_c): a true window s should outscore its corrupt one s_c by 1."""
    return _masked_mean(jnp.maximum(1.0 - s + s_c, 0.0), mask)[0]


def max_margin_value_and_grad(
    s: Array, s_c: Array, mask: Array | None = None
) -> tuple[Array, tuple[Array, Array]]:
    """(J, (∂J/∂s, ∂J/∂s_c)) = (J, (-1[margin > 0], +1[margin > 0]) · w / count)."""
    margin = 1.0 - s + s_c
    loss, row_weight = _masked_mean(jnp.maximum(margin, 0.0), mask)
    ds_c = (margin > 0).astype(s.dtype) * row_weight
    return loss, (-ds_c, ds_c)


def max_margin_grad(s: Array, s_c: Array, mask: Array | None = None) -> tuple[Array, Array]:
    return max_margin_value_and_grad(s, s_c, mask)[1]


# --- the window tagger's max-margin objective (CS224n notes §1.4; Collobert et al. 2011) -----


def corrupt_centre_words(word_windows: Array, key: Array, vocab_size: int) -> Array:
    """The notes' corrupt windows: each window's centre word replaced by a word drawn uniformly
    from the vocabulary (ids 2 .. vocab_size − 1: never <pad> = 0 or <unk> = 1).

    ``word_windows``: (S, L, w) word ids of the window around each of L tokens of S sentences.
    One key per sentence, so the draw at a position does not depend on how much padding follows.
    """
    num_sentences, length, window_size = word_windows.shape
    draw = jax.vmap(lambda k: jax.random.randint(k, (length,), 2, max(vocab_size, 3)))
    centre = draw(jax.random.split(key, num_sentences)).astype(word_windows.dtype)
    return word_windows.at[:, :, window_size // 2].set(centre)


def _tag_margin_terms(scores: Array, tags: Array, corrupt: Array | None):
    """(one-hot gold, s, s_c): the score s = s_t[y_t] of each labelled window and its negatives —
    the best-scoring wrong tag max_{k≠y} s_t[k], and (with ``corrupt``) the corrupt window's
    score for the gold tag s̃_t[y_t]; with both, a leading axis of 2 holds the two terms."""
    gold = jax.nn.one_hot(tags, scores.shape[-1], dtype=scores.dtype)
    s = jnp.sum(scores * gold, axis=-1)
    s_tag = jnp.max(jnp.where(gold > 0, -jnp.inf, scores), axis=-1)
    if corrupt is None:
        return gold, s, s_tag
    s_corrupt = jnp.sum(corrupt * gold, axis=-1)
    return gold, jnp.stack([s, s]), jnp.stack([s_corrupt, s_tag])


def tag_max_margin(
    scores: Array, tags: Array, mask: Array | None = None, corrupt: Array | None = None
) -> Array:
    """J = mean over labelled tokens and negatives of max(0, 1 − s + s_c) (CS224n notes §1.4).

    ``scores`` (..., K) are each token's tag scores, ``tags`` (...) the gold tags and ``mask`` the
    labelled positions. Negatives: the best wrong tag of the same window (which teaches the tagger
    to tell tags apart), and with ``corrupt`` (..., K), the scores of the windows whose centre word
    was replaced (``corrupt_centre_words``), for the same tag.
    """
    _, s, s_c = _tag_margin_terms(scores, tags, corrupt)
    return max_margin(s, s_c, None if mask is None else jnp.broadcast_to(mask, s.shape))


def tag_max_margin_value_and_grad(
    scores: Array, tags: Array, mask: Array | None = None, corrupt: Array | None = None
) -> tuple[Array, tuple[Array, Array | None]]:
    """(J, (∂J/∂scores, ∂J/∂corrupt or None)) of :func:`tag_max_margin`.

    ∂s/∂scores is the gold one-hot; ∂ max_{k≠y} s[k] / ∂scores is the one-hot of the arg max over
    the wrong tags (a subgradient at ties); ∂s̃/∂corrupt is the gold one-hot.
    """
    gold, s, s_c = _tag_margin_terms(scores, tags, corrupt)
    value, (ds, ds_c) = max_margin_value_and_grad(
        s, s_c, None if mask is None else jnp.broadcast_to(mask, s.shape)
    )
    wrong_tag = jnp.argmax(jnp.where(gold > 0, -jnp.inf, scores), axis=-1)
    wrong = jax.nn.one_hot(wrong_tag, scores.shape[-1], dtype=scores.dtype)
    if corrupt is None:
        return value, (gold * ds[..., None] + wrong * ds_c[..., None], None)
    dscores = gold * (ds[0] + ds[1])[..., None] + wrong * ds_c[1][..., None]
    return value, (dscores, gold * ds_c[0][..., None])


# --- accuracy ------------------------------------------------------------------------------------


def accuracy(scores: Array, labels: Array, mask: Array | None = None) -> Array:
    """Fraction of rows whose highest score is the label (``mask``: a 0/1 weight per row)."""
    hits = (jnp.argmax(scores, axis=-1) == labels).astype(jnp.float32)
    if mask is None:
        return jnp.mean(hits)
    mask = jnp.asarray(mask, hits.dtype)
    return jnp.sum(hits * mask) / jnp.maximum(jnp.sum(mask), 1.0)


LOSSES: dict[str, Loss] = {
    "squared_error": Loss(squared_error, squared_error_grad, squared_error_value_and_grad),
    "softmax_cross_entropy": Loss(
        softmax_cross_entropy, softmax_cross_entropy_grad, softmax_cross_entropy_value_and_grad
    ),
    "sigmoid_binary_cross_entropy": Loss(
        sigmoid_binary_cross_entropy,
        sigmoid_binary_cross_entropy_grad,
        sigmoid_binary_cross_entropy_value_and_grad,
    ),
    "multiclass_hinge": Loss(
        multiclass_hinge, multiclass_hinge_grad, multiclass_hinge_value_and_grad
    ),
    "max_margin": Loss(max_margin, max_margin_grad, max_margin_value_and_grad),
}


def get_loss(name: str) -> Loss:
    """The loss called ``name``; a UserError lists the valid names otherwise."""
    try:
        return LOSSES[name]
    except KeyError:
        raise UserError(f"unknown loss {name!r}; use one of: {', '.join(sorted(LOSSES))}") from None
