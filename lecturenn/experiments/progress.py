"""Progress of a training run: a bar on a terminal, one plain line per epoch elsewhere (logs under
nohup or Slurm, notebooks, CI), each with the epoch's loss, validation figure, speed and ETA."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def _shown(row: dict) -> dict[str, str]:
    return {
        k: f"{v:.4g}"
        for k, v in row.items()
        if isinstance(v, float) and k.startswith(("train_loss", "val_"))
    }


def progress_reporter(
    epochs: int, steps_per_epoch: int, quiet: bool, stream=None
) -> Callable[[dict], None]:
    """``report(row)`` after each epoch: a tqdm bar over epochs when ``stream`` (stderr by
    default) is a terminal, else one line ``epoch 3/20: train_loss=... val_f1=... 412 steps/s,
    ETA 5.1 min``. ``quiet``: nothing."""
    stream = sys.stderr if stream is None else stream
    if quiet:
        return lambda row: None
    started = time.perf_counter()
    first = {}

    def eta(row) -> float:
        first.setdefault("epoch", row["epoch"] - 1)
        done = row["epoch"] - first["epoch"]
        return (time.perf_counter() - started) / max(done, 1) * (epochs - row["epoch"])

    if not stream.isatty():

        def line(row):
            figures = " ".join(f"{k}={v}" for k, v in _shown(row).items())
            speed = row["steps_per_s"] if "steps_per_s" in row else steps_per_epoch / row["seconds"]
            print(
                f"epoch {row['epoch']}/{epochs}: {figures} {speed:.0f} steps/s, "
                f"ETA {eta(row) / 60:.1f} min",
                file=stream,
                flush=True,
            )

        return line
    from tqdm import tqdm

    bar = tqdm(total=epochs, unit="epoch", file=stream)

    def update(row):
        shown = _shown(row)
        shown["steps/s"] = f"{row.get('steps_per_s', 0):.0f}"
        bar.n = row["epoch"]
        bar.set_postfix(shown)
        if row["epoch"] >= epochs:
            bar.close()

    return update
