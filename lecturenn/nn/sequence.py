"""Sentence-level log-likelihood (SLL), Collobert et al. 2011 "NLP (almost) from scratch" §3.4.2.

A tagger's network scores every tag at every position: ``f[t, k]`` (the emissions, ``(B, T, K)``).
SLL adds trainable transition scores ``A[i, j]`` (tag i followed by tag j) and initial scores
``A0[j]``, scores a whole tag path as

    s(x, y) = A0[y_0] + Σ_t f[t, y_t] + Σ_{t≥1} A[y_{t−1}, y_t]                    (C&W eq. 14)

and maximizes log p(y | x) = s(x, y) − log Σ_{y'} exp s(x, y') (eq. 15). The log-partition is the
forward recursion δ_t(k) = f[t, k] + logadd_j (δ_{t−1}(j) + A[j, k]) (eq. 16); decoding replaces
logadd by max (Viterbi, eq. 17). The gradient of log Z is an expectation, so the hand-written
backward needs the forward–backward marginals: ∂ log Z / ∂f[t, k] = p(y_t = k), and
∂ log Z / ∂A[j, k] = Σ_t p(y_{t−1} = j, y_t = k).

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


def _alphas(f: jax.Array, A: jax.Array, A0: jax.Array, mask: jax.Array) -> jax.Array:
    """Forward log-scores α_t(k) = log Σ over paths ending in tag k at t, ``(B, T, K)``."""
    f_steps, m_steps = _time_major(f, mask)

    def step(alpha, inputs):
        f_t, m_t = inputs
        new = jax.nn.logsumexp(alpha[:, :, None] + A[None], axis=1) + f_t
        alpha = jnp.where(m_t > 0, new, alpha)
        return alpha, alpha

    alpha0 = A0[None] + f[:, 0]
    _, rest = lax.scan(step, alpha0, (f_steps[1:], m_steps[1:]))
    return jnp.swapaxes(jnp.concatenate([alpha0[None], rest]), 0, 1)


def _betas(f: jax.Array, A: jax.Array, mask: jax.Array) -> jax.Array:
    """Backward log-scores β_t(j) = log Σ over continuations of tag j at t, ``(B, T, K)``."""
    f_steps, m_steps = _time_major(f, mask)

    def step(beta_next, inputs):
        f_next, m_next = inputs
        new = jax.nn.logsumexp(A[None] + (f_next + beta_next)[:, None, :], axis=2)
        beta = jnp.where(m_next > 0, new, beta_next)
        return beta, beta

    beta_last = jnp.zeros_like(f[:, 0])
    _, rest = lax.scan(step, beta_last, (f_steps[1:], m_steps[1:]), reverse=True)
    return jnp.swapaxes(jnp.concatenate([rest, beta_last[None]]), 0, 1)


def _non_empty(mask: jax.Array, dtype) -> jax.Array:
    return jnp.asarray(mask, dtype)[:, 0]


def sll_forward(f: jax.Array, A: jax.Array, A0: jax.Array, mask: jax.Array) -> jax.Array:
    """log Z (B,) by the forward algorithm in log space (C&W eq. 16), a ``lax.scan`` over T."""
    log_z = jax.nn.logsumexp(_alphas(f, A, A0, mask)[:, -1], axis=1)
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


def sll_marginals(
    f: jax.Array, A: jax.Array, A0: jax.Array, mask: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Forward–backward posteriors: ``unary[b, t, k] = p(y_t = k)`` (B, T, K),
    ``pairwise[b, t, j, k] = p(y_{t−1} = j, y_t = k)`` (B, T, K, K; zero at t = 0), and log Z.
    Both are zero at padded positions."""
    alphas, betas = _alphas(f, A, A0, mask), _betas(f, A, mask)
    m = jnp.asarray(mask, f.dtype)
    # normalize with the unmasked log Z so padding rows stay finite before they are zeroed
    log_z = jax.nn.logsumexp(alphas[:, -1], axis=1)[:, None, None]
    unary = jnp.where(m[..., None] > 0, jnp.exp(alphas + betas - log_z), 0.0)
    pair_scores = alphas[:, :-1, :, None] + A[None, None] + (f[:, 1:] + betas[:, 1:])[:, :, None, :]
    pairwise = jnp.where(m[:, 1:, None, None] > 0, jnp.exp(pair_scores - log_z[..., None]), 0.0)
    pairwise = jnp.concatenate([jnp.zeros_like(pairwise[:, :1]), pairwise], axis=1)
    return unary, pairwise, jnp.where(m[:, 0] > 0, log_z[:, 0, 0], 0.0)


def _loss_and_grads(f, A, A0, tags, mask):
    unary, pairwise, log_z = sll_marginals(f, A, A0, mask)
    m = jnp.asarray(mask, f.dtype)
    n = _num_sentences(mask, f.dtype)
    num_tags = f.shape[-1]
    loss = (log_z - sll_path_score(f, A, A0, tags, mask)).sum() / n
    # ∂(log Z − s)/∂f[t, k] = p(y_t = k) − 1[y_t = k]
    df = (unary - jax.nn.one_hot(tags, num_tags, dtype=f.dtype) * m[..., None]) / n
    # ∂/∂A[j, k] = expected minus gold counts of the transition j → k
    gold_transitions = jnp.zeros_like(A).at[tags[:, :-1], tags[:, 1:]].add(m[:, 1:])
    dA = (pairwise.sum((0, 1)) - gold_transitions) / n
    gold_initial = jnp.zeros_like(A0).at[tags[:, 0]].add(m[:, 0])
    dA0 = (unary[:, 0].sum(0) - gold_initial) / n
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
