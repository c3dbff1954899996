"""``lecturenn run CONFIG``: config → data → model → optimizer → training → run folder.

The run folder holds ``config.toml`` (the resolved config), ``metrics.jsonl`` (one line per
epoch), ``summary.json`` (final figures under flat names: ``test_accuracy``, ``val_f1``,
``test_perplexity``, ``train_seconds`` ...), ``plots/`` and ``checkpoints/``. It reads top to
bottom like nanoGPT's train.py (STYLE §4); what differs between tasks (data, model, metrics) comes
from the task's ``build(cfg) -> Setup`` (experiments/tasks/).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax

from lecturenn.errors import UserError
from lecturenn.experiments import config as config_lib
from lecturenn.experiments import schemas
from lecturenn.experiments.tasks import TASKS
from lecturenn.io import append_line, atomic_write_json, atomic_write_text
from lecturenn.models.base import Model
from lecturenn.optim.build import build_optimizer
from lecturenn.train import checkpoint, loop


@dataclass
class Setup:
    """What a task hands the runner."""

    model: Model
    train: dict  # device arrays, leading axis = examples
    valid: dict | None
    evaluate: Callable  # (params, state, split) -> {metric: float}
    splits: dict  # final evaluation: {"val": ..., "test": ...}
    augment: Callable | None = None  # (key, batch) -> batch, on device
    epoch_fn: Callable | None = None  # replaces the shuffled mini-batch epoch
    finalize: Callable | None = None  # (params, state, out_dir) -> extra summary
    steps_per_epoch: int | None = None  # default: examples // batch size


def input_noise(std: float) -> Callable:
    """Gaussian input noise as a regularizer: x ← x + ε, ε ~ N(0, std²), fresh every step."""

    def augment(key, batch):
        noise = std * jax.random.normal(key, batch["x"].shape, batch["x"].dtype)
        return {**batch, "x": batch["x"] + noise}

    return augment


def make_optimizer(cfg: config_lib.OptimConfig, params=None):
    return build_optimizer(
        cfg.name,
        cfg.learning_rate,
        schedule=cfg.schedule,
        clip_global_norm=cfg.clip_global_norm,
        clip_elementwise=cfg.clip_elementwise,
        l1=cfg.l1,
        l2=cfg.l2,
        fan_in_scaling=cfg.fan_in_scaling,
        params=params,
        **cfg.options,
    )


def make_diagnose(model: Model, train: dict, activation_names, num_examples: int = 256):
    """Per-epoch gradient norms on a fixed training batch and saturation on its activations."""
    from lecturenn.experiments import diagnostics

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


def _prepare_folder(cfg, out: Path, resume: bool) -> None:
    resolved = config_lib.dumps_toml(config_lib.to_dict(cfg))
    if resume:
        previous = out / "config.toml"
        if not previous.exists():
            raise UserError(f"--resume {out}: no config.toml there; is it a run folder?")
        # compare resolved configs, so a field added to the schema since (at its default) is
        # not a difference
        started = config_lib.dumps_toml(config_lib.to_dict(config_lib.load_config(previous)))
        if started != resolved:
            raise UserError(
                f"--resume {out}: the config differs from the one the run started "
                "with (compare config.toml); resume with the same config and --set"
            )
        return
    if (out / "checkpoints").exists() and any((out / "checkpoints").iterdir()):
        raise UserError(
            f"{out} already holds a run with checkpoints: pass --resume {out} to "
            "continue it, or choose another --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.toml", resolved)


@contextlib.contextmanager
def _only_writer(out: Path):
    """Hold an exclusive lock on ``out/.lock`` while a run writes the folder, so two processes
    started on the same --out (two queues, a resume while the run still goes) cannot interleave
    metrics.jsonl and checkpoints. flock is released by the kernel when the process dies, even
    by SIGKILL, so a crashed run never leaves the folder locked."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(
                f"{out}: another lecturenn process is writing this run folder; "
                "wait for it to finish or choose another --out"
            ) from None
        yield
    finally:
        os.close(fd)


def run(cfg: config_lib.Config, out: Path, *, resume: bool = False, quiet: bool = False) -> dict:
    out = Path(out)
    if resume and not out.is_dir():
        raise UserError(f"--resume {out}: no such run folder")
    with _only_writer(out):
        return _run(cfg, out, resume, quiet)


def _run(cfg: config_lib.Config, out: Path, resume: bool, quiet: bool) -> dict:
    _prepare_folder(cfg, out, resume)
    task = TASKS[schemas.task_of(cfg)]

    if cfg.parallel.distributed:
        from lecturenn.train.parallel import init_distributed

        init_distributed()
    setup = task.build(cfg)
    params_shape, _ = jax.eval_shape(setup.model.init, jax.random.PRNGKey(0))
    optimizer = make_optimizer(cfg.optim, params_shape)
    diagnose = hidden_fn = diag_batch = None
    if cfg.train.diagnostics and setup.model.hidden_activations is not None:
        names = (
            cfg.model.activation
            if isinstance(cfg.model.activation, list)
            else [cfg.model.activation] * len(cfg.model.hidden)
        )
        diagnose, hidden_fn, diag_batch = make_diagnose(setup.model, setup.train, names)

    epoch_fn = setup.epoch_fn
    if cfg.parallel.data > 1 or cfg.parallel.distributed:
        if epoch_fn is not None:
            raise UserError(
                f"parallel.data: the {schemas.task_of(cfg)} task trains with its own "
                "epoch and does not support data parallelism yet; set parallel.data = 1"
            )
        from lecturenn.train import parallel

        mesh = parallel.make_mesh(cfg.parallel.data if not cfg.parallel.distributed else None)
        epoch_fn = parallel.make_parallel_epoch(
            setup.model,
            optimizer,
            grads=cfg.train.grads,
            batch_size=cfg.train.batch_size,
            mesh=mesh,
            driver=cfg.train.driver,
            augment=setup.augment,
        )

    metrics_path = out / "metrics.jsonl"
    checkpointer = loop.Checkpointer(out / "checkpoints")
    if resume and checkpointer.has_checkpoint():
        # metrics.jsonl may hold lines of epochs after the checkpoint: keep the checkpoint's
        meta_path = checkpoint.latest_checkpoint(checkpointer.directory) / checkpoint.META
        rows = json.loads(meta_path.read_text())["meta"]["history"]["epochs"]
        atomic_write_text(metrics_path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    else:
        atomic_write_text(metrics_path, "")
    steps_per_epoch = setup.steps_per_epoch or max(
        jax.tree_util.tree_leaves(setup.train)[0].shape[0] // cfg.train.batch_size, 1
    )
    bar = _progress(cfg.train.epochs, quiet)

    def on_epoch(row):
        row["steps_per_s"] = steps_per_epoch / row["seconds"]
        append_line(metrics_path, json.dumps(row, sort_keys=True))
        bar(row)

    start = time.perf_counter()
    params, state, history = loop.fit(
        setup.model,
        optimizer,
        setup.train,
        epochs=cfg.train.epochs,
        batch_size=cfg.train.batch_size,
        key=jax.random.PRNGKey(cfg.train.seed),
        grads=cfg.train.grads,
        driver=cfg.train.driver,
        valid=setup.valid,
        evaluate=setup.evaluate,
        monitor=cfg.train.monitor,
        patience=cfg.train.patience,
        halve_lr_on_plateau=cfg.train.halve_lr_on_plateau,
        augment=setup.augment,
        epoch_fn=epoch_fn,
        on_epoch=on_epoch,
        checkpointer=checkpointer if cfg.train.checkpoint else None,
        diagnose=diagnose,
    )
    wall = time.perf_counter() - start

    summary = {
        "name": cfg.name,
        "epochs_run": len(history.epochs),
        "best_epoch": history.best_epoch,
        "stopped_early": history.stopped_early,
        "train_seconds": round(sum(r["seconds"] for r in history.epochs), 3),
        "wall_seconds": round(wall, 3),
    }
    for split_name, split in setup.splits.items():
        if split is not None:
            summary.update(
                {f"{split_name}_{k}": v for k, v in setup.evaluate(params, state, split).items()}
            )
    if setup.finalize is not None:
        summary.update(setup.finalize(params, state, out))
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    plot_curves(history.epochs, plots)
    if diagnose is not None:
        _plot_diagnostics(history.epochs, hidden_fn(params, state, diag_batch["x"]), plots)
    atomic_write_json(out / "summary.json", summary)
    return summary


def _progress(epochs: int, quiet: bool) -> Callable[[dict], None]:
    """A tqdm bar over epochs on a terminal; silent otherwise (logs, CI, pipes)."""
    if quiet or not sys.stderr.isatty():
        return lambda row: None
    from tqdm import tqdm

    bar = tqdm(total=epochs, unit="epoch", file=sys.stderr)

    def update(row):
        shown = {
            k: f"{v:.4g}"
            for k, v in row.items()
            if isinstance(v, float) and k.startswith(("train_loss", "val_"))
        }
        shown["steps/s"] = f"{row['steps_per_s']:.0f}"
        bar.n = row["epoch"]
        bar.set_postfix(shown)
        if row["epoch"] >= epochs:
            bar.close()

    return update


def save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    tmp = path.with_name(path.stem + ".tmp.png")
    fig.tight_layout()
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def plot_curves(rows: list[dict], folder: Path) -> None:
    """One PNG per metric (loss, accuracy, f1, perplexity ...) with its train/val curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    metrics = sorted(
        {
            k.split("_", 1)[1]
            for r in rows[:1]
            for k, v in r.items()
            if k.startswith(("train_", "val_")) and isinstance(v, float)
        }
    )
    for metric in metrics:
        keys = [k for k in (f"train_{metric}", f"val_{metric}") if k in rows[0]]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for k in keys:
            ax.plot(epochs, [r[k] for r in rows], label=k)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.legend()
        save_figure(fig, folder / f"{metric}.png")


def _plot_diagnostics(rows, final_activations, folder: Path) -> None:
    from lecturenn.experiments import diagnostics

    diagnostics.plot_grad_norms(rows, folder / "grad_norms.png")
    diagnostics.plot_histograms(
        diagnostics.histograms(final_activations),
        folder / "activations.png",
        "activations after training",
    )
