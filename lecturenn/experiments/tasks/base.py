"""What every task hands the runner (``Setup``), and what the runner and a sweep build from it:
the optimizer from ``[optim]``, the epoch driver from the kind of epoch the task's data needs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax

from lecturenn.errors import UserError
from lecturenn.models.base import Model
from lecturenn.optim.build import build_optimizer, schedule_from
from lecturenn.optim.schedules import SCHEDULES
from lecturenn.train import epochs
from lecturenn.train.loop import default_row


@dataclass
class Setup:
    """A task's data, model and evaluation, ready to train.

    ``model_config`` is the model's config with the fields that come from the data filled in, so
    that a sweep can rebuild the model with traced values (``models.base.setting(traced=True)``).
    ``epoch`` names the kind of epoch the data needs (train/epochs.py: "shuffled", "bucketed" with
    the sentences' ``lengths``, "streams"). ``vocabs`` (name -> list of tokens) are saved in the
    run folder, so that ``eval``, ``tag`` and ``sample`` never rebuild them from the data;
    ``data_files`` are the files read, whose digests the summary records.
    """

    model: Model
    model_config: Any
    train: Any  # device arrays
    valid: Any | None
    evaluate: Callable  # (params, state, split) -> {metric: float}
    splits: dict  # final evaluation: {"val": ..., "test": ...}
    epoch: str = "shuffled"
    lengths: Any = None  # "bucketed": each training sentence's length
    augment: Callable | None = None  # (key, batch) -> batch, on device
    finalize: Callable | None = None  # (params, state, out_dir) -> extra summary
    train_row: Callable = default_row  # (epoch mean loss, aux means) -> metrics row entries
    steps_per_epoch: int = 0
    vocabs: dict[str, list[str]] = field(default_factory=dict)
    data_files: list[Path] = field(default_factory=list)


# A schedule's lengths may be given in epochs (``decay_epochs = 18``): the steps are filled in from
# the data, so the schedule still spans the same epochs when ``--set train.batch_size=...`` or a
# smaller ``data.limit_train`` changes the number of steps an epoch has.
EPOCH_LENGTHS = {
    "decay_epochs": "decay_steps",
    "step_size_epochs": "step_size",
    "warmup_epochs": "warmup_steps",
}


def schedule_in_steps(schedule: dict | None, steps_per_epoch: int | None) -> dict | None:
    """The ``[optim] schedule`` table with its lengths in steps: each ``*_epochs`` option of
    ``EPOCH_LENGTHS`` becomes its step option (round(epochs × steps_per_epoch), at least 1), and
    ``piecewise_epoch_decay`` gets ``steps_per_epoch`` unless the table gives it; a warmup's
    ``then`` schedule likewise."""
    if not schedule:
        return schedule
    out = dict(schedule)
    if out.get("kind") == "piecewise_epoch_decay" and steps_per_epoch:
        out = {"steps_per_epoch": steps_per_epoch, **out}
    for in_epochs, in_steps in EPOCH_LENGTHS.items():
        if in_epochs not in out:
            continue
        value = out.pop(in_epochs)
        kind = SCHEDULES.get(out.get("kind"))
        if kind is not None and in_steps not in inspect.signature(kind).parameters:
            raise UserError(
                f"optim.schedule: schedule {out['kind']!r} has no length {in_epochs!r} (it has "
                f"no {in_steps!r})"
            )
        if in_steps in out:
            raise UserError(f"optim.schedule: give {in_steps} or {in_epochs}, not both")
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise UserError(f"optim.schedule.{in_epochs} must be a number > 0, got {value!r}")
        if not steps_per_epoch:
            raise UserError(
                f"optim.schedule.{in_epochs}: an epoch's number of steps is not known here "
                f"(it comes from the data); give {in_steps} instead"
            )
        out[in_steps] = max(1, round(value * steps_per_epoch))
    if isinstance(out.get("then"), dict):
        out["then"] = schedule_in_steps(out["then"], steps_per_epoch)
    return out


def make_optimizer(optim_cfg, params=None, labels=None, steps_per_epoch: int | None = None):
    """The ``[optim]`` table as one optax transformation (optim/build.py), its schedule's lengths
    in steps (:func:`schedule_in_steps`)."""
    schedule = schedule_in_steps(optim_cfg.schedule, steps_per_epoch)
    return build_optimizer(
        optim_cfg.name,
        optim_cfg.learning_rate,
        schedule=schedule,
        clip_global_norm=optim_cfg.clip_global_norm,
        clip_elementwise=optim_cfg.clip_elementwise,
        l1=optim_cfg.l1,
        l2=optim_cfg.l2,
        fan_in_scaling=optim_cfg.fan_in_scaling,
        embedding_lr_scale=optim_cfg.embedding_lr_scale,
        average_decay=optim_cfg.average_decay,
        params=params,
        labels=labels,
        **optim_cfg.options,
    )


def learning_rate_of(optim_cfg, steps_per_epoch: int):
    """epoch -> the learning rate at the epoch's first step (before any halving on plateau)."""
    schedule = schedule_in_steps(optim_cfg.schedule, steps_per_epoch)
    if not schedule:
        return lambda epoch: float(optim_cfg.learning_rate)
    rate = schedule_from(schedule, optim_cfg.learning_rate)
    return lambda epoch: float(rate((epoch - 1) * steps_per_epoch))


def optimizer_for(setup: Setup, model: Model, optim_cfg):
    """``make_optimizer`` for a set-up model: its parameter shapes and labels, its epoch length."""
    params_shape, _ = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    labels = model.labels(params_shape) if model.labels is not None else None
    return make_optimizer(optim_cfg, params_shape, labels, setup.steps_per_epoch)


def input_noise(std: float) -> Callable:
    """Gaussian input noise as a regularizer: x ← x + ε, ε ~ N(0, std²), fresh every step."""

    def augment(key, batch):
        noise = std * jax.random.normal(key, batch["x"].shape, batch["x"].dtype)
        return {**batch, "x": batch["x"] + noise}

    return augment


def make_epoch(
    setup: Setup, step, train_cfg, driver: str | None = None, progress=None
) -> epochs.Epoch:
    """The epoch driver of the task's kind of data around ``step`` (train/step.py)."""
    common = {"driver": driver or train_cfg.driver, "augment": setup.augment, "progress": progress}
    if setup.epoch == "bucketed":
        return epochs.bucketed(
            step, lengths=setup.lengths, batch_size=train_cfg.batch_size, **common
        )
    if setup.epoch == "streams":
        return epochs.streams(step, **common)
    num_examples = jax.tree_util.tree_leaves(setup.train)[0].shape[0]
    return epochs.shuffled(
        step, num_examples=num_examples, batch_size=train_cfg.batch_size, **common
    )


def steps_of(num_examples: int, batch_size: int) -> int:
    return max(num_examples // batch_size, 1)
