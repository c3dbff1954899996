"""The training loop: epochs of shuffled mini-batches over device-resident data (6.036's SGD with
shuffling), evaluation after each epoch, early stopping, LR halving on plateau, a NaN guard.

Two drivers run the same epoch and give the same parameters:
- ``"scan"``: the whole epoch is one ``lax.scan`` over the batches, compiled once; the host sees one
  result per epoch. Fastest for matmul models (REFERENCES: 1.8–5.3× on this CPU).
- ``"loop"``: a Python loop over one jitted step. Faster where XLA CPU slows a step down inside a
  scan (``lax.conv``), and easier to debug.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from lecturenn.errors import UserError
from lecturenn.models.base import Model
from lecturenn.optim.schedules import set_lr_scale
from lecturenn.train import checkpoint
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
    model: Model,
    optimizer,
    *,
    grads: str = "manual",
    batch_size: int,
    driver: str = "scan",
    augment: Callable | None = None,
) -> Callable:
    """epoch(params, state, opt_state, data, key) -> (params, state, opt_state, loss, aux means).

    ``data`` is a dict of device arrays with a common leading axis (e.g. {"x", "y"}).
    """
    if driver not in DRIVERS:
        raise UserError(f"train.driver must be one of {', '.join(DRIVERS)}, got {driver!r}")
    plain_step = make_step(model, optimizer, grads, jit=False)

    def step(params, state, opt_state, batch, key):
        if augment is not None:
            key, augment_key = jax.random.split(key)
            batch = augment(augment_key, batch)
        return plain_step(params, state, opt_state, batch, key)

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


def make_predict(model: Model, batch_size: int = 1024) -> Callable:
    """predict(params, state, x) -> scores of a whole split, eval mode, in jitted chunks."""

    @jax.jit
    def scores_of(params, state, x):
        return model.predict(params, state, x)

    def predict(params, state, x):
        chunks = [
            scores_of(params, state, x[i : i + batch_size])
            for i in range(0, x.shape[0], batch_size)
        ]
        return jnp.concatenate(chunks)

    return predict


def make_evaluate(
    model: Model,
    loss_fn: Callable | None = None,
    batch_size: int = 1024,
    predict: Callable | None = None,
) -> Callable:
    """evaluate(params, state, data) -> {"loss", "accuracy"} over a whole split, in eval mode.

    ``predict``: a ``make_predict`` the caller also uses, so its compiled program is shared.
    """
    from lecturenn.nn import losses

    scores_of = predict or make_predict(model, batch_size)

    def evaluate(params, state, data):
        y = data["y"]
        scores = scores_of(params, state, data["x"])
        loss = (loss_fn or losses.softmax_cross_entropy)(scores, y)
        accuracy = jnp.mean((jnp.argmax(scores, -1) == y).astype(jnp.float32))
        return {"loss": float(loss), "accuracy": float(accuracy)}

    return evaluate


@dataclass
class History:
    epochs: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_value: float = -math.inf
    stopped_early: bool = False
    lr_scale: float = 1.0


def higher_is_better(metric: str) -> bool:
    return not metric.endswith(("loss", "perplexity", "mse"))


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
    evaluate: Callable | None = None,
    monitor: str = "accuracy",
    patience: int | None = None,
    halve_lr_on_plateau: bool = False,
    augment: Callable | None = None,
    epoch_fn: Callable | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    checkpointer: Checkpointer | None = None,
    diagnose: Callable | None = None,
):
    """Train for ``epochs``; return (params, state, History) with the best-on-validation params.

    - Early stopping (CS224n): keep the parameters of the best validation epoch; ``patience``
      epochs without improvement end the run.
    - ``halve_lr_on_plateau`` (CS224n): when the validation metric does not improve, halve the
      learning rate (the optimizer must come from ``build_optimizer``, which holds an lr scale).
    - ``augment(key, batch) -> batch`` runs on device inside the epoch (input noise, flips).
    - ``checkpointer`` saves everything needed to continue bit-identically after every epoch and,
      if it holds a checkpoint, training resumes from it.
    - ``diagnose(params, state) -> dict`` adds per-epoch diagnostics to the metrics row.
    """
    init_key, key = jax.random.split(key)
    params, state = model.init(init_key)
    opt_state = optimizer.init(params)
    epoch_fn = epoch_fn or make_epoch(
        model, optimizer, grads=grads, batch_size=batch_size, driver=driver, augment=augment
    )
    evaluate = evaluate or make_evaluate(model)
    history, best = History(), (params, state)
    sign = 1.0 if higher_is_better(monitor) else -1.0
    start_epoch = 1
    if checkpointer is not None and checkpointer.has_checkpoint():
        params, state, opt_state, key, best, history = checkpointer.restore(
            params, state, opt_state, key
        )
        start_epoch = len(history.epochs) + 1
    for epoch in range(start_epoch, epochs + 1):
        key, epoch_key = jax.random.split(key)
        start = time.perf_counter()
        new = epoch_fn(params, state, opt_state, train, epoch_key)
        train_loss = float(new[3])
        seconds = time.perf_counter() - start
        if not math.isfinite(train_loss):
            kept = "; the last good checkpoint is kept" if checkpointer is not None else ""
            raise DivergedError(
                f"training loss became {train_loss} in epoch {epoch}; lower "
                f"optim.learning_rate or set optim.clip_global_norm{kept}"
            )
        params, state, opt_state = new[:3]
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "seconds": seconds,
            **{f"train_{k}": float(v) for k, v in new[4].items()},
        }
        if halve_lr_on_plateau:
            row["lr_scale"] = history.lr_scale
        if valid is not None:
            row.update({f"val_{k}": v for k, v in evaluate(params, state, valid).items()})
            value = sign * row[f"val_{monitor}"]
            if value > history.best_value:
                history.best_value, best, history.best_epoch = value, (params, state), epoch
            elif halve_lr_on_plateau:
                history.lr_scale /= 2
                opt_state = set_lr_scale(opt_state, history.lr_scale)
        else:  # without validation the latest parameters are the ones kept (and checkpointed)
            best, history.best_epoch = (params, state), epoch
        if diagnose is not None:
            row.update(diagnose(params, state))
        history.epochs.append(row)
        if valid is not None and patience is not None and epoch - history.best_epoch >= patience:
            history.stopped_early = True
        if checkpointer is not None:
            checkpointer.save(params, state, opt_state, key, best, history)
        if on_epoch is not None:
            on_epoch(row)
        if history.stopped_early:
            break
    return best[0], best[1], history


class Checkpointer:
    """Saves and restores a run's whole training state after each epoch (train/checkpoint.py):
    params, model state, optimizer state, the loop's RNG key, the best params so far and the
    history, so that a resumed run continues bit-identically."""

    def __init__(self, directory, keep: int = 2):
        self.directory, self.keep = directory, keep

    def has_checkpoint(self) -> bool:
        return checkpoint.latest_checkpoint(self.directory) is not None

    def save(self, params, state, opt_state, key, best, history: History) -> None:
        payload = {
            "params": params,
            "state": state,
            "opt_state": opt_state,
            "key": key,
            "best_params": best[0],
            "best_state": best[1],
        }
        meta = {"step": len(history.epochs), "history": dataclasses.asdict(history)}
        checkpoint.save_checkpoint(self.directory, payload, meta, keep=self.keep)

    def restore(self, params, state, opt_state, key):
        like = {
            "params": params,
            "state": state,
            "opt_state": opt_state,
            "key": key,
            "best_params": params,
            "best_state": state,
        }
        payload, meta = checkpoint.load_checkpoint(self.directory, like)
        history = History(**meta["history"])
        best = (payload["best_params"], payload["best_state"])
        return (
            payload["params"],
            payload["state"],
            payload["opt_state"],
            payload["key"],
            best,
            history,
        )


def to_device(data: dict) -> dict:
    """Place a split on the device once, for the whole run (DESIGN: data lives on device)."""
    return {k: jnp.asarray(np.asarray(v)) for k, v in data.items()}
