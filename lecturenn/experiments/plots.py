"""The figures of a run folder: training curves, and the diagnostics' plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save_figure(fig, path: Path) -> None:
    """Save and close ``fig``; written to a temporary name and renamed, as every run file."""
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.tight_layout()
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def plot_curves(rows: list[dict], folder: Path) -> None:
    """One PNG per metric (loss, accuracy, f1, perplexity ...) with its train/val curves."""
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
