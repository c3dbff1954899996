"""Trials of one model as one vmapped program equal the sequential runs of ``loop.fit``."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lecturenn.models import mlp
from lecturenn.optim import transforms
from lecturenn.optim.schedules import inject_lr_scale
from lecturenn.train import epochs as epochs_lib
from lecturenn.train import loop, trials


def _data(n, seed, d=6, k=3):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(k, d)) * 1.5
    y = rng.integers(0, k, n)
    return {"x": jnp.asarray(centres[y] + rng.normal(size=(n, d))), "y": jnp.asarray(y)}


CFG = mlp.MLPConfig(input_dim=6, num_classes=3, hidden=(8,), activation="tanh", dtype="float64")


def _optimizer(learning_rate, l2):
    return optax.chain(
        optax.add_decayed_weights(l2), inject_lr_scale(transforms.adam(learning_rate))
    )


def _build(hp):
    model = mlp.make(dataclasses.replace(CFG, dropout=hp["dropout"]))
    return model, _optimizer(hp["learning_rate"], hp["l2"])


def _epoch(num_examples):
    return lambda step: epochs_lib.shuffled(step, num_examples=num_examples, batch_size=16)


POLICY = loop.Policy("accuracy", patience=2, halve_lr_on_plateau=True)


def _assert_matches_fit(result, j, train, valid, lr, l2, dropout, seed, epochs):
    model = mlp.make(dataclasses.replace(CFG, dropout=dropout))
    params, state, history = loop.fit(
        model,
        _optimizer(lr, l2),
        train,
        epochs=epochs,
        batch_size=16,
        key=jax.random.PRNGKey(seed),
        valid=valid,
        policy=POLICY,
    )
    got = result.histories[j]
    assert (got.best_epoch, got.stopped_early) == (history.best_epoch, history.stopped_early)
    assert len(got.epochs) == len(history.epochs)
    for a, b in zip(got.epochs, history.epochs, strict=True):
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr_scale"):
            np.testing.assert_allclose(a[key], b[key], rtol=1e-10, err_msg=key)
    for a, b in zip(
        jax.tree_util.tree_leaves(trials.trial_slice((result.params, result.state), j)),
        jax.tree_util.tree_leaves((params, state)),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("per_call", [None, 1, 3])
def test_vmapped_trials_equal_sequential_fit_runs_and_a_diverging_trial_stops_alone(per_call):
    """per_call: all four trials in each call of the compiled epoch, one at a time, or slices
    of three and one (the diverged trial's slice is skipped from the second epoch on)."""
    train, valid = _data(96, 0), _data(48, 1)
    # The fourth trial's NaN learning rate makes its first epoch's loss NaN. Dropout differs
    # between trials, traced like the learning rate: one program for all four.
    lrs, l2s, seeds = [0.05, 0.003, 0.0002, float("nan")], [0.0, 1e-3, 1e-2, 0.0], [3, 4, 3, 5]
    dropouts = [0.1, 0.0, 0.3, 0.1]
    epochs = 4
    result = trials.train_vmapped(
        _build,
        _epoch(96),
        train,
        hparams={"learning_rate": lrs, "l2": l2s, "dropout": dropouts},
        seeds=seeds,
        epochs=epochs,
        valid=valid,
        evaluate=loop.make_evaluate(mlp.make(CFG)),
        policy=POLICY,
        per_call=per_call,
    )
    assert result.diverged == [None, None, None, 1]
    for j in range(3):
        _assert_matches_fit(result, j, train, valid, lrs[j], l2s[j], dropouts[j], seeds[j], epochs)
    assert result.histories[3].epochs == []
    assert any(row["lr_scale"] < 1 for h in result.histories for row in h.epochs)
    initial = mlp.make(CFG).init(jax.random.split(jax.random.PRNGKey(seeds[3]))[0])
    stuck = trials.trial_slice((result.params, result.state), 3)
    for a, b in zip(
        jax.tree_util.tree_leaves(stuck), jax.tree_util.tree_leaves(initial), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_auto_per_call_follows_the_step_flops_estimate(monkeypatch):
    """XLA's estimate counts one step (the scan's body once, not once per step): between the
    forward matmuls' 2·B·(6·8 + 8·3) and ten times that; below the threshold all trials share
    a call, above it they run one at a time with the same results."""
    train = _data(96, 0)
    kwargs = dict(
        hparams={"learning_rate": [0.05, 0.003, 0.01], "l2": [0.0] * 3, "dropout": [0.0] * 3},
        seeds=[3, 4, 5],
        epochs=2,
    )
    model, optimizer = _build({"learning_rate": 0.05, "l2": 0.0, "dropout": 0.0})
    params, state = model.init(jax.random.PRNGKey(0))
    run = jax.jit(trials.trial_epoch(_build, _epoch(96)))
    hp = {"learning_rate": 0.05, "l2": 0.0, "dropout": 0.0}
    plan = _epoch(96)(None).plan(jax.random.PRNGKey(1))
    flops = trials.step_flops(run, params, state, optimizer.init(params), hp, train, plan)
    forward = 2 * 16 * (6 * 8 + 8 * 3)
    assert forward < flops < 10 * forward
    together = trials.train_vmapped(_build, _epoch(96), train, per_call="auto", **kwargs)
    assert together.per_call == 3
    monkeypatch.setattr(trials, "VMAP_MAX_FLOPS", flops / 2)
    alone = trials.train_vmapped(_build, _epoch(96), train, per_call="auto", **kwargs)
    assert alone.per_call == 1
    for a, b in zip(together.histories, alone.histories, strict=True):
        np.testing.assert_allclose(
            [r["train_loss"] for r in a.epochs], [r["train_loss"] for r in b.epochs], rtol=1e-10
        )
