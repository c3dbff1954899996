"""Progress is visible wherever a run runs: plain lines in a log file, a bar on a terminal."""

import io
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

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
