"""``lecturenn sweep CONFIG --trials N``: random search around a config.

CS224n: random search beats grid search (Bergstra & Bengio 2012) — with the same budget it tries
more distinct values of the hyper-parameters that matter. Trials that differ only in values that
enter the program as numbers (the learning rate, L1, L2, the seed, and the model's dropout-like
rates, ``models.base.setting(traced=True)``) share one compiled program (train/trials.py): every
epoch of the group is one vmapped ``lax.scan`` over all its trials when a trial's step is small,
or the same unbatched program called for one trial after another when a step already fills the
cores (``--trials-per-call``, "auto" by default: XLA's estimate of a step's floating-point
operations decides). Keys that change shapes or Python control flow (hidden sizes, activation,
...) split the trials into groups, one program each.

The sweep folder holds ``trials.jsonl`` (a line per trial as its group finishes), ``sweep.md`` (the
trials ranked by their best validation figure) and ``best/``: the best trial as an ordinary run
folder (its config with the trial's values, metrics, checkpoint, summary with the test figures),
which ``eval``, ``tag`` and ``sample`` accept.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import tomllib
from pathlib import Path

import jax
import numpy as np

from lecturenn.errors import UserError
from lecturenn.experiments import config as config_lib
from lecturenn.experiments import runner, schemas
from lecturenn.experiments.tasks import TASKS
from lecturenn.experiments.tasks.base import make_epoch, make_optimizer
from lecturenn.io import append_line, atomic_write_json, atomic_write_text
from lecturenn.train import checkpoint, loop
from lecturenn.train import trials as trials_lib

DISTRIBUTIONS = ("uniform", "log_uniform", "int", "choice")
OPTIM_SCALARS = ("learning_rate", "l1", "l2")
DEFAULT_SPACE = {
    "optim.learning_rate": {"log_uniform": [1e-4, 1e-1]},
    "optim.l2": {"log_uniform": [1e-6, 1e-2]},
    "train.seed": {"int": [0, 1000]},
}


def vectorizable(model_cls) -> tuple[str, ...]:
    """Keys whose values enter the program only as numbers, so trials may share a program."""
    traced = [f"model.{f.name}" for f in dataclasses.fields(model_cls) if f.metadata.get("traced")]
    return (*(f"optim.{name}" for name in OPTIM_SCALARS), "train.seed", *traced)


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


def group_by_shape(trials: list[dict], shared: tuple[str, ...]) -> list[list[int]]:
    """Indices of trials that may share one vmapped program: those that agree on every key
    outside ``shared`` (``vectorizable``). Groups are listed in the order of their first trial."""
    groups: dict[str, list[int]] = {}
    for i, trial in enumerate(trials):
        fixed = {k: v for k, v in trial.items() if k not in shared}
        groups.setdefault(json.dumps(fixed, sort_keys=True), []).append(i)
    return list(groups.values())


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


def _model_keys(trial: dict) -> dict:
    return {k.removeprefix("model."): v for k, v in trial.items() if k.startswith("model.")}


def run_sweep(
    config_path,
    num_trials: int,
    out_dir,
    space: dict | None = None,
    overrides=(),
    *,
    seed: int = 0,
    quiet: bool = True,
    per_call: int | str = "auto",
) -> list[dict]:
    """Random search around a config; returns the trials ranked by their best validation metric.

    ``space`` defaults to ``DEFAULT_SPACE`` (log-uniform learning rate and L2, the seed). The data
    comes from the config's task, built with the config's own ``train.seed``, so every trial is
    compared on the same split; a trial's ``train.seed`` drives its initialization, shuffling and
    dropout. ``per_call`` is how many of a group's trials each call of its compiled epoch trains
    (``train_vmapped``'s: "auto", or a positive int; 1 trains them one after another through
    one compilation).
    """
    space = DEFAULT_SPACE if space is None else space
    trials = sample_trials(space, num_trials, seed)
    base = config_lib.load_config(config_path, list(overrides))
    monitor = base.train.monitor
    shared = vectorizable(type(base.model))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    trials_path = out_dir / "trials.jsonl"
    atomic_write_text(trials_path, "")
    rows, started, best = [], time.perf_counter(), None
    sign = 1.0 if loop.higher_is_better(monitor) else -1.0
    for group_index, group in enumerate(group_by_shape(trials, shared)):
        fixed = [f"{k}={json.dumps(v)}" for k, v in trials[group[0]].items() if k not in shared]
        cfg = config_lib.load_config(config_path, [*overrides, *fixed])
        setup = TASKS[schemas.task_of(cfg)].build(cfg)
        if setup.valid is None:
            raise UserError(
                f"{config_path}: a sweep needs a validation split to rank trials on "
                "(for digits, spirals, xor: data.val_fraction > 0)"
            )
        result, group_seconds = _train_group(cfg, setup, [trials[i] for i in group], per_call)
        for j, i in enumerate(group):
            history = result.histories[j]
            best_row = next((r for r in history.epochs if r["epoch"] == history.best_epoch), {})
            row = {
                "trial": i,
                "group": group_index,
                **trials[i],
                "best_epoch": history.best_epoch,
                "epochs_run": len(history.epochs),
                "diverged_epoch": result.diverged[j],
                "group_seconds": group_seconds,
                "trials_per_call": result.per_call,
                **{k: v for k, v in best_row.items() if k.startswith(("val_", "train_"))},
            }
            append_line(trials_path, json.dumps(row, sort_keys=True))
            rows.append(row)
            value = row.get(f"val_{monitor}")
            if value is not None and math.isfinite(value):
                if best is None or sign * value > best[0]:
                    best = (sign * value, cfg, setup, result, j, trials[i])
        if not quiet:
            print(
                f"group {group_index}: {len(group)} trials in {group_seconds:.1f}s, "
                f"{result.per_call} per call of the compiled epoch",
                flush=True,
            )

    def rank_key(row):
        value = row.get(f"val_{monitor}")
        finite = value is not None and math.isfinite(value)
        return (0, -sign * value) if finite else (1, 0.0)

    ranked = sorted(rows, key=rank_key)
    seconds = time.perf_counter() - started
    _write_table(out_dir / "sweep.md", ranked, list(space), monitor, config_path, seconds)
    if best is not None:
        _write_best(out_dir / "best", *best[1:])
    return ranked


def _train_group(cfg, setup, group_trials: list[dict], per_call: int | str = "auto"):
    """Train one group's trials through one compiled epoch; (TrialsResult, seconds)."""
    module = schemas.MODELS[schemas.kind_of(setup.model_config)].module
    params_shape, _ = jax.eval_shape(setup.model.init, jax.random.PRNGKey(0))
    labels = setup.model.labels(params_shape) if setup.model.labels is not None else None
    optim_values = {
        name: [t.get(f"optim.{name}", getattr(cfg.optim, name)) for t in group_trials]
        for name in OPTIM_SCALARS
    }
    shared = vectorizable(type(cfg.model))
    model_names = sorted(
        {k for t in group_trials for k in _model_keys(t) if f"model.{k}" in shared}
    )
    model_values = {
        name: [_model_keys(t).get(name, getattr(cfg.model, name)) for t in group_trials]
        for name in model_names
    }
    for j in range(len(group_trials)):
        # each trial's values through the concrete checks first (ranges, types)
        make_optimizer(
            dataclasses.replace(cfg.optim, **{n: v[j] for n, v in optim_values.items()}),
            params_shape,
            labels,
            setup.steps_per_epoch,
        )
        module.make(
            dataclasses.replace(setup.model_config, **{n: v[j] for n, v in model_values.items()})
        )
    swept = {n for n in ("l1", "l2") if any(f"optim.{n}" in t for t in group_trials)}

    def build(hp):
        model_cfg = dataclasses.replace(
            setup.model_config, **{n: hp[f"model.{n}"] for n in model_names}
        )
        traced = {"learning_rate": hp["optim.learning_rate"]}
        traced.update({n: hp[f"optim.{n}"] for n in swept})
        optimizer = make_optimizer(
            dataclasses.replace(cfg.optim, **traced), params_shape, labels, setup.steps_per_epoch
        )
        return module.make(model_cfg), optimizer

    hparams = {f"optim.{n}": np.asarray(v, np.float32) for n, v in optim_values.items()}
    hparams.update({f"model.{n}": np.asarray(v, np.float32) for n, v in model_values.items()})
    started = time.perf_counter()
    result = trials_lib.train_vmapped(
        build,
        lambda step: make_epoch(setup, step, cfg.train, driver="scan"),
        setup.train,
        hparams=hparams,
        seeds=[t.get("train.seed", cfg.train.seed) for t in group_trials],
        epochs=cfg.train.epochs,
        grads=cfg.train.grads,
        valid=setup.valid,
        evaluate=setup.evaluate,
        policy=loop.Policy(cfg.train.monitor, cfg.train.patience, cfg.train.halve_lr_on_plateau),
        train_row=setup.train_row,
        per_call=per_call,
    )
    return result, round(time.perf_counter() - started, 3)


def _write_best(out: Path, cfg, setup, result, j: int, trial: dict) -> None:
    """The best trial as a run folder: config with its values, metrics, checkpoint, summary."""
    values = [f"{k}={json.dumps(v)}" for k, v in trial.items()]
    best_cfg = config_lib.load_config_dict(config_lib.to_dict(cfg), values, source=str(out))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.toml", config_lib.dumps_toml(config_lib.to_dict(best_cfg)))
    history = result.histories[j]
    atomic_write_text(
        out / "metrics.jsonl",
        "".join(json.dumps(r, sort_keys=True) + "\n" for r in history.epochs),
    )
    params, state = trials_lib.trial_slice((result.params, result.state), j)
    last = trials_lib.trial_slice(result.last, j)
    checkpoint.Checkpointer(out / "checkpoints").save(*last, (params, state), history)
    runner.write_model_files(setup, out)
    summary = {**runner.training_summary(best_cfg.name, history), "sweep_trial": trial}
    summary.update(runner.finish(setup, params, state, history, out))
    atomic_write_json(out / "summary.json", summary)


def _write_table(
    path: Path, ranked: list[dict], keys: list[str], monitor: str, config_path, seconds: float
) -> None:
    def fmt(value) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "–" if value is None else str(value)

    per_call = {row["group"]: row["trials_per_call"] for row in ranked}

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
        f"({seconds:.1f} s in all). Trials per call of each group's compiled epoch: "
        + ", ".join(f"{k} (group {g})" for g, k in sorted(per_call.items()))
        + ".",
        "",
        "| rank | " + " | ".join(columns) + " |",
        "|" + "---|" * (len(columns) + 1),
    ]
    for rank, row in enumerate(ranked, 1):
        lines.append(f"| {rank} | " + " | ".join(fmt(row.get(c)) for c in columns) + " |")
    atomic_write_text(path, "\n".join(lines) + "\n")
