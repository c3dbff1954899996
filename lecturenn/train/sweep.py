"""Random hyper-parameter search, trained as one vmapped program per group of trials.

CS224n: random search beats grid search (Bergstra & Bengio 2012) — with the same budget it tries
more distinct values of the hyper-parameters that matter. Trials that differ only in values that
do not change any array's shape (learning rate, L1, L2, seed) share one compiled program: params
and optimizer state carry a leading trial axis, the optimizer is built inside ``jax.vmap`` from
the trial's traced scalars, and one ``lax.scan`` epoch runs every trial of the group at once.
Each trial keeps its own PRNG stream (initialization, shuffling, dropout), so trial ``i`` of a
group follows exactly the run ``loop.fit`` would make with the same hyper-parameters and seed.

Keys that change shapes or Python control flow (hidden sizes, activation, the MLP's dropout
rate, which the model reads as a Python float) split trials into separate groups.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lecturenn.errors import UserError
from lecturenn.io import append_line, atomic_write_text
from lecturenn.models.base import Model
from lecturenn.optim.schedules import set_lr_scale
from lecturenn.train import loop

DISTRIBUTIONS = ("uniform", "log_uniform", "int", "choice")
# Keys whose values enter the program only as scalars: trials differing in these share a program.
VECTORIZABLE = ("optim.learning_rate", "optim.l1", "optim.l2", "train.seed")
DEFAULT_SPACE = {
    "optim.learning_rate": {"log_uniform": [1e-4, 1e-1]},
    "optim.l2": {"log_uniform": [1e-6, 1e-2]},
    "train.seed": {"int": [0, 1000]},
}


# --- sampling and grouping ----------------------------------------------------------------------


def _check_space(space: dict, source: str) -> None:
    if not space:
        raise UserError(f"{source}: the search space is empty; give at least one key")
    for key, spec in space.items():
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
            raise UserError(
                f"{source}: key '{key}' must be a table with one of {', '.join(DISTRIBUTIONS)}, "
                f"e.g. {{log_uniform = [1e-4, 1e-1]}}; got {spec!r}"
            )
        ((kind, args),) = spec.items()
        if kind == "choice":
            if not isinstance(args, list) or not args:
                raise UserError(f"{source}: '{key}.choice' must be a non-empty list")
            continue
        if not (isinstance(args, list) and len(args) == 2) or not all(
            isinstance(a, (int, float)) and not isinstance(a, bool) for a in args
        ):
            raise UserError(f"{source}: '{key}.{kind}' must be [low, high], got {args!r}")
        low, high = args
        if not low <= high:
            raise UserError(f"{source}: '{key}.{kind}' has low > high: {args!r}")
        if kind == "log_uniform" and not low > 0:
            raise UserError(f"{source}: '{key}.log_uniform' needs low > 0, got {args!r}")
        if kind == "int" and not (isinstance(low, int) and isinstance(high, int)):
            raise UserError(f"{source}: '{key}.int' needs integer bounds, got {args!r}")


def sample_trials(space: dict, num_trials: int, seed: int) -> list[dict]:
    """``num_trials`` assignments {key: value}, the same for the same seed.

    ``uniform`` [a, b] and ``log_uniform`` [a, b] (uniform in log a..log b) give floats, ``int``
    [a, b] an integer with both ends included, ``choice`` one list element. Keys are drawn in
    sorted order, trial after trial, so adding a trial keeps the earlier ones.
    """
    _check_space(space, "sweep space")
    if num_trials < 1:
        raise UserError(f"the number of sweep trials must be >= 1, got {num_trials}")
    rng = np.random.default_rng(seed)
    trials = []
    for _ in range(num_trials):
        trial = {}
        for key in sorted(space):
            ((kind, args),) = space[key].items()
            if kind == "uniform":
                trial[key] = float(rng.uniform(args[0], args[1]))
            elif kind == "log_uniform":
                trial[key] = float(math.exp(rng.uniform(math.log(args[0]), math.log(args[1]))))
            elif kind == "int":
                trial[key] = int(rng.integers(args[0], args[1] + 1))
            else:
                trial[key] = args[int(rng.integers(len(args)))]
        trials.append(trial)
    return trials


def group_by_shape(trials: list[dict]) -> list[list[int]]:
    """Indices of trials that may share one vmapped program: those that agree on every key
    outside ``VECTORIZABLE``. Groups are listed in the order of their first trial."""
    groups: dict[str, list[int]] = {}
    for i, trial in enumerate(trials):
        fixed = {k: v for k, v in trial.items() if k not in VECTORIZABLE}
        groups.setdefault(json.dumps(fixed, sort_keys=True), []).append(i)
    return list(groups.values())


# --- training many trials as one program --------------------------------------------------------


@dataclass
class SweepResult:
    """Per-trial outcome of ``train_vmapped``.

    ``params`` and ``state`` hold the best-on-validation parameters (the last epoch's without a
    validation split) with a leading trial axis. ``histories[i]`` is trial i's ``loop.History``;
    ``diverged[i]`` is the epoch whose loss became NaN/inf (the trial stopped there, keeping its
    last finite parameters) or None.
    """

    params: Any
    state: Any
    histories: list[loop.History]
    diverged: list[int | None] = field(default_factory=list)


def _select(mask, new, old):
    """Per trial: ``new`` where mask[i], else ``old`` (mask broadcast over each leaf's axes)."""

    def pick(a, b):
        return jnp.where(mask.reshape(mask.shape + (1,) * (jnp.ndim(a) - 1)), a, b)

    return jax.tree_util.tree_map(pick, new, old)


def train_vmapped(
    model: Model,
    optimizer_factory: Callable[..., optax.GradientTransformation],
    data: dict,
    *,
    hparams: dict[str, Any],
    seeds: Sequence[int],
    epochs: int,
    batch_size: int,
    grads: str = "manual",
    valid: dict | None = None,
    evaluate: Callable | None = None,
    monitor: str = "accuracy",
    patience: int | None = None,
    halve_lr_on_plateau: bool = False,
    augment: Callable | None = None,
    on_epoch: Callable[[int, list[dict | None]], None] | None = None,
) -> SweepResult:
    """Train ``len(seeds)`` trials of one model, each epoch one compiled program for all.

    ``hparams`` maps keyword names of ``optimizer_factory`` to arrays of shape (n_trials,); the
    factory is called inside ``vmap`` with traced scalars (``optimizer_factory(learning_rate=lr,
    l2=l2)``), so it must not branch in Python on their values. Trial i starts from
    ``PRNGKey(seeds[i])`` and follows ``loop.fit``'s key splits and rules (``evaluate``,
    ``monitor``, ``patience``, ``halve_lr_on_plateau``, ``augment`` as there), so it reproduces
    ``loop.fit`` with the same values; the tests check this to 1e-10 in float64. Evaluation runs
    per trial on the host's ``evaluate`` (default ``loop.make_evaluate(model)``). Early stopping
    and divergence freeze a trial while the others go on; training ends when none is left.
    ``on_epoch(epoch, rows)`` receives each trial's metrics row (None for a stopped trial).
    """
    seeds = np.asarray(seeds)
    num_trials = len(seeds)
    hparams = {name: jnp.asarray(values) for name, values in hparams.items()}
    for name, values in hparams.items():
        if values.shape != (num_trials,):
            raise ValueError(f"hparams[{name!r}] has shape {values.shape}, want ({num_trials},)")
    evaluate = evaluate or loop.make_evaluate(model)
    sign = 1.0 if loop.higher_is_better(monitor) else -1.0

    def start(seed, hp):
        init_key, key = jax.random.split(jax.random.PRNGKey(seed))
        params, state = model.init(init_key)
        return params, state, optimizer_factory(**hp).init(params), key

    def trial_epoch(params, state, opt_state, key, hp, active, train):
        key, epoch_key = jax.random.split(key)
        epoch = loop.make_epoch(
            model, optimizer_factory(**hp), grads=grads, batch_size=batch_size, augment=augment
        )
        new = epoch(params, state, opt_state, train, epoch_key)
        moved = active & jnp.isfinite(new[3])
        params, state, opt_state = _select(moved, new[:3], (params, state, opt_state))
        return params, state, opt_state, key, new[3], new[4], moved

    run_epoch = jax.jit(jax.vmap(trial_epoch, in_axes=(0, 0, 0, 0, 0, 0, None)))
    unstack = jax.jit(lambda tree: [trial_slice(tree, i) for i in range(num_trials)])
    select = jax.jit(_select)
    # Initialized one trial at a time and stacked on the host: the vmapped initializers would
    # compile about 3x slower (batched threefry) than this one unbatched program, run n times.
    start = jax.jit(start)
    firsts = [start(seed, {k: v[i] for k, v in hparams.items()}) for i, seed in enumerate(seeds)]
    params, state, opt_state, keys = jax.tree_util.tree_map(
        lambda *leaves: jnp.asarray(np.stack(leaves)), *jax.device_get(firsts)
    )
    best = (params, state)

    histories = [loop.History() for _ in range(num_trials)]
    diverged: list[int | None] = [None] * num_trials
    active = np.ones(num_trials, bool)
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        params, state, opt_state, keys, losses, auxs, moved = run_epoch(
            params, state, opt_state, keys, hparams, jnp.asarray(active), data
        )
        losses, auxs, moved = jax.device_get((losses, auxs, moved))
        seconds = time.perf_counter() - started
        trials = unstack((params, state)) if valid is not None else None
        rows: list[dict | None] = [None] * num_trials
        improved = np.zeros(num_trials, bool)
        for i in np.flatnonzero(active):
            if not moved[i]:
                diverged[i], active[i] = epoch, False
                continue
            history = histories[i]
            row = {"epoch": epoch, "train_loss": float(losses[i]), "seconds": seconds}
            row.update({f"train_{k}": float(v[i]) for k, v in auxs.items()})
            if halve_lr_on_plateau:
                row["lr_scale"] = history.lr_scale
            if valid is not None:
                row.update({f"val_{k}": v for k, v in evaluate(*trials[i], valid).items()})
                value = sign * row[f"val_{monitor}"]
                if value > history.best_value:
                    history.best_value, history.best_epoch, improved[i] = value, epoch, True
                elif halve_lr_on_plateau:
                    history.lr_scale /= 2
            history.epochs.append(row)
            rows[i] = row
            if (
                valid is not None
                and patience is not None
                and epoch - history.best_epoch >= patience
            ):
                history.stopped_early, active[i] = True, False
        if valid is not None:
            best = select(jnp.asarray(improved), (params, state), best)
        if halve_lr_on_plateau:
            scales = jnp.asarray([h.lr_scale for h in histories], jnp.float32)
            opt_state = set_lr_scale(opt_state, scales)
        if on_epoch is not None:
            on_epoch(epoch, rows)
        if not active.any():
            break
    if valid is None:
        best = (params, state)
        for history in histories:
            history.best_epoch = len(history.epochs)
    return SweepResult(best[0], best[1], histories, diverged)


def trial_slice(tree, i: int):
    """Trial i's pytree out of a stacked (leading trial axis) pytree."""
    return jax.tree_util.tree_map(lambda a: a[i], tree)


# --- a sweep of a config ---------------------------------------------------------------------


def load_space(path) -> dict:
    """A search space from a TOML file, nested tables or quoted dotted keys, e.g.

    [optim]
    learning_rate = {log_uniform = [1e-4, 1e-1]}
    [model]
    hidden = {choice = [[64], [128, 64]]}
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: search space file not found") from None
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"{path}: invalid TOML: {err}") from None

    def flatten(table: dict, prefix: str) -> dict:
        out = {}
        for key, value in table.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict) and not (
                len(value) == 1 and next(iter(value)) in DISTRIBUTIONS
            ):
                out.update(flatten(value, f"{name}."))
            else:
                out[name] = value
        return out

    space = flatten(raw, "")
    _check_space(space, str(path))
    return space


def _traced_optimizer(
    optim_cfg, swept: frozenset, params_shape
) -> Callable[..., optax.GradientTransformation]:
    """The runner's optimizer (``build_optimizer``'s chain) with the swept ``learning_rate``,
    ``l1``, ``l2`` given as traced scalars (the learning rate always; l1 and l2 when in ``swept``):
    its range checks apply to concrete numbers only, and ``run_sweep`` has already checked each
    trial's values concretely through it."""
    from lecturenn.experiments.runner import make_optimizer

    def factory(learning_rate, l1, l2):
        traced = {"learning_rate": learning_rate}
        traced.update({k: v for k, v in (("l1", l1), ("l2", l2)) if k in swept})
        return make_optimizer(dataclasses.replace(optim_cfg, **traced), params_shape)

    return factory


def run_sweep(
    config_path,
    num_trials: int,
    out_dir,
    space: dict | None = None,
    overrides=(),
    *,
    seed: int = 0,
    quiet: bool = True,
) -> list[dict]:
    """Random search around a config; returns the trials ranked by their best validation metric.

    ``space`` defaults to ``DEFAULT_SPACE`` (log-uniform learning rate and L2, the seed). The data
    and model come from the config's task (experiments/tasks), built with the config's own
    ``train.seed``, so every trial is compared on the same split; a trial's ``train.seed`` drives
    its initialization, shuffling and dropout. Writes ``out_dir/trials.jsonl`` (a line per trial
    as its group finishes) and ``out_dir/sweep.md`` (the ranked table).
    """
    from lecturenn.experiments import config as config_lib
    from lecturenn.experiments import runner, schemas
    from lecturenn.experiments.tasks import TASKS

    space = DEFAULT_SPACE if space is None else space
    trials = sample_trials(space, num_trials, seed)
    base = config_lib.load_config(config_path, list(overrides))
    monitor = base.train.monitor
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    trials_path = out_dir / "trials.jsonl"
    atomic_write_text(trials_path, "")
    rows, started = [], time.perf_counter()
    for group_index, group in enumerate(group_by_shape(trials)):
        fixed = [
            f"{k}={json.dumps(v)}" for k, v in trials[group[0]].items() if k not in VECTORIZABLE
        ]
        cfg = config_lib.load_config(config_path, [*overrides, *fixed])
        setup = TASKS[schemas.task_of(cfg)].build(cfg)
        if setup.epoch_fn is not None or setup.valid is None:
            raise UserError(
                f"{config_path}: a sweep needs shuffled mini-batch epochs and a validation split "
                f"to rank trials on (for digits, spirals, xor: data.val_fraction > 0)"
            )
        params_shape, _ = jax.eval_shape(setup.model.init, jax.random.PRNGKey(0))
        values = {
            name: [trials[i].get(f"optim.{name}", getattr(cfg.optim, name)) for i in group]
            for name in ("learning_rate", "l1", "l2")
        }
        for j in range(len(group)):
            one = dataclasses.replace(cfg.optim, **{n: v[j] for n, v in values.items()})
            runner.make_optimizer(one, params_shape)
        swept = frozenset(n for n in ("l1", "l2") if f"optim.{n}" in space)
        group_start = time.perf_counter()
        result = train_vmapped(
            setup.model,
            _traced_optimizer(cfg.optim, swept, params_shape),
            setup.train,
            hparams=values,
            seeds=[trials[i].get("train.seed", cfg.train.seed) for i in group],
            epochs=cfg.train.epochs,
            batch_size=cfg.train.batch_size,
            grads=cfg.train.grads,
            valid=setup.valid,
            evaluate=setup.evaluate,
            monitor=monitor,
            patience=cfg.train.patience,
            halve_lr_on_plateau=cfg.train.halve_lr_on_plateau,
            augment=setup.augment,
        )
        group_seconds = round(time.perf_counter() - group_start, 3)
        for j, i in enumerate(group):
            history = result.histories[j]
            best = next((r for r in history.epochs if r["epoch"] == history.best_epoch), {})
            row = {
                "trial": i,
                "group": group_index,
                **trials[i],
                "best_epoch": history.best_epoch,
                "epochs_run": len(history.epochs),
                "diverged_epoch": result.diverged[j],
                "group_seconds": group_seconds,
                **{k: v for k, v in best.items() if k.startswith(("val_", "train_"))},
            }
            append_line(trials_path, json.dumps(row, sort_keys=True))
            rows.append(row)
        if not quiet:
            print(f"group {group_index}: {len(group)} trials in {group_seconds:.1f}s", flush=True)
    sign = -1.0 if loop.higher_is_better(monitor) else 1.0

    def rank_key(row):
        value = row.get(f"val_{monitor}")
        finite = value is not None and math.isfinite(value)
        return (0, sign * value) if finite else (1, 0.0)

    ranked = sorted(rows, key=rank_key)
    seconds = time.perf_counter() - started
    _write_table(out_dir / "sweep.md", ranked, list(space), monitor, config_path, seconds)
    return ranked


def _write_table(
    path: Path, ranked: list[dict], keys: list[str], monitor: str, config_path, seconds: float
) -> None:
    def fmt(value) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "–" if value is None else str(value)

    columns = [
        "trial",
        *keys,
        f"val_{monitor}",
        "val_loss" if monitor != "loss" else "val_accuracy",
        "best_epoch",
        "epochs_run",
        "diverged_epoch",
    ]
    lines = [
        f"# Sweep of {config_path}",
        "",
        f"{len(ranked)} trials, ranked by validation {monitor} at each trial's best epoch "
        f"({seconds:.1f} s in all).",
        "",
        "| rank | " + " | ".join(columns) + " |",
        "|" + "---|" * (len(columns) + 1),
    ]
    for rank, row in enumerate(ranked, 1):
        lines.append(f"| {rank} | " + " | ".join(fmt(row.get(c)) for c in columns) + " |")
    atomic_write_text(path, "\n".join(lines) + "\n")
