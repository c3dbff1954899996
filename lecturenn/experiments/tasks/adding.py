"""Adding-problem task (Hochreiter & Schmidhuber 1997; Le, Jaitly & Hinton 2015): regress the sum
of the two marked numbers of a length-T sequence from the last hidden state of a tanh RNN, an IRNN
or an LSTM (models/sequence_regressor.py). Metric: test MSE; always predicting 1 scores ≈ 0.167.

Training, validation and test sets are drawn once from data/synthetic.py's generator with
different seeds; the shuffled mini-batch epoch trains on the training set.
"""

from __future__ import annotations

from dataclasses import replace

import jax
import jax.numpy as jnp

from lecturenn.data.synthetic import adding_problem
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
        augment=input_noise(cfg.train.input_noise) if cfg.train.input_noise else None,
        steps_per_epoch=steps_of(cfg.data.num_train, cfg.train.batch_size),
    )
