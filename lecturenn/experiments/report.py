"""``lecturenn report RUN...``: a comparison table of run folders and a plot of their curves."""

from __future__ import annotations

import json
from pathlib import Path

from lecturenn.errors import UserError

# the flat summary names (runner.py), shown first when present
PREFERRED = (
    "test_accuracy",
    "test_f1",
    "val_f1",
    "test_perplexity",
    "val_perplexity",
    "val_loss",
    "val_accuracy",
    "test_loss",
    "train_seconds",
    "epochs_run",
)


def read_run(run_dir: Path) -> tuple[dict, list[dict]]:
    """(summary, metric rows) of a run folder; UserError naming the file when unreadable."""
    run_dir = Path(run_dir)
    summary_path, metrics_path = run_dir / "summary.json", run_dir / "metrics.jsonl"
    if not summary_path.exists():
        raise UserError(f"{run_dir}: no summary.json (not a finished run folder)")
    try:
        summary = json.loads(summary_path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{summary_path}: not valid JSON ({err})") from None
    rows = []
    if metrics_path.exists():
        for number, line in enumerate(metrics_path.read_text().splitlines(), 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise UserError(f"{metrics_path}:{number}: not a JSON line") from None
    return summary, rows


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"
    return str(value)


def table(runs: dict[str, dict]) -> str:
    """Markdown table: one row per run, the preferred columns that any run has."""
    keys = [k for k in PREFERRED if any(k in s for s in runs.values())]
    lines = ["| run | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, summary in runs.items():
        lines.append(f"| {name} | " + " | ".join(_cell(summary.get(k, "")) for k in keys) + " |")
    return "\n".join(lines)


def plot(curves: dict[str, list[dict]], path: Path, metric: str | None = None) -> str | None:
    """Overlay one validation metric per run against epoch; returns the metric plotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    candidates = [f"val_{m}" for m in ("f1", "accuracy", "perplexity", "loss")]
    if metric is None:
        metric = next(
            (c for c in candidates if all(rows and c in rows[0] for rows in curves.values())), None
        )
    if metric is None:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, rows in curves.items():
        ax.plot([r["epoch"] for r in rows], [r[metric] for r in rows], label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return metric


def report(run_dirs: list[str], plot_path: str | None = None, metric: str | None = None) -> str:
    runs, curves = {}, {}
    for run_dir in run_dirs:
        name = Path(run_dir).name
        runs[name], curves[name] = read_run(Path(run_dir))
    text = table(runs)
    if plot_path:
        shown = plot(curves, Path(plot_path), metric)
        text += f"\n\nplot of {shown} -> {plot_path}" if shown else "\n\n(no common metric)"
    return text
