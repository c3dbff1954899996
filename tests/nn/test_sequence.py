"""SLL against brute force over all K^T paths and against jax.grad (float64)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from lecturenn.nn import sequence

# jit whole functions: eager dispatch of each small op would dominate the runtime
sll_forward = jax.jit(sequence.sll_forward)
sll_loss = jax.jit(sequence.sll_loss)
sll_loss_grad = jax.jit(sequence.sll_loss_grad)
sll_marginals = jax.jit(sequence.sll_marginals)
sll_path_score = jax.jit(sequence.sll_path_score)
sll_value_and_grad = jax.jit(sequence.sll_value_and_grad)
viterbi = jax.jit(sequence.viterbi)

K, T = 3, 5
LENGTHS = np.array([5, 3, 1, 4, 0])  # the last row is padding only


def _problem(seed=0, lengths=LENGTHS, num_tags=K, max_len=T):
    rng = np.random.default_rng(seed)
    batch = len(lengths)
    f = rng.normal(size=(batch, max_len, num_tags))
    A = rng.normal(size=(num_tags, num_tags))
    A0 = rng.normal(size=num_tags)
    tags = rng.integers(0, num_tags, (batch, max_len))
    mask = (np.arange(max_len) < lengths[:, None]).astype(np.float64)
    f = f + 50.0 * (1 - mask)[..., None] * rng.normal(size=f.shape)  # loud garbage in padding
    return f, A, A0, tags, mask


def _path_score(f, A, A0, path):
    return (
        A0[path[0]]
        + sum(f[t, k] for t, k in enumerate(path))
        + sum(A[i, j] for i, j in itertools.pairwise(path))
    )


def _brute_force(f, A, A0, length):
    """All paths of one sentence: log Z, best path, its score, and unary/pairwise marginals."""
    paths = list(itertools.product(range(f.shape[1]), repeat=length))
    scores = np.array([_path_score(f, A, A0, p) for p in paths])
    log_z = np.logaddexp.reduce(scores)
    probs = np.exp(scores - log_z)
    unary = np.zeros((length, f.shape[1]))
    pairwise = np.zeros((length, f.shape[1], f.shape[1]))
    for path, p in zip(paths, probs, strict=True):
        unary[np.arange(length), path] += p
        for t in range(1, length):
            pairwise[t, path[t - 1], path[t]] += p
    best = int(np.argmax(scores))
    return log_z, np.array(paths[best]), scores[best], unary, pairwise


def test_log_partition_viterbi_and_marginals_equal_brute_force():
    f, A, A0, tags, mask = _problem()
    log_z = sll_forward(f, A, A0, mask)
    best_paths, best_scores = viterbi(f, A, A0, mask)
    unary, pairwise, log_z_fb = sll_marginals(f, A, A0, mask)
    np.testing.assert_allclose(log_z_fb, log_z, rtol=1e-12)
    for b, n in enumerate(LENGTHS):
        if n == 0:
            assert log_z[b] == 0 and best_scores[b] == 0 and not best_paths[b].any()
            assert not unary[b].any() and not pairwise[b].any()
            continue
        z, path, score, p1, p2 = _brute_force(f[b, :n], A, A0, n)
        np.testing.assert_allclose(log_z[b], z, rtol=1e-12)
        np.testing.assert_array_equal(best_paths[b, :n], path)
        assert not best_paths[b, n:].any()
        np.testing.assert_allclose(best_scores[b], score, rtol=1e-12)
        np.testing.assert_allclose(unary[b, :n], p1, atol=1e-12)
        np.testing.assert_allclose(pairwise[b, :n], p2, atol=1e-12)
        assert not unary[b, n:].any() and not pairwise[b, n:].any()


def test_path_score_equals_the_sum_over_the_path():
    f, A, A0, tags, mask = _problem(seed=1)
    scores = sll_path_score(f, A, A0, tags, mask)
    for b, n in enumerate(LENGTHS):
        expected = _path_score(f[b], A, A0, tags[b, :n]) if n else 0.0
        np.testing.assert_allclose(scores[b], expected, rtol=1e-12)


def test_marginals_are_distributions_consistent_with_each_other():
    f, A, A0, _, mask = _problem(seed=2, lengths=np.array([7, 2, 6]), num_tags=4, max_len=8)
    unary, pairwise, _ = sll_marginals(f, A, A0, mask)
    np.testing.assert_allclose(unary.sum(-1), mask, atol=1e-12)
    np.testing.assert_allclose(pairwise[:, 1:].sum((-2, -1)), mask[:, 1:], atol=1e-12)
    # summing out y_t gives p(y_{t-1}); summing out y_{t-1} gives p(y_t)
    valid = mask[:, 1:, None]
    np.testing.assert_allclose(pairwise[:, 1:].sum(-1), unary[:, :-1] * valid, atol=1e-12)
    np.testing.assert_allclose(pairwise[:, 1:].sum(-2), unary[:, 1:], atol=1e-12)


def test_padding_changes_nothing_compared_with_each_sentence_alone():
    f, A, A0, tags, mask = _problem(seed=3)
    loss_batch = sll_loss(f, A, A0, tags, mask)
    paths, scores = viterbi(f, A, A0, mask)
    unary, _, log_z = sll_marginals(f, A, A0, mask)
    losses = []
    for b, n in enumerate(LENGTHS[LENGTHS > 0]):
        alone = (f[b : b + 1, :n], A, A0, tags[b : b + 1, :n], np.ones((1, n)))
        losses.append(sll_loss(*alone))
        np.testing.assert_allclose(sll_forward(*alone[:3], alone[4]), log_z[b : b + 1], rtol=1e-12)
        alone_paths, alone_scores = viterbi(*alone[:3], alone[4])
        np.testing.assert_array_equal(alone_paths[0], paths[b, :n])
        np.testing.assert_allclose(alone_scores[0], scores[b], rtol=1e-12)
        alone_unary = sll_marginals(*alone[:3], alone[4])[0]
        np.testing.assert_allclose(alone_unary[0], unary[b, :n], atol=1e-12)
    # the all-padding row is not counted in the mean
    np.testing.assert_allclose(loss_batch, np.mean(losses), rtol=1e-12)
    garbage_tags = np.where(mask > 0, tags, np.random.default_rng(0).integers(0, K, tags.shape))
    np.testing.assert_allclose(sll_loss(f, A, A0, garbage_tags, mask), loss_batch, rtol=1e-12)


def test_manual_gradients_equal_jax_grad():
    lengths = np.array([5, 3, 1, 4, 0, 5])
    f, A, A0, tags, mask = _problem(seed=4, lengths=lengths, num_tags=5)
    assert jnp.asarray(f).dtype == jnp.float64
    autodiff = jax.jit(jax.value_and_grad(sequence.sll_loss, argnums=(0, 1, 2)))
    auto_loss, auto = autodiff(f, A, A0, tags, mask)
    loss, manual = sll_value_and_grad(f, A, A0, tags, mask)
    np.testing.assert_allclose(loss, auto_loss, rtol=1e-12)
    for name, got, expected in zip(("f", "A", "A0"), manual, auto, strict=True):
        error = np.linalg.norm(got - expected) / max(np.linalg.norm(expected), 1e-300)
        assert error <= 1e-7, (name, error)
    for got, expected in zip(sll_loss_grad(f, A, A0, tags, mask), manual, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert not np.asarray(manual[0])[mask == 0].any()  # no gradient flows into padding


def test_float32_and_boolean_mask_agree_with_float64():
    f, A, A0, tags, mask = _problem(seed=6)
    loss64, grads64 = sll_value_and_grad(f, A, A0, tags, mask)
    cast = [jnp.asarray(x, jnp.float32) for x in (f, A, A0)]
    loss32, grads32 = sll_value_and_grad(*cast, jnp.asarray(tags), jnp.asarray(mask > 0))
    assert loss32.dtype == jnp.float32 and grads32[1].dtype == jnp.float32
    np.testing.assert_allclose(loss32, loss64, rtol=1e-5)
    for got, expected in zip(grads32, grads64, strict=True):
        np.testing.assert_allclose(got, expected, atol=1e-5)
