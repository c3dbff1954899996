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


def rel_err(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def make(**kw):
    base = dict(vocab_size=V, context=n, embed_dim=4, hidden_dim=5, dtype="float64")
    cfg = nplm.NPLMConfig(**{**base, **kw})
    return cfg, nplm.make(cfg)


def batch_of(seed):
    rng = np.random.default_rng(seed)
    # Repeated ids inside and across contexts exercise the scatter-add of ∂C.
    return {"x": jnp.asarray(rng.integers(0, 5, (N, n))), "y": jnp.asarray(rng.integers(0, V, N))}


@pytest.mark.parametrize(
    "kw", [dict(), dict(direct=True, dropout=0.4)], ids=["plain", "direct-dropout"]
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
