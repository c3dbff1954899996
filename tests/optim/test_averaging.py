"""Parameter averaging against a plain loop over the iterates, inside the engine and its errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lecturenn.errors import UserError
from lecturenn.models import mlp
from lecturenn.optim import build_optimizer
from lecturenn.optim.averaging import average_params, averaged_params, find_average_state
from lecturenn.optim.transforms import adam
from lecturenn.train import loop

BETA = 0.9


def _leaf_pairs(a, b):
    return zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)


def _problem():
    params = {"w": jnp.asarray([[1.0, -2.0], [0.5, 3.0]]), "b": jnp.asarray([0.2, -0.1])}
    target = jnp.asarray([0.3, -0.7])

    def loss(p, x):
        return jnp.sum((x @ p["w"] + p["b"] - target) ** 2)

    xs = jax.random.normal(jax.random.PRNGKey(0), (12, 4, 2))
    return params, jax.grad(loss), xs


def test_average_is_the_debiased_ema_of_the_iterates_and_training_is_unchanged():
    params, grad, xs = _problem()
    inner = adam(0.05)
    averaged = average_params(inner, BETA)
    p_plain, s_plain = params, inner.init(params)
    p_avg, s_avg = params, averaged.init(params)
    for a, b in _leaf_pairs(averaged_params(s_avg, p_avg), p_avg):
        np.testing.assert_array_equal(a, b)  # no update yet: the parameters themselves
    iterates = []
    for x in xs:
        u, s_plain = inner.update(grad(p_plain, x), s_plain, p_plain)
        p_plain = optax.apply_updates(p_plain, u)
        u, s_avg = averaged.update(grad(p_avg, x), s_avg, p_avg)
        p_avg = optax.apply_updates(p_avg, u)
        iterates.append(p_plain)
        for a, b in _leaf_pairs(p_plain, p_avg):
            np.testing.assert_array_equal(a, b)  # averaging never changes the trajectory
    t, beta = len(iterates), float(np.float32(BETA))  # the state keeps β in float32
    weights = np.array([(1 - beta) * beta ** (t - 1 - i) for i in range(t)]) / (1 - beta**t)
    assert np.isclose(weights.sum(), 1.0)
    got = averaged_params(s_avg, p_avg)
    for name in params:
        want = sum(w * np.asarray(it[name]) for w, it in zip(weights, iterates, strict=True))
        np.testing.assert_allclose(got[name], want, rtol=1e-12)
        assert not np.allclose(got[name], p_avg[name])  # the average is not the last iterate


def test_averaged_params_of_a_vmapped_state_is_each_trials_average():
    params, grad, xs = _problem()
    decays = jnp.asarray([0.5, 0.9, 0.99])

    def train(decay):
        opt = average_params(optax.sgd(0.01), decay)
        p, s = params, opt.init(params)
        for x in xs[:5]:
            u, s = opt.update(grad(p, x), s, p)
            p = optax.apply_updates(p, u)
        return p, s

    p_all, s_all = jax.vmap(train)(decays)
    stacked = averaged_params(s_all, p_all)
    for i, decay in enumerate(decays):
        p, s = train(decay)
        one = averaged_params(s, p)
        for a, b in _leaf_pairs(one, stacked):
            np.testing.assert_allclose(b[i], a, rtol=1e-12)


def test_build_optimizer_wraps_only_when_asked_and_checks_the_decay():
    params = {"w": jnp.ones((2, 2))}
    assert find_average_state(build_optimizer("adam", 1e-3).init(params)) is None
    state = build_optimizer("adam", 1e-3, average_decay=0.99).init(params)
    assert float(find_average_state(state).decay) == pytest.approx(0.99)
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(UserError, match=r"average_decay must be in \[0, 1\)"):
            build_optimizer("adam", 1e-3, average_decay=bad)


def test_fit_evaluates_and_keeps_the_average():
    model = mlp.make(mlp.MLPConfig(input_dim=2, num_classes=2, hidden=(4,), dtype="float64"))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 2))
    train = {"x": jnp.asarray(x), "y": jnp.asarray((x[:, 0] > 0).astype(np.int32))}
    seen = []

    def evaluate(params, state, data):
        seen.append(params)
        return {"accuracy": 0.0}  # never improves after epoch 1: the kept parameters are its

    optimizer = build_optimizer("sgd", 0.5, average_decay=0.8)
    kept, _, history = loop.fit(
        model,
        optimizer,
        train,
        epochs=3,
        key=jax.random.PRNGKey(0),
        batch_size=16,
        valid=train,
        evaluate=evaluate,
    )
    assert history.best_epoch == 1 and len(seen) == 3
    for a, b in _leaf_pairs(kept, seen[0]):
        np.testing.assert_array_equal(a, b)
    # what was evaluated is the average: replay epoch 1 without averaging and compare
    plain, _, _ = loop.fit(
        model,
        build_optimizer("sgd", 0.5),
        train,
        epochs=1,
        key=jax.random.PRNGKey(0),
        batch_size=16,
    )
    assert any(not np.allclose(a, b) for a, b in _leaf_pairs(plain, seen[0]))
