import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lecturenn.models import mlp
from lecturenn.train import epochs, loop
from lecturenn.train.step import make_step


def _data(n=96, d=6, k=3, seed=0):
    """Gaussian clusters around fixed centres; ``seed`` draws new points from the same task."""
    centres = np.random.default_rng(123).normal(size=(k, d)) * 3
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    return {"x": jnp.asarray(centres[y] + rng.normal(size=(n, d))), "y": jnp.asarray(y)}


def _model(dropout=0.0):
    return mlp.make(
        mlp.MLPConfig(
            input_dim=6,
            num_classes=3,
            hidden=(8,),
            activation="tanh",
            dropout=dropout,
            dtype="float64",
        )
    )


def test_scan_and_loop_drivers_give_the_same_epoch():
    model, opt = _model(dropout=0.2), optax.sgd(0.1, momentum=0.9)
    params, state = model.init(jax.random.PRNGKey(0))
    data, key = _data(), jax.random.PRNGKey(3)
    step = make_step(model, opt, jit=False)
    outs = [
        epochs.shuffled(step, num_examples=96, batch_size=16, driver=d)(
            params, state, opt.init(params), data, key
        )
        for d in ("scan", "loop")
    ]
    for a, b in zip(
        jax.tree_util.tree_leaves(outs[0]), jax.tree_util.tree_leaves(outs[1]), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_manual_and_autodiff_steps_agree():
    model, opt = _model(), optax.adam(1e-2)
    params, state = model.init(jax.random.PRNGKey(0))
    batch = {k: v[:16] for k, v in _data().items()}
    results = [
        make_step(model, opt, g)(params, state, opt.init(params), batch, jax.random.PRNGKey(1))
        for g in ("manual", "autodiff")
    ]
    for a, b in zip(
        jax.tree_util.tree_leaves(results[0]), jax.tree_util.tree_leaves(results[1]), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_epoch_visits_each_example_once_and_reshuffles_per_key():
    a = epochs.epoch_batches(jax.random.PRNGKey(0), 50, 8)
    b = epochs.epoch_batches(jax.random.PRNGKey(1), 50, 8)
    assert a.shape == (6, 8) and len(set(np.asarray(a).ravel())) == 48
    assert not np.array_equal(a, b)


def test_fit_learns_and_keeps_the_best_validation_epoch():
    model = _model()
    params, state, history = loop.fit(
        model,
        optax.adam(0.05),
        _data(seed=0),
        epochs=12,
        batch_size=16,
        key=jax.random.PRNGKey(0),
        valid=_data(seed=1),
        policy=loop.Policy("accuracy", patience=4),
    )
    best = max(history.epochs, key=lambda r: r["val_accuracy"])
    assert history.best_epoch == best["epoch"]
    assert best["val_accuracy"] > 0.9
    score = loop.make_evaluate(model)(params, state, _data(seed=1))["accuracy"]
    assert score == pytest.approx(best["val_accuracy"])


def test_nan_loss_stops_with_a_clear_error():
    data = _data()
    data["x"] = data["x"].at[0, 0].set(jnp.nan)
    with pytest.raises(loop.DivergedError, match="training loss became nan in epoch 1") as error:
        loop.fit(_model(), optax.sgd(0.1), data, epochs=2, batch_size=96, key=jax.random.PRNGKey(0))
    # the remedies, by the keys a user sets (clipping may already be on: a smaller value helps)
    assert "optim.learning_rate" in str(error.value) and "a smaller value" in str(error.value)
