"""Adding-problem task (Hochreiter & Schmidhuber 1997; Le, Jaitly & Hinton 2015): regress the sum
of the two marked numbers of a length-T sequence from the last hidden state of a tanh RNN, an IRNN
or an LSTM (models/sequence_regressor.py). Metric: test MSE; always predicting 1 scores ≈ 0.167.

Validation and test sets are drawn once from data/synthetic.py's generator with their own seeds.
The shuffled mini-batch epoch trains on a training set drawn the same way, or, with
``data.fresh``, on a batch drawn afresh on device at every step (``adding_batch``): an endless
supply of sequences, as Le et al. (2015) train, which is what lets T = 400 be learned rather than
memorized (a fixed 16k-sequence set over-fits before the long-range sum is found).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import jax
import jax.numpy as jnp

from lecturenn.data.synthetic import adding_batch, adding_problem
from lecturenn.experiments.tasks.base import Setup, input_noise, steps_of
from lecturenn.models import sequence_regressor
from lecturenn.train import loop


def make_evaluate(model, batch_size: int = 2000):
    """evaluate(params, state, split) -> {"mse", "loss"} over the whole split."""

    @jax.jit
    def squared_sum(params, x, y):
        return jnp.sum((model.predict(params, {}, x) - y) ** 2)

    def evaluate(params, state, data):
        x, y = data["x"], data["y"]
        total = sum(
            float(squared_sum(params, x[i : i + batch_size], y[i : i + batch_size]))
            for i in range(0, x.shape[0], batch_size)
        )
        mse = total / x.shape[0]
        return {"mse": mse, "loss": mse}

    return evaluate


def fresh_batches(length: int) -> Callable:
    """augment(key, batch) -> a newly drawn batch of the same size (``data.fresh``)."""

    def augment(key, batch):
        return adding_batch(key, batch["y"].shape[0], length)

    return augment


def augment_of(cfg) -> Callable | None:
    noise = input_noise(cfg.train.input_noise) if cfg.train.input_noise else None
    if not cfg.data.fresh:
        return noise
    fresh = fresh_batches(cfg.data.length)
    if noise is None:
        return fresh
    return lambda key, batch: noise(jax.random.fold_in(key, 1), fresh(key, batch))


def build(cfg) -> Setup:
    seed, length = cfg.train.seed, cfg.data.length
    train = loop.to_device(adding_problem(cfg.data.num_train, length, seed))
    valid = loop.to_device(adding_problem(cfg.data.num_valid, length, seed + 1))
    test = loop.to_device(adding_problem(cfg.data.num_test, length, seed + 2))
    model_cfg = replace(cfg.model, input_dim=train["x"].shape[-1])
    model = sequence_regressor.make(model_cfg)
    return Setup(
        model=model,
        model_config=model_cfg,
        train=train,
        valid=valid,
        evaluate=make_evaluate(model),
        splits={"val": valid, "test": test},
        augment=augment_of(cfg),
        steps_per_epoch=steps_of(cfg.data.num_train, cfg.train.batch_size),
    )
