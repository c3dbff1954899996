"""Adding-problem task (Hochreiter & Schmidhuber 1997; Le, Jaitly & Hinton 2015): regress the sum
of the two marked numbers of a length-T sequence from the last hidden state of a tanh RNN, an IRNN
or an LSTM (models/sequence_regressor.py). Metric: test MSE; always predicting 1 scores ≈ 0.167.

Training, validation and test sets are drawn once from data/synthetic.py's generator with
different seeds; the runner's shuffled mini-batch epoch trains on the training set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lecturenn.experiments.schemas import dataset, model

TASK = "adding"


@model("sequence_regressor")
@dataclass
class SequenceRegressorModel:
    TASK: ClassVar[str] = TASK
    kind: str = "sequence_regressor"
    cell: str = "irnn"
    hidden_dim: int = 100
    forget_bias: float = 1.0
    init_scale: float = 0.001


@dataset("adding")
@dataclass
class AddingData:
    TASKS: ClassVar[tuple[str, ...]] = (TASK,)
    name: str = "adding"
    length: int = 200
    num_train: int = 20000
    num_valid: int = 1000
    num_test: int = 10000


def make_evaluate(model_, batch_size: int = 2000):
    """evaluate(params, state, split) -> {"mse", "loss"} over the whole split."""
    import jax
    import jax.numpy as jnp

    @jax.jit
    def squared_sum(params, x, y):
        return jnp.sum((model_.predict(params, {}, x) - y) ** 2)

    def evaluate(params, state, data):
        x, y = data["x"], data["y"]
        total = sum(
            float(squared_sum(params, x[i : i + batch_size], y[i : i + batch_size]))
            for i in range(0, x.shape[0], batch_size)
        )
        mse = total / x.shape[0]
        return {"mse": mse, "loss": mse}

    return evaluate


def build(cfg):
    from lecturenn.data.synthetic import adding_problem
    from lecturenn.experiments.runner import Setup
    from lecturenn.models import sequence_regressor
    from lecturenn.train import loop

    seed, length = cfg.train.seed, cfg.data.length
    train = loop.to_device(adding_problem(cfg.data.num_train, length, seed))
    valid = loop.to_device(adding_problem(cfg.data.num_valid, length, seed + 1))
    test = loop.to_device(adding_problem(cfg.data.num_test, length, seed + 2))
    model_ = sequence_regressor.make(
        sequence_regressor.SequenceRegressorConfig(
            input_dim=2,
            hidden_dim=cfg.model.hidden_dim,
            cell=cfg.model.cell,
            forget_bias=cfg.model.forget_bias,
            init_scale=cfg.model.init_scale,
        )
    )
    return Setup(
        model=model_,
        train=train,
        valid=valid,
        evaluate=make_evaluate(model_),
        splits={"val": valid, "test": test},
    )
