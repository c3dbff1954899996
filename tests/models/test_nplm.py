"""Bengio's NPLM: hand-written gradients against jax.grad (float64), with and without direct
connections and dropout; logits against an independent numpy forward; uniform perplexity."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lecturenn.errors import UserError
from lecturenn.gradcheck import assert_manual_matches_autodiff
from lecturenn.models import nplm

V, N, n = 13, 6, 3


def make(**kw):
    base = dict(vocab_size=V, context=n, embed_dim=4, hidden_dim=5, dtype="float64")
    cfg = nplm.NPLMConfig(**{**base, **kw})
    return cfg, nplm.make(cfg)


def batch_of(seed):
    rng = np.random.default_rng(seed)
    # Repeated ids inside and across contexts exercise the scatter-add of ∂C.
    return {"x": jnp.asarray(rng.integers(0, 5, (N, n))), "y": jnp.asarray(rng.integers(0, V, N))}


@pytest.mark.parametrize(
    "kw",
    [dict(), dict(direct=True, dropout=0.4), dict(direct=True, dropout=0.3, embed_dropout=0.5)],
    ids=["plain", "direct-dropout", "direct-both-dropouts"],
)
def test_manual_grads_match_jax_grad(kw):
    cfg, model = make(**kw)
    params, state = model.init(jax.random.PRNGKey(0))
    params = jax.tree_util.tree_map(lambda p: 4.0 * p, params)  # leave tanh's linear regime
    batch, key = batch_of(1), jax.random.PRNGKey(2)

    assert_manual_matches_autodiff(model, params, state, batch, key, tol=1e-6)


def test_scores_match_bengio_formula_in_numpy():
    cfg, model = make(direct=True)
    params, _ = model.init(jax.random.PRNGKey(3))
    p = jax.tree_util.tree_map(np.asarray, params)
    ids = np.asarray(batch_of(4)["x"])
    x = np.concatenate([p["C"][ids[:, j]] for j in range(n)], axis=1)
    expected = (
        p["out"]["b"]
        + x @ p["direct"]
        + np.tanh(p["hidden"]["b"] + x @ p["hidden"]["W"]) @ p["out"]["W"]
    )
    np.testing.assert_allclose(model.predict(params, {}, jnp.asarray(ids)), expected, rtol=1e-10)


def test_uniform_model_has_perplexity_equal_to_vocab_size():
    cfg, model = make()
    params, _ = model.init(jax.random.PRNGKey(0))
    params["out"] = jax.tree_util.tree_map(jnp.zeros_like, params["out"])
    loss, _ = model.loss(params, {}, batch_of(5), None)
    assert np.isclose(float(jnp.exp(loss)), V, rtol=1e-12)


def test_bad_context_is_a_user_error():
    with pytest.raises(UserError, match="model.context"):
        make(context=0)
    with pytest.raises(UserError, match="model.embed_dropout"):
        make(embed_dropout=1.0)


def test_embed_dropout_zeroes_context_features_in_training_only():
    cfg, model = make(embed_dropout=0.5)
    params, _ = model.init(jax.random.PRNGKey(6))
    params["hidden"]["W"] = jnp.zeros_like(params["hidden"]["W"])  # scores depend on x via W
    params["direct"] = jnp.ones((n * 4, V))
    cfg_direct, with_direct = make(embed_dropout=0.5, direct=True)
    batch = batch_of(7)
    ids = batch["x"]
    x = np.concatenate([np.asarray(params["C"])[np.asarray(ids)[:, j]] for j in range(n)], axis=1)
    scores, caches = nplm._forward(cfg_direct, params, ids, jax.random.PRNGKey(8), True)
    mask = np.asarray(caches[2])
    assert set(np.unique(mask)) == {0.0, 2.0}
    expected = (x * mask) @ np.ones((n * 4, V)) + np.tanh(0.0) + np.asarray(params["out"]["b"])
    np.testing.assert_allclose(scores, expected, rtol=1e-10)
    np.testing.assert_allclose(
        with_direct.predict(params, {}, ids), x @ np.ones((n * 4, V)), rtol=1e-10
    )
