"""What the lecture experiment scripts (scripts/lecture_*.py) share: running a variant of a
config in configs/lectures/ into its run folder, markdown tables, figures, the doc page and the
command line.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from lecturenn.cli import Parser
from lecturenn.errors import UserError
from lecturenn.experiments import config as config_lib
from lecturenn.experiments.report import read_run
from lecturenn.experiments.runner import run

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "lectures"
# CS231n's three interleaved spirals in place of the base config's digits
SPIRALS = [
    'data.name="spirals"',
    "data.num_per_class=300",
    "data.noise=0.2",
    'data.preprocess="none"',
]


class Result(NamedTuple):
    cfg: config_lib.Config
    summary: dict  # summary.json: test_accuracy, val_accuracy ... of the best-validation epoch
    rows: list[dict]  # metrics.jsonl, one row per epoch
    folder: Path


@dataclasses.dataclass
class Context:
    """Where an experiment runs and writes, and the user's extra overrides for every variant."""

    runs_dir: Path
    docs_dir: Path
    command: str
    overrides: list[str]
    quick: bool

    def load(self, experiment: str, overrides: list[str]) -> config_lib.Config:
        """configs/lectures/<experiment>.toml with the variant's, then the user's, overrides."""
        return config_lib.load_config(CONFIGS / f"{experiment}.toml", [*overrides, *self.overrides])

    def run(self, experiment: str, variant: str, overrides: list[str]) -> Result:
        """Run one variant into a fresh runs/lectures/<experiment>/<variant>/ folder."""
        cfg = self.load(experiment, overrides)
        folder = self.runs_dir / experiment / variant
        if folder.exists():
            shutil.rmtree(folder)  # this script's own output from an earlier invocation
        start = time.perf_counter()
        run(cfg, folder, quiet=True)
        summary, rows = read_run(folder)
        print(f"  {experiment}/{variant}: {time.perf_counter() - start:.1f} s", flush=True)
        return Result(cfg, summary, rows, folder)


def num_train(cfg: config_lib.Config) -> int:
    from lecturenn.experiments.tasks.classify import load_splits

    return len(load_splits(cfg.data, cfg.train.seed)["train"]["y"])


def mean(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else float("nan")


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.{digits}f}"


def sci(value: float) -> str:
    return f"{value:.1e}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table; a '|' inside a cell (as in |Δ|) is escaped."""

    def line(cells) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *(line(row) for row in rows)])


def write_doc(
    ctx: Context, experiment: str, title: str, sections: list[str], figures: list[str]
) -> Path:
    """docs/experiments/<experiment>.md: title, the command that made it, sections, figures."""
    parts = [f"# {title}", f"Made by (in the repository root):\n\n```\n{ctx.command}\n```"]
    parts += sections
    parts += [f"![{name}]({name})" for name in figures]
    path = ctx.docs_dir / f"{experiment}.md"
    path.write_text("\n\n".join(parts) + "\n")
    print(f"wrote {path}", flush=True)
    return path


def figure(num_rows: int, num_cols: int, width: float = 5.0, height: float = 3.4):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(
        num_rows, num_cols, figsize=(width * num_cols, height * num_rows), squeeze=False
    )


def save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_curves(ax, results: dict[str, Result], key: str, title: str, styles=None) -> None:
    """One line per variant: the metrics row's ``key`` against epoch."""
    for n, (name, result) in enumerate(results.items()):
        style = {"color": f"C{n % 10}", **(styles or {}).get(name, {})}
        epochs = [r["epoch"] for r in result.rows]
        ax.plot(epochs, [r[key] for r in result.rows], label=name, **style)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("epoch")
    ax.set_ylabel(key)
    ax.legend(fontsize=7)


def main(experiments: dict[str, Callable[[Context], None]], argv: list[str] | None = None) -> int:
    """Command line of one experiment script, or of several with an experiment argument.

    The command recorded in each doc is the one-experiment script with the same options.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = Parser(description="lecture experiments: " + ", ".join(experiments))
    if len(experiments) > 1:
        parser.add_argument("experiment", choices=[*experiments, "all"])
    parser.add_argument("--epochs", type=int, help="override train.epochs of every variant")
    parser.add_argument("--quick", action="store_true", help="a few variants (smoke test)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra config override for every variant, e.g. --set train.seed=1",
    )
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "lectures")
    parser.add_argument("--docs-dir", type=Path, default=ROOT / "docs" / "experiments")
    args = parser.parse_args(argv)
    overrides = list(args.overrides)
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    chosen = getattr(args, "experiment", "all")
    names = list(experiments) if chosen == "all" else [chosen]
    options = [a for a in argv if a != chosen] if len(experiments) > 1 else argv
    args.docs_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        print(f"{name}:", flush=True)
        command = shlex.join(["python", f"scripts/lecture_{name}.py", *options])
        try:
            experiments[name](Context(args.runs_dir, args.docs_dir, command, overrides, args.quick))
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    return 0
