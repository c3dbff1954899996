"""``lecturenn run CONFIG``: config → data → model → optimizer → training → run folder.

The run folder holds ``config.toml`` (the resolved config), ``metrics.jsonl`` (one line per
epoch), ``summary.json`` (final figures under flat names: ``test_accuracy``, ``val_f1``,
``test_perplexity``, ``train_seconds`` ..., and the run's provenance), ``vocab.json`` (the
vocabularies the model was trained with), ``plots/`` and ``checkpoints/``. It reads top to bottom:
what differs between tasks (data, model, metrics, kind of epoch) comes from the task's
``build(cfg) -> Setup`` (experiments/tasks/).

Many devices: ``parallel.data = N`` splits every batch over N devices (train/parallel.py);
``parallel.distributed = true`` first joins a multi-process run (``jax.distributed``), where
every process trains and only process 0 writes the run folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import jax

from lecturenn.errors import Interrupted, UserError
from lecturenn.experiments import config as config_lib
from lecturenn.experiments import diagnostics, plots, run_folder, schemas
from lecturenn.experiments.inference import MODEL_FILE, VOCAB_FILE, data_fields_json
from lecturenn.experiments.progress import Progress
from lecturenn.experiments.provenance import provenance
from lecturenn.experiments.tasks import TASKS
from lecturenn.experiments.tasks.base import (
    Setup,
    learning_rate_of,
    make_epoch,
    optimizer_for,
)
from lecturenn.io import append_line, atomic_write_json, atomic_write_text
from lecturenn.models.base import Model
from lecturenn.train import checkpoint, loop, parallel
from lecturenn.train.step import make_step

# keys a resumed run may change: they cannot change the epochs already trained
EXTENDABLE = ("train.epochs", "train.patience", "parallel.data", "parallel.distributed")


def make_diagnose(model: Model, train: dict, activation_names, num_examples: int = 256):
    """Per-epoch gradient norms on a fixed training batch and saturation on its activations."""
    batch = {k: v[:num_examples] for k, v in train.items()}
    grad_fn = jax.jit(jax.grad(lambda p, s: model.loss(p, s, batch, jax.random.PRNGKey(0))[0]))
    hidden_fn = jax.jit(model.hidden_activations)

    def diagnose(params, state):
        acts = hidden_fn(params, state, batch["x"])
        return {
            "grad_norms": diagnostics.weight_grad_norms(grad_fn(params, state)),
            "saturation": diagnostics.saturation(acts, activation_names),
        }

    return diagnose, hidden_fn, batch


def _flat(table: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in table.items():
        if isinstance(value, dict) and key in ("data", "model", "optim", "train", "parallel"):
            out.update(_flat(value, f"{key}."))
        else:
            out[prefix + key] = value
    return out


def resume_check(out: Path, cfg) -> dict:
    """Compare the config with the one the run in ``out`` started with; return the keys that
    differ (all in ``EXTENDABLE``) or refuse, naming the keys that may not change."""
    previous = out / "config.toml"
    if not previous.exists():
        raise UserError(f"--resume {out}: no config.toml there; is it a run folder?")
    # compare resolved configs, so a field added since (at its default) is not a difference
    started = _flat(config_lib.to_dict(config_lib.load_config(previous)))
    now = _flat(config_lib.to_dict(cfg))
    changed = {k: (started.get(k), now.get(k)) for k in now.keys() | started.keys()}
    changed = {k: v for k, v in changed.items() if v[0] != v[1]}
    fixed = sorted(k for k in changed if k not in EXTENDABLE)
    if fixed:
        shown = ", ".join(f"{k} ({changed[k][0]!r} → {changed[k][1]!r})" for k in fixed)
        raise UserError(
            f"--resume {out}: the config differs from the one the run started with in {shown}; "
            f"only {', '.join(EXTENDABLE)} may change when a run is continued"
        )
    return changed


def _resume_rows(source: Path, cfg, from_step: int | None) -> list[dict]:
    """The epochs a resumed run has done, from its checkpoint, verified against its manifest
    before any file of the run is touched."""
    resume_check(source, cfg)
    directory = source / "checkpoints"
    if checkpoint.latest_checkpoint(directory) is None:
        if from_step is not None:
            raise UserError(f"--from-step {from_step}: {directory} holds no checkpoint")
        return []
    chosen = directory / checkpoint.step_name(from_step) if from_step is not None else directory
    if from_step is not None and not chosen.is_dir():
        steps = ", ".join(str(n) for n in checkpoint.complete_steps(directory)) or "none"
        raise UserError(f"--from-step {from_step}: no such checkpoint in {directory} ({steps})")
    try:
        rows = checkpoint.verify(chosen)["history"]["epochs"]
    except UserError as error:
        intact = [n for n in checkpoint.intact_steps(directory) if from_step is None]
        hint = (
            f"; --from-step {intact[-1]} resumes from the intact checkpoint of epoch {intact[-1]}"
            if intact
            else ""
        )
        raise UserError(f"{error}{hint}") from None
    if cfg.train.epochs < len(rows):
        raise UserError(
            f"--resume: the run has trained {len(rows)} epochs already; "
            f"train.epochs = {cfg.train.epochs} would end it in the past"
        )
    return rows


def run(
    cfg: config_lib.Config,
    out: Path,
    *,
    resume: bool = False,
    quiet: bool = False,
    overwrite: bool = False,
    from_step: int | None = None,
) -> dict:
    """Train ``cfg`` into the run folder ``out`` (see run_folder.py for how it is written):
    a new run, or with ``resume`` the continuation of the run there (from its latest
    checkpoint, or from the epoch-``from_step`` one)."""
    out = run_folder.check_out(out)
    rows = []
    if resume:
        rows = _resume_rows(run_folder.resume_source(out), cfg, from_step)
    else:
        run_folder.check_new(out, overwrite)
    if cfg.parallel.distributed:
        parallel.init_distributed()
    writer = jax.process_index() == 0
    setup = TASKS[schemas.task_of(cfg)].build(cfg)  # data errors end here, before any write
    staging = run_folder.staging_of(out)
    if writer:
        staging = run_folder.start(out, resume=resume, overwrite=overwrite)
    parallel.barrier("lecturenn run folder")
    with run_folder.Lock(staging) if writer else contextlib.nullcontext():
        if writer:
            atomic_write_text(
                staging / "config.toml", config_lib.dumps_toml(config_lib.to_dict(cfg))
            )
            _write_rows(staging / "metrics.jsonl", rows)
            if from_step is not None:
                checkpoint.point_latest(staging / "checkpoints", from_step)
        try:
            with _stop_after_epoch() as stop_requested:
                summary = _run(cfg, setup, staging, quiet, writer, stop_requested)
        except KeyboardInterrupt:
            raise Interrupted(_where_to_resume(staging, out, "interrupted")) from None
        except loop.DivergedError as error:
            raise loop.DivergedError(f"{error} ({_where_to_resume(staging, out, '')})") from None
        except BaseException:
            if writer and not resume:
                run_folder.discard_if_untrained(staging)
            raise
    if writer:
        run_folder.publish(staging, out)
    return summary


def _where_to_resume(staging: Path, out: Path, what: str) -> str:
    latest = checkpoint.latest_checkpoint(staging / "checkpoints")
    if latest is None:
        run_folder.discard_if_untrained(staging)
        return f"{what}{'; ' if what else ''}no epoch had finished, nothing was kept".lstrip("; ")
    epoch = int(latest.name.removeprefix("step_"))
    text = f"the checkpoint of epoch {epoch} is in {staging}: --resume {out} continues from it"
    return f"{what}; {text}" if what else text


@contextlib.contextmanager
def _stop_after_epoch():
    """Ctrl-C while training: the first finishes the epoch, keeps its checkpoint and stops; a
    second stops at once. The handler only sets a flag, so the interrupt never lands inside a
    compiled epoch or a progress callback; ``stop_requested()`` is polled after each epoch."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested.is_set
        return

    def first(signum, frame):
        requested.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print(
            "\nlecturenn: stopping after this epoch, once its checkpoint is written "
            "(Ctrl-C again stops at once)",
            file=sys.stderr,
            flush=True,
        )

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield requested.is_set
    finally:
        signal.signal(signal.SIGINT, previous)


def _run(
    cfg: config_lib.Config,
    setup: Setup,
    out: Path,
    quiet: bool,
    writer: bool,
    stop_requested: Callable[[], bool] = lambda: False,
) -> dict:
    model = setup.model
    mesh = None
    if cfg.parallel.data > 1 or cfg.parallel.distributed:
        mesh = parallel.make_mesh(cfg.parallel.data if not cfg.parallel.distributed else None)
        parallel.check_batch_size(cfg.train.batch_size, mesh)
        model = parallel.shard_model(model, mesh)
    optimizer = optimizer_for(setup, setup.model, cfg.optim)
    progress = Progress(cfg.train.epochs, setup.steps_per_epoch, quiet or not writer)
    step = make_step(model, optimizer, cfg.train.grads, jit=False)
    epoch_fn = _progress_epoch(
        progress, lambda listener: make_epoch(setup, step, cfg.train, progress=listener), mesh
    )
    evaluate = setup.evaluate
    if cfg.parallel.distributed:
        evaluate = _on_local_copy(evaluate)
    diagnose = hidden_fn = diag_batch = None
    if cfg.train.diagnostics and setup.model.hidden_activations is not None:
        names = list(setup.model_config.activations())
        diagnose, hidden_fn, diag_batch = make_diagnose(setup.model, setup.train, names)
        if cfg.parallel.distributed:
            diagnose = _on_local_copy(diagnose)

    metrics_path = out / "metrics.jsonl"
    checkpointer = None
    if cfg.train.checkpoint:
        checkpointer = _Writer(out / "checkpoints") if writer else _Reader(out / "checkpoints")
    if writer:
        write_model_files(setup, out)

    board = _tensorboard(out) if writer and cfg.train.tensorboard else None

    def on_epoch(row):
        row["steps_per_s"] = setup.steps_per_epoch / row["seconds"]
        if writer:
            append_line(metrics_path, json.dumps(row, sort_keys=True))
        if board is not None:
            for key, value in row.items():
                if isinstance(value, float) and key != "epoch":
                    board.add_scalar(key, value, row["epoch"])
            board.flush()
        progress.epoch(row)
        if stop_requested() and row["epoch"] < cfg.train.epochs:
            raise KeyboardInterrupt

    start = time.perf_counter()
    params, state, history = loop.fit(
        setup.model,
        optimizer,
        setup.train,
        epochs=cfg.train.epochs,
        key=jax.random.PRNGKey(cfg.train.seed),
        epoch_fn=epoch_fn,
        valid=setup.valid,
        evaluate=evaluate,
        policy=loop.Policy(cfg.train.monitor, cfg.train.patience, cfg.train.halve_lr_on_plateau),
        train_row=setup.train_row,
        on_epoch=on_epoch,
        checkpointer=checkpointer,
        diagnose=diagnose,
        learning_rate=learning_rate_of(cfg.optim, setup.steps_per_epoch),
    )
    wall = time.perf_counter() - start
    if board is not None:
        board.close()
    if cfg.parallel.distributed:
        params, state = parallel.local_copy((params, state))
    summary = {**training_summary(cfg.name, history), "wall_seconds": round(wall, 3)}
    if not writer:
        return summary
    if checkpointer is None:  # no per-epoch checkpoints: keep the final parameters all the same
        checkpoint.save_checkpoint(
            out / "checkpoints",
            {"best_params": params, "best_state": state},
            {"step": len(history.epochs), "history": dataclasses.asdict(history)},
        )
    summary.update(finish(setup, params, state, history, out))
    if diagnose is not None:
        diagnostics.plot_grad_norms(history.epochs, out / "plots" / "grad_norms.png")
        diagnostics.plot_histograms(
            diagnostics.histograms(hidden_fn(params, state, diag_batch["x"])),
            out / "plots" / "activations.png",
            "activations after training",
        )
    atomic_write_json(out / "summary.json", summary)
    return summary


def _progress_epoch(progress: Progress, make: Callable, mesh) -> Callable:
    """The epoch with progress reports while ``progress.in_epoch()``, then for good the same
    epoch compiled without them (the same numbers; see experiments/progress.py)."""
    built = {}

    def epoch(*args):
        ticking = progress.in_epoch() and built.get("plain") is None
        kind = "ticking" if ticking else "plain"
        if kind not in built:
            fn = make(progress.step if ticking else None)
            built[kind] = parallel.on_mesh(fn, mesh) if mesh is not None else fn
        return built[kind](*args)

    return epoch


def _tensorboard(out: Path):
    """A TensorBoard writer of event files in ``out/tensorboard`` (tensorboardX)."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise UserError(
            'train.tensorboard = true needs tensorboardX: pip install -e ".[tensorboard]"'
        ) from None
    return SummaryWriter(str(out / "tensorboard"))


def write_model_files(setup: Setup, out: Path) -> None:
    """model.json (the sizes that came from the data) and vocab.json: what makes a run folder
    usable without its data (experiments/inference.py)."""
    atomic_write_json(out / MODEL_FILE, data_fields_json(setup.model_config))
    if setup.vocabs:
        atomic_write_json(out / VOCAB_FILE, setup.vocabs)


def training_summary(name: str, history: loop.History) -> dict:
    """The summary's account of the training itself."""
    return {
        "name": name,
        "epochs_run": len(history.epochs),
        "best_epoch": history.best_epoch,
        "stopped_early": history.stopped_early,
        "train_seconds": round(sum(r["seconds"] for r in history.epochs), 3),
    }


def finish(setup: Setup, params, state, history: loop.History, out: Path) -> dict:
    """The final figures of a trained model into ``out``: every split's metrics, the task's own
    outputs (predictions, confusion matrix), the curves; returns the summary's entries."""
    summary = {}
    for split_name, split in setup.splits.items():
        if split is not None:
            summary.update(
                {f"{split_name}_{k}": v for k, v in setup.evaluate(params, state, split).items()}
            )
    if setup.finalize is not None:
        summary.update(setup.finalize(params, state, out))
    plots_dir = out / "plots"
    plots_dir.mkdir(exist_ok=True)
    if history.epochs:
        plots.plot_curves(history.epochs, plots_dir)
    summary["provenance"] = provenance(setup.data_files)
    return summary


def _write_rows(path: Path, rows: list[dict]) -> None:
    """metrics.jsonl as the checkpoint knows it (a killed run may have written lines of epochs
    after its last checkpoint)."""
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def _on_local_copy(fn: Callable) -> Callable:
    """``fn(params, state, *rest)`` on this process's copy of replicated params and state."""

    def local(params, state, *rest):
        return fn(*parallel.local_copy((params, state)), *rest)

    return local


class _Writer(checkpoint.Checkpointer):
    """The writing process's checkpointer: saves each process-local copy of replicated arrays."""

    def save(self, params, state, opt_state, key, best, history):
        local = parallel.local_copy((params, state, opt_state, key, best))
        return super().save(*local, history)


class _Reader(_Writer):
    """Other processes of a distributed run read checkpoints (to resume) but never write."""

    def save(self, *args):
        return None
