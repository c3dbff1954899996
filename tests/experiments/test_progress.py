"""Progress is visible wherever a run runs: plain lines in a log file, a bar on a terminal."""

import io
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from lecturenn.experiments.progress import Progress
from lecturenn.models import mlp
from lecturenn.optim.transforms import sgd
from lecturenn.train import epochs
from lecturenn.train.step import make_step

ROOT = Path(__file__).resolve().parents[2]


def test_lines_appear_in_a_log_file_as_under_nohup(tmp_path):
    log = tmp_path / "nohup.out"
    with open(log, "w") as stream:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "lecturenn.cli",
                "run",
                str(ROOT / "configs" / "quickstart_digits.toml"),
                "--out",
                str(tmp_path / "run"),
                "--set",
                "train.epochs=2",
            ],
            stdout=stream,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LECTURENN_PROGRESS_SECONDS": "0"},
            timeout=300,
        )
    assert done.returncode == 0
    lines = log.read_text().splitlines()
    epochs_seen = [line for line in lines if line.startswith("epoch ") and "ETA" in line]
    assert any(line.startswith("epoch 1/2: train_loss=") for line in epochs_seen)
    assert any(line.startswith("epoch 2/2: ") and "val_accuracy=" in line for line in epochs_seen)
    assert any(line.startswith("epoch 1/2 step ") for line in epochs_seen)  # within the epoch


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_the_scan_epoch_reports_steps_to_a_bar_on_a_terminal():
    stream = Terminal()
    progress = Progress(epochs=1, steps_per_epoch=20, stream=stream)
    model = mlp.make(mlp.MLPConfig(input_dim=3, num_classes=2, hidden=(4,)))
    params, state = model.init(jax.random.PRNGKey(0))
    opt = sgd(0.1)
    data = {"x": jnp.ones((80, 3)), "y": jnp.zeros(80, jnp.int32)}
    seen = []

    def step(done, loss):
        seen.append(done)
        progress.step(done, loss)

    epoch = epochs.shuffled(
        make_step(model, opt, jit=False), num_examples=80, batch_size=4, progress=step
    )
    out = epoch(params, state, opt.init(params), data, jax.random.PRNGKey(1))
    jax.block_until_ready(out)
    jax.effects_barrier()
    assert seen == list(range(1, 21))
    progress.epoch({"epoch": 1, "train_loss": float(out[3]), "seconds": 0.1})
    assert "epoch 1/1" in stream.getvalue() and "20/20" in stream.getvalue()


def _leaves_equal(a, b) -> bool:
    return all(
        bool(jnp.array_equal(x, y))
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    )


@pytest.mark.parametrize("config", ["quickstart_digits", "ner_window", "ptb_lstm_small"])
def test_an_epoch_with_a_listener_computes_what_one_without_does(config, float32):
    """The runner switches a run's later epochs to the program without progress callbacks when
    epochs are short (runner._progress_epoch), so the two programs must agree bit for bit."""
    from lecturenn.experiments import config as config_lib
    from lecturenn.experiments import schemas
    from lecturenn.experiments.tasks import TASKS
    from lecturenn.experiments.tasks.base import make_epoch, optimizer_for

    small = {
        "quickstart_digits": [],
        "ner_window": ["data.limit_train=64", "data.limit_eval=8", "model.hidden=16"],
        "ptb_lstm_small": ["data.limit_train=4000", "data.limit_eval=400", "model.hidden_dim=16"],
    }[config]
    path = ROOT / "configs" / f"{config}.toml"
    cfg = config_lib.load_config(path, small)
    if cfg.data.name in ("conll2003", "ptb"):
        root = Path(os.environ.get("LECTURENN_DATA", Path.home() / ".cache" / "lecturenn"))
        if not (root / cfg.data.name).is_dir():
            pytest.skip(f"{cfg.data.name} not found under {root} (set LECTURENN_DATA)")
    setup = TASKS[schemas.task_of(cfg)].build(cfg)
    optimizer = optimizer_for(setup, setup.model, cfg.optim)
    params, state = setup.model.init(jax.random.PRNGKey(0))
    step = make_step(setup.model, optimizer, cfg.train.grads, jit=False)
    ticks = []
    outs = [
        make_epoch(setup, step, cfg.train, progress=listener)(
            params, state, optimizer.init(params), setup.train, jax.random.PRNGKey(1)
        )
        for listener in (None, lambda done, loss: ticks.append(int(done)))
    ]
    jax.effects_barrier()
    assert ticks and _leaves_equal(outs[0], outs[1])


def test_short_epochs_drop_the_callbacks_for_good_after_the_first():
    from lecturenn.experiments.runner import _progress_epoch

    progress = Progress(epochs=4, steps_per_epoch=10, stream=io.StringIO())
    progress.every = 30.0
    built = []

    def make(listener):
        built.append(listener is not None)
        return lambda *args: listener is not None

    epoch = _progress_epoch(progress, make, mesh=None)
    ticking = [epoch()]  # the first epoch reports: its length is not known yet
    progress.epoch({"epoch": 1, "train_loss": 1.0, "seconds": 40.0})
    ticking.append(epoch())  # 40 s ≥ 30 s: a line within the epoch can show
    progress.epoch({"epoch": 2, "train_loss": 1.0, "seconds": 2.0})
    ticking.append(epoch())  # 2 s: no report would ever show; compiled once without callbacks
    progress.epoch({"epoch": 3, "train_loss": 1.0, "seconds": 60.0})
    ticking.append(epoch())  # and it stays so (no second recompilation)
    assert ticking == [True, True, False, False] and built == [True, False]
    quiet = Progress(epochs=1, steps_per_epoch=10, quiet=True)
    assert not quiet.in_epoch()
