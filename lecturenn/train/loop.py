"""The training loop: epochs of shuffled mini-batches over device-resident data (6.036's SGD with
shuffling), evaluation after each epoch, early stopping, LR halving on plateau, a NaN guard.

Two drivers run the same epoch and give the same parameters:
- ``"scan"``: the whole epoch is one ``lax.scan`` over the batches, compiled once; the host sees one
  result per epoch. Fastest for matmul models (REFERENCES: 1.8–5.3× on this CPU).
- ``"loop"``: a Python loop over one jitted step. Faster where XLA CPU slows a step down inside a
  scan (``lax.conv``), and easier to debug.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from lecturenn.errors import UserError
from lecturenn.models.base import Model
from lecturenn.train.step import make_step

DRIVERS = ("scan", "loop")


class DivergedError(UserError):
    """The loss became NaN or infinite: the run stops and keeps its last good parameters."""


def epoch_batches(key, num_examples: int, batch_size: int):
    """A fresh permutation cut into (num_batches, batch_size) rows; the remainder is dropped."""
    num_batches = num_examples // batch_size
    if num_batches == 0:
        raise UserError(
            f"train.batch_size={batch_size} is larger than the training set "
            f"({num_examples} examples)"
        )
    perm = jax.random.permutation(key, num_examples)
    return perm[: num_batches * batch_size].reshape(num_batches, batch_size)


def make_epoch(
    model: Model, optimizer, *, grads: str = "manual", batch_size: int, driver: str = "scan"
) -> Callable:
    """epoch(params, state, opt_state, data, key) -> (params, state, opt_state, loss, aux means).

    ``data`` is a dict of device arrays with a common leading axis (e.g. {"x", "y"}).
    """
    if driver not in DRIVERS:
        raise UserError(f"train.driver must be one of {', '.join(DRIVERS)}, got {driver!r}")
    step = make_step(model, optimizer, grads, jit=False)

    def split(key, data):
        perm_key, step_key = jax.random.split(key)
        order = epoch_batches(perm_key, jax.tree_util.tree_leaves(data)[0].shape[0], batch_size)
        return order, jax.random.split(step_key, order.shape[0])

    if driver == "scan":

        @jax.jit
        def epoch(params, state, opt_state, data, key):
            order, keys = split(key, data)

            def body(carry, xs):
                idx, k = xs
                batch = {name: value[idx] for name, value in data.items()}
                p, s, o, loss, aux = step(*carry, batch, k)
                return (p, s, o), (loss, aux)

            (params, state, opt_state), (losses, auxs) = jax.lax.scan(
                body, (params, state, opt_state), (order, keys)
            )
            return params, state, opt_state, losses.mean(), jax.tree_util.tree_map(jnp.mean, auxs)

        return epoch

    jit_step = jax.jit(step)
    jit_split = jax.jit(split)

    def epoch(params, state, opt_state, data, key):
        order, keys = jit_split(key, data)
        losses, auxs = [], []
        for i in range(order.shape[0]):
            batch = {name: value[order[i]] for name, value in data.items()}
            params, state, opt_state, loss, aux = jit_step(params, state, opt_state, batch, keys[i])
            losses.append(loss)
            auxs.append(aux)
        mean_aux = jax.tree_util.tree_map(lambda *v: jnp.mean(jnp.stack(v)), *auxs)
        return params, state, opt_state, jnp.mean(jnp.stack(losses)), mean_aux

    return epoch


def make_evaluate(
    model: Model, loss_fn: Callable | None = None, batch_size: int = 1024
) -> Callable:
    """evaluate(params, state, data) -> {"loss", "accuracy"} over a whole split, in eval mode."""
    from lecturenn.nn import losses

    @jax.jit
    def scores_of(params, state, x):
        return model.predict(params, state, x)

    def evaluate(params, state, data):
        x, y = data["x"], data["y"]
        scores = jnp.concatenate(
            [
                scores_of(params, state, x[i : i + batch_size])
                for i in range(0, x.shape[0], batch_size)
            ]
        )
        loss = (loss_fn or losses.softmax_cross_entropy)(scores, y)
        accuracy = jnp.mean((jnp.argmax(scores, -1) == y).astype(jnp.float32))
        return {"loss": float(loss), "accuracy": float(accuracy)}

    return evaluate


@dataclass
class History:
    epochs: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False


def fit(
    model: Model,
    optimizer,
    train: dict,
    *,
    epochs: int,
    batch_size: int,
    key,
    grads: str = "manual",
    driver: str = "scan",
    valid: dict | None = None,
    monitor: str = "accuracy",
    patience: int | None = None,
    on_epoch: Callable[[dict], None] | None = None,
):
    """Train for ``epochs``; returns (params, state, History) with the best-on-validation params.

    Early stopping (CS224n: keep the parameters of the best validation epoch) when ``valid`` is
    given; ``patience`` epochs without improvement end the run.
    """
    init_key, key = jax.random.split(key)
    params, state = model.init(init_key)
    opt_state = optimizer.init(params)
    epoch_fn = make_epoch(model, optimizer, grads=grads, batch_size=batch_size, driver=driver)
    evaluate = make_evaluate(model)
    history, best, best_value = History(), (params, state), -math.inf
    for epoch in range(1, epochs + 1):
        key, epoch_key = jax.random.split(key)
        start = time.perf_counter()
        new = epoch_fn(params, state, opt_state, train, epoch_key)
        train_loss = float(new[3])
        seconds = time.perf_counter() - start
        if not math.isfinite(train_loss):
            raise DivergedError(
                f"training loss became {train_loss} in epoch {epoch}; lower "
                "optim.learning_rate or set optim.clip_global_norm"
            )
        params, state, opt_state = new[:3]
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "seconds": seconds,
            **{f"train_{k}": float(v) for k, v in new[4].items()},
        }
        if valid is not None:
            row.update({f"val_{k}": v for k, v in evaluate(params, state, valid).items()})
            value = row[f"val_{monitor}"] * (-1 if monitor == "loss" else 1)
            if value > best_value:
                best_value, best, history.best_epoch = value, (params, state), epoch
        history.epochs.append(row)
        if on_epoch is not None:
            on_epoch(row)
        if valid is not None and patience is not None and epoch - history.best_epoch >= patience:
            history.stopped_early = True
            break
    if valid is None:
        best, history.best_epoch = (params, state), len(history.epochs)
    return best[0], best[1], history


def to_device(data: dict) -> dict:
    """Place a split on the device once, for the whole run (DESIGN: data lives on device)."""
    return {k: jnp.asarray(np.asarray(v)) for k, v in data.items()}
