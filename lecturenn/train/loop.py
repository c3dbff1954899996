"""The training loop: epochs (train/epochs.py), evaluation after each one, the best-epoch /
patience / learning-rate-halving policy (shared with the vmapped trials of train/trials.py), a
NaN guard and a checkpoint after every epoch.

    params, state, history = fit(model, optimizer, train, epochs=10, key=key, epoch_fn=epoch,
                                 valid=valid, evaluate=evaluate, policy=Policy("accuracy"))
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
from lecturenn.nn import losses
from lecturenn.optim.averaging import averaged_params
from lecturenn.optim.schedules import set_lr_scale
from lecturenn.train import epochs as epochs_lib
from lecturenn.train.checkpoint import Checkpointer
from lecturenn.train.step import make_step


class DivergedError(UserError):
    """The loss became NaN or infinite: the run stops and keeps its last good parameters."""


@dataclass
class History:
    epochs: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_value: float = -math.inf
    stopped_early: bool = False
    lr_scale: float = 1.0


def higher_is_better(metric: str) -> bool:
    return not metric.endswith(("loss", "perplexity", "mse"))


@dataclass(frozen=True)
class Policy:
    """Which epoch's parameters are kept and when training slows down or stops (CS224n tips):

    - early stopping: keep the parameters of the best validation epoch (by ``monitor``);
      ``patience`` epochs without improvement end the run;
    - ``halve_lr_on_plateau``: an epoch that does not improve halves the learning rate (the
      optimizer holds an lr scale: ``optim.build_optimizer``).

    Without a validation split the latest parameters are the ones kept.
    """

    monitor: str = "accuracy"
    patience: int | None = None
    halve_lr_on_plateau: bool = False

    def record(self, history: History, row: dict) -> tuple[bool, bool]:
        """Add an epoch's metrics row (with ``val_*`` entries when there is a validation split)
        to ``history``; return (improved, halved). Sets ``history.stopped_early`` when patience
        runs out. ``row["lr_scale"]`` records the scale the epoch trained with."""
        epoch = row["epoch"]
        if self.halve_lr_on_plateau:
            row.setdefault("lr_scale", history.lr_scale)
        improved = halved = False
        key = f"val_{self.monitor}"
        if key in row:
            value = (1.0 if higher_is_better(self.monitor) else -1.0) * row[key]
            if value > history.best_value:
                history.best_value, history.best_epoch, improved = value, epoch, True
            elif self.halve_lr_on_plateau:
                history.lr_scale /= 2
                halved = True
            if self.patience is not None and epoch - history.best_epoch >= self.patience:
                history.stopped_early = True
        else:
            history.best_epoch, improved = epoch, True
        history.epochs.append(row)
        return improved, halved

    def finished(self, history: History) -> bool:
        """Whether a restored history has already used up its patience (an extended run)."""
        if self.patience is None or history.best_epoch < 0:
            return False
        return len(history.epochs) - history.best_epoch >= self.patience


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
    """evaluate(params, state, data) -> {"loss", "accuracy"} of a classifier over a whole split,
    in eval mode. ``predict``: a ``make_predict`` the caller also uses, so its compiled program
    is shared."""
    scores_of = predict or make_predict(model, batch_size)

    def evaluate(params, state, data):
        y = data["y"]
        scores = scores_of(params, state, data["x"])
        loss = (loss_fn or losses.softmax_cross_entropy)(scores, y)
        return {"loss": float(loss), "accuracy": float(losses.accuracy(scores, y))}

    return evaluate


def default_row(loss, aux) -> dict:
    """An epoch's training figures: ``train_loss`` and ``train_<aux>`` means."""
    return {"train_loss": float(loss), **{f"train_{k}": float(v) for k, v in aux.items()}}


def fit(
    model: Model,
    optimizer,
    train: dict,
    *,
    epochs: int,
    key,
    epoch_fn: Callable | None = None,
    batch_size: int | None = None,
    grads: str = "manual",
    driver: str = "scan",
    valid=None,
    evaluate: Callable | None = None,
    policy: Policy | None = None,
    augment: Callable | None = None,
    train_row: Callable = default_row,
    on_epoch: Callable[[dict], None] | None = None,
    checkpointer: Checkpointer | None = None,
    diagnose: Callable | None = None,
    learning_rate: Callable[[int], float] | None = None,
):
    """Train for ``epochs``; return (params, state, History) with the kept (best) parameters.

    - ``epoch_fn(params, state, opt_state, train, key)``: an epoch driver (train/epochs.py);
      by default shuffled mini-batches of ``batch_size`` (``grads``, ``driver``, ``augment`` as
      there).
    - ``policy``: best epoch, patience and LR halving (``Policy``); ``evaluate(params, state,
      valid)`` gives the validation metrics.
    - ``train_row(loss, aux) -> dict``: the epoch's training figures for the metrics row.
    - ``checkpointer`` saves everything needed to continue bit-identically after every epoch and,
      if it holds a checkpoint, training resumes from it (and may go on past the epochs of a
      finished run).
    - ``diagnose(params, state) -> dict`` adds per-epoch diagnostics to the metrics row.
    - ``learning_rate(epoch)``: the schedule's rate at the epoch's start; the row records it
      (times the plateau halvings) as ``lr``.

    With an optimizer that averages the parameters (optim/averaging.py), evaluation, diagnostics
    and the kept parameters use the average; training continues from the parameters as trained.
    """
    policy = policy or Policy()
    init_key, key = jax.random.split(key)
    params, state = model.init(init_key)
    opt_state = optimizer.init(params)
    if epoch_fn is None:
        num_examples = jax.tree_util.tree_leaves(train)[0].shape[0]
        epoch_fn = epochs_lib.shuffled(
            make_step(model, optimizer, grads, jit=False),
            num_examples=num_examples,
            batch_size=batch_size,
            driver=driver,
            augment=augment,
        )
    evaluate = evaluate or make_evaluate(model)
    history, best = History(), (params, state)
    if checkpointer is not None and checkpointer.has_checkpoint():
        params, state, opt_state, key, best, meta = checkpointer.restore(
            params, state, opt_state, key
        )
        history = History(**meta)
        if policy.finished(history):
            return best[0], best[1], history
        history.stopped_early = False
    for epoch in range(len(history.epochs) + 1, epochs + 1):
        key, epoch_key = jax.random.split(key)
        start = time.perf_counter()
        new = epoch_fn(params, state, opt_state, train, epoch_key)
        row = {"epoch": epoch, **train_row(new[3], new[4])}
        row["seconds"] = time.perf_counter() - start
        if not math.isfinite(row["train_loss"]):
            kept = "; the last good checkpoint is kept" if checkpointer is not None else ""
            raise DivergedError(
                f"training loss became {row['train_loss']} in epoch {epoch}; lower "
                f"optim.learning_rate, or clip the gradients with optim.clip_global_norm (a "
                f"smaller value if it is set){kept}"
            )
        params, state, opt_state = new[:3]
        shown = averaged_params(opt_state, params)  # the parameters as trained, or their average
        if policy.halve_lr_on_plateau:
            row["lr_scale"] = history.lr_scale
        if learning_rate is not None:
            row["lr"] = learning_rate(epoch) * history.lr_scale
        if valid is not None:
            row.update({f"val_{k}": v for k, v in evaluate(shown, state, valid).items()})
        if diagnose is not None:
            row.update(diagnose(shown, state))
        improved, halved = policy.record(history, row)
        if improved:
            best = (shown, state)
        if halved:
            opt_state = set_lr_scale(opt_state, history.lr_scale)
        if checkpointer is not None:
            checkpointer.save(params, state, opt_state, key, best, history)
        if on_epoch is not None:
            on_epoch(row)
        if history.stopped_early:
            break
    return best[0], best[1], history


def to_device(data: dict) -> dict:
    """Place a split on the device once, for the whole run: the host sees one result per epoch."""
    return {k: jnp.asarray(np.asarray(v)) for k, v in data.items()}
