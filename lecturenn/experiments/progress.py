"""Progress of a training run, wherever it runs.

- On a terminal: a bar within each epoch (steps done, the step's loss, steps/s), then the epoch's
  figures.
- Elsewhere (a log file under nohup or Slurm, a notebook, CI): one plain line per epoch with its
  loss, validation figure, speed and ETA, and in a long epoch a line every
  ``LECTURENN_PROGRESS_SECONDS`` seconds (30 by default) with the steps done and the ETA.

The steps are reported from inside the compiled epoch (train/epochs.py, ``progress``), at
most ``PROGRESS_TICKS`` (20) times an epoch. Each report is a host callback (about 0.5 ms on a
2-core CPU, plus a few ms an epoch for the callbacks' structure), which is nothing beside a long
epoch but a multiple of a short one; so ``in_epoch()`` asks for reports only while epochs last
long enough to show them: ``BAR_SECONDS`` on a terminal, ``LECTURENN_PROGRESS_SECONDS``
elsewhere. The runner then trains
the remaining epochs with the program compiled without callbacks, which computes the same
numbers bit for bit (tests/experiments/test_progress.py).
"""

from __future__ import annotations

import os
import sys
import time


def _shown(row: dict) -> str:
    return " ".join(
        f"{k}={v:.4g}"
        for k, v in row.items()
        if isinstance(v, float) and k.startswith(("train_loss", "val_"))
    )


BAR_SECONDS = 5.0  # a bar within the epoch only for epochs at least this long


class Progress:
    """``step(done, loss)`` during an epoch, ``epoch(row)`` after it (``quiet``: silent)."""

    def __init__(self, epochs: int, steps_per_epoch: int, quiet: bool = False, stream=None):
        self.epochs, self.steps = epochs, max(steps_per_epoch, 1)
        self.stream = sys.stderr if stream is None else stream
        self.quiet = quiet
        self.tty = self.stream.isatty()
        self.every = float(os.environ.get("LECTURENN_PROGRESS_SECONDS", "30"))
        self.started = self.epoch_started = self.last_line = time.perf_counter()
        self.first_epoch = None
        self.current = 1
        self.bar = None
        self.last_epoch_seconds = None

    def in_epoch(self) -> bool:
        """Whether the next epoch should report its steps: not when quiet, and not once an
        epoch (the first one's compilation included) was too short for a report to show."""
        if self.quiet:
            return False
        if self.last_epoch_seconds is None:
            return True
        return self.last_epoch_seconds >= (BAR_SECONDS if self.tty else self.every)

    def _eta(self, epochs_done: float) -> float:
        elapsed = time.perf_counter() - self.started
        done = epochs_done - (self.first_epoch or 0)
        return elapsed / max(done, 1e-9) * (self.epochs - epochs_done)

    def step(self, done, loss) -> None:
        if self.quiet:
            return
        done, loss = int(done), float(loss)  # 0-d arrays when called from a compiled epoch
        if self.first_epoch is None:
            self.first_epoch = self.current - 1
        now = time.perf_counter()
        speed = done / max(now - self.epoch_started, 1e-9)
        if self.tty:
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(
                    total=self.steps,
                    unit="step",
                    desc=f"epoch {self.current}/{self.epochs}",
                    file=self.stream,
                    leave=False,
                )
            self.bar.n = done
            self.bar.set_postfix(loss=f"{loss:.4g}", refresh=True)
            return
        if now - self.last_line >= self.every:
            eta = self._eta(self.current - 1 + done / self.steps)
            print(
                f"epoch {self.current}/{self.epochs} step {done}/{self.steps}: loss={loss:.4g} "
                f"{speed:.0f} steps/s, ETA {eta / 60:.1f} min",
                file=self.stream,
                flush=True,
            )
            self.last_line = now

    def epoch(self, row: dict) -> None:
        self.last_epoch_seconds = row["seconds"]
        if self.quiet:
            return
        if self.first_epoch is None:
            self.first_epoch = row["epoch"] - 1
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        speed = row.get("steps_per_s", self.steps / max(row["seconds"], 1e-9))
        print(
            f"epoch {row['epoch']}/{self.epochs}: {_shown(row)} {speed:.0f} steps/s, "
            f"ETA {self._eta(row['epoch']) / 60:.1f} min",
            file=self.stream,
            flush=True,
        )
        self.current = row["epoch"] + 1
        self.epoch_started = self.last_line = time.perf_counter()
