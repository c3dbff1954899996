"""Sentence-level log-likelihood (SLL), Collobert et al. 2011 "NLP (almost) from scratch" §3.4.2.

A tagger's network scores every tag at every position: ``f[t, k]`` (the emissions, ``(B, T, K)``).
SLL adds trainable transition scores ``A[i, j]`` (tag i followed by tag j) and initial scores
``A0[j]``, scores a whole tag path as

    s(x, y) = A0[y_0] + Σ_t f[t, y_t] + Σ_{t≥1} A[y_{t−1}, y_t]                    (C&W eq. 14)

and maximizes log p(y | x) = s(x, y) − log Σ_{y'} exp s(x, y') (eq. 15). The log-partition is the
forward recursion δ_t(k) = f[t, k] + logadd_j (δ_{t−1}(j) + A[j, k]) (eq. 16); decoding replaces
logadd by max (Viterbi, eq. 17). The gradient of log Z is an expectation, so the hand-written
backward needs the forward–backward marginals: ∂ log Z / ∂f[t, k] = p(y_t = k), and
∂ log Z / ∂A[j, k] = Σ_t p(y_{t−1} = j, y_t = k). They come from the forward pass's own softmax
weights and one reverse scan of products (:func:`_posteriors`), not from a second log-space
recursion for β.

Batches are padded: ``mask`` (B, T) is 1 on the first ``length_b`` positions of each sentence and 0
after (a prefix mask). Masked positions leave the recursions' state unchanged, so padding changes
nothing; a sentence of length 0 (a padding row) has log Z = 0, score 0 and zero gradient, and
the loss averages over the non-empty sentences only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def _time_major(f: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    mask = jnp.asarray(mask, f.dtype)
    return jnp.swapaxes(f, 0, 1), jnp.swapaxes(mask, 0, 1)[..., None]


def _forward_recursion(
    f: jax.Array, A: jax.Array, A0: jax.Array, mask: jax.Array, *, conditionals: bool = False
):
    """Forward log-scores α_t(k) = log Σ over paths ending in tag k at t (C&W eq. 16), ``(B, T,
    K)``; with ``conditionals``, also each step's softmax over the previous tag,

        R_t[j, k] = exp(α_{t−1}(j) + A[j, k] + f[t, k] − α_t(k)) = p(y_{t−1} = j | y_t = k, x_{≤t}),

    ``(T − 1, B, K, K)`` time-major, the weights the logsumexp of step t already computes."""
    f_steps, m_steps = _time_major(f, mask)

    def step(alpha, inputs):
        f_t, m_t = inputs
        scores = alpha[:, :, None] + A[None]  # (B, j, k)
        top = lax.stop_gradient(scores.max(axis=1, keepdims=True))
        weights = jnp.exp(scores - top)
        total = weights.sum(axis=1, keepdims=True)
        new = (top + jnp.log(total))[:, 0] + f_t
        alpha = jnp.where(m_t > 0, new, alpha)
        return alpha, (alpha, weights / total if conditionals else None)

    alpha0 = A0[None] + f[:, 0]
    _, (rest, conds) = lax.scan(step, alpha0, (f_steps[1:], m_steps[1:]))
    alphas = jnp.swapaxes(jnp.concatenate([alpha0[None], rest]), 0, 1)
    return (alphas, conds) if conditionals else alphas


def _non_empty(mask: jax.Array, dtype) -> jax.Array:
    return jnp.asarray(mask, dtype)[:, 0]


def sll_forward(f: jax.Array, A: jax.Array, A0: jax.Array, mask: jax.Array) -> jax.Array:
    """log Z (B,) by the forward algorithm in log space (C&W eq. 16), a ``lax.scan`` over T."""
    log_z = jax.nn.logsumexp(_forward_recursion(f, A, A0, mask)[:, -1], axis=1)
    return jnp.where(_non_empty(mask, f.dtype) > 0, log_z, 0.0)


def sll_path_score(
    f: jax.Array, A: jax.Array, A0: jax.Array, tags: jax.Array, mask: jax.Array
) -> jax.Array:
    """s(x, y) (B,) of the paths ``tags`` (B, T) (C&W eq. 14); padded tags are ignored."""
    m = jnp.asarray(mask, f.dtype)
    emissions = jnp.take_along_axis(f, tags[..., None], axis=2)[..., 0]
    transitions = A[tags[:, :-1], tags[:, 1:]]
    return (emissions * m).sum(1) + (transitions * m[:, 1:]).sum(1) + A0[tags[:, 0]] * m[:, 0]


def _num_sentences(mask: jax.Array, dtype) -> jax.Array:
    return jnp.maximum(_non_empty(mask, dtype).sum(), 1.0)


def sll_loss(
    f: jax.Array, A: jax.Array, A0: jax.Array, tags: jax.Array, mask: jax.Array
) -> jax.Array:
    """Mean over non-empty sentences of −log p(y | x) = log Z − s(x, y) (C&W eq. 15)."""
    nll = sll_forward(f, A, A0, mask) - sll_path_score(f, A, A0, tags, mask)
    return nll.sum() / _num_sentences(mask, f.dtype)


def _posteriors(f, A, A0, mask):
    """unary (T, B, K) time-major, p(y_t = k | x), zero at padding; the conditionals R
    (T − 1, B, K, K) of :func:`_forward_recursion`; log Z (B,) (unmasked).

    No backward log-scores β: the last position's posterior is softmax(α_T), and the chain runs
    back through the forward pass's own weights, since y_{t−1} depends on the future only
    through y_t (the HMM smoother's backward pass):

        p(y_{t−1} = j, y_t = k | x) = R_t[j, k] · p(y_t = k | x),   p(y_{t−1} = j | x) = Σ_k of it.

    The reverse scan is a (K, K) × (K,) product per sentence and step, no exp or log. At a padded
    step the carry passes through unchanged, and the unary is zeroed, so R_t · p(y_t) (a pair
    marginal) is zero there without masking R."""
    alphas, conds = _forward_recursion(f, A, A0, mask, conditionals=True)
    m_steps = _time_major(f, mask)[1]

    def step(p_t, inputs):
        cond_t, m_t = inputs
        p_prev = jnp.einsum("bjk,bk->bj", cond_t, p_t)
        return jnp.where(m_t > 0, p_prev, p_t), p_t

    log_z = jax.nn.logsumexp(alphas[:, -1], axis=1)
    p_last = jnp.exp(alphas[:, -1] - log_z[:, None])
    p_first, rest = lax.scan(step, p_last, (conds, m_steps[1:]), reverse=True)
    unary = jnp.concatenate([p_first[None], rest]) * m_steps
    return unary, conds, log_z


def _expected_transitions(conds, unary):
    """Σ_{b, t ≥ 1} p(y_{t−1} = j, y_t = k | x): (K, K), as one fused multiply-and-sum (a dot
    would want k as a batch axis and transpose R first)."""
    return (conds * unary[1:, :, None, :]).sum((0, 1))


def sll_marginals(
    f: jax.Array, A: jax.Array, A0: jax.Array, mask: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Forward–backward posteriors: ``unary[b, t, k] = p(y_t = k)`` (B, T, K),
    ``pairwise[b, t, j, k] = p(y_{t−1} = j, y_t = k)`` (B, T, K, K; zero at t = 0), and log Z.
    Both are zero at padded positions (see :func:`_posteriors`)."""
    unary, conds, log_z = _posteriors(f, A, A0, mask)
    pairwise = conds * unary[1:, :, None, :]
    pairwise = jnp.concatenate([jnp.zeros_like(pairwise[:1]), pairwise])
    log_z = jnp.where(_non_empty(mask, f.dtype) > 0, log_z, 0.0)
    return jnp.swapaxes(unary, 0, 1), jnp.swapaxes(pairwise, 0, 1), log_z


def _loss_and_grads(f, A, A0, tags, mask):
    unary_steps, conds, log_z = _posteriors(f, A, A0, mask)
    unary = jnp.swapaxes(unary_steps, 0, 1)
    m = jnp.asarray(mask, f.dtype)
    n = _num_sentences(mask, f.dtype)
    log_z = jnp.where(m[:, 0] > 0, log_z, 0.0)
    loss = (log_z - sll_path_score(f, A, A0, tags, mask)).sum() / n
    gold = jax.nn.one_hot(tags, f.shape[-1], dtype=f.dtype) * m[..., None]
    # ∂(log Z − s)/∂f[t, k] = p(y_t = k) − 1[y_t = k]
    df = (unary - gold) / n
    # ∂/∂A[j, k] = expected minus gold counts of the transition j → k
    gold_pairs = jnp.einsum("btj,btk->jk", gold[:, :-1], gold[:, 1:])
    dA = (_expected_transitions(conds, unary_steps) - gold_pairs) / n
    dA0 = (unary[:, 0] - gold[:, 0]).sum(0) / n
    return loss, (df, dA, dA0)


def sll_loss_grad(
    f: jax.Array, A: jax.Array, A0: jax.Array, tags: jax.Array, mask: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Hand-written ``(∂L/∂f, ∂L/∂A, ∂L/∂A0)`` of :func:`sll_loss` from the marginals."""
    return _loss_and_grads(f, A, A0, tags, mask)[1]


def sll_value_and_grad(
    f: jax.Array, A: jax.Array, A0: jax.Array, tags: jax.Array, mask: jax.Array
) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
    """``(sll_loss, (∂L/∂f, ∂L/∂A, ∂L/∂A0))`` sharing one forward–backward pass."""
    return _loss_and_grads(f, A, A0, tags, mask)


def viterbi(
    f: jax.Array, A: jax.Array, A0: jax.Array, mask: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Best paths (B, T) int32 and their scores (B,) (C&W eq. 17): max-sum recursion with
    back-pointers, then a reverse scan to read the path. Padded positions get tag 0."""
    f_steps, m_steps = _time_major(f, mask)
    identity = jnp.arange(f.shape[-1])[None]

    def step(delta, inputs):
        f_t, m_t = inputs
        scores = delta[:, :, None] + A[None]
        # at padded positions the pointer is the identity, so the backtrace carries the last tag
        pointer = jnp.where(m_t > 0, jnp.argmax(scores, axis=1), identity)
        delta = jnp.where(m_t > 0, scores.max(axis=1) + f_t, delta)
        return delta, pointer

    delta_last, pointers = lax.scan(step, A0[None] + f[:, 0], (f_steps[1:], m_steps[1:]))

    def backtrack(tag, pointer):
        return jnp.take_along_axis(pointer, tag[:, None], axis=1)[:, 0], tag

    last = jnp.argmax(delta_last, axis=1)
    first, rest = lax.scan(backtrack, last, pointers, reverse=True)
    paths = jnp.swapaxes(jnp.concatenate([first[None], rest]), 0, 1)
    m = jnp.asarray(mask, f.dtype)
    paths = jnp.where(m > 0, paths, 0).astype(jnp.int32)
    return paths, jnp.where(m[:, 0] > 0, delta_last.max(axis=1), 0.0)
