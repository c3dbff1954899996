"""Time to the published numbers: each fast config of configs/fast/ trained by ``lecturenn run``
in a child process, its figure and its ``train_seconds`` against the goal.

    python benchmarks/bench_time_to_target.py                # every target, one after another
    python benchmarks/bench_time_to_target.py --only ner     # some of them
    python benchmarks/bench_time_to_target.py --out NAME     # benchmarks/results/NAME.json
    python benchmarks/bench_time_to_target.py --set 'XLA_FLAGS=...'   # (see --help)

Writes benchmarks/results/time_to_target.json: per target the config, the command, the figure
read once at the end (test set; tiny-shakespeare has only a validation split), train_seconds
(the epochs' own seconds, compilation and per-epoch evaluation included), the wall time of the
whole command, and the machine's load average before and after. Run it on a quiet machine: a
second training job on two cores roughly doubles every time here.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from timing import machine, write_json

from lecturenn.cli import Parser

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Target:
    name: str
    config: str  # under configs/fast/
    metric: str  # a key of summary.json
    better: str  # "<=" or ">="
    goal: float
    seconds: float  # the time allowed, train_seconds
    what: str

    def met(self, value: float) -> bool:
        return value <= self.goal if self.better == "<=" else value >= self.goal


TARGETS = [
    Target("ner", "ner_window", "test_f1", ">=", 82.0, 60, "CoNLL-2003 test F1"),
    Target(
        "fashion", "cnn_fashion_3conv", "test_accuracy", ">=", 0.935, 480, "Fashion-MNIST test acc."
    ),
    Target("char", "char_shakespeare", "val_loss", "<=", 1.50, 480, "tiny-shakespeare nats/char"),
    Target("ptb", "ptb_lstm_small", "test_perplexity", "<=", 114.5, 1200, "PTB test perplexity"),
]


def run_target(target: Target, out: Path, extra: list[str]) -> dict:
    config = f"configs/fast/{target.config}.toml"
    command = ["lecturenn", "run", config, "--out", str(out), "--quiet", *extra]
    load_before = list(os.getloadavg())
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "lecturenn.cli", *command[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{config} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    value = summary[target.metric]
    return {
        "what": target.what,
        "command": shlex.join(command[:3] + ["--out", f"runs/fast/{target.name}", *extra]),
        "metric": target.metric,
        "value": value,
        "goal": f"{target.better} {target.goal}",
        "goal_met": target.met(value),
        "train_seconds": summary["train_seconds"],
        "seconds_allowed": target.seconds,
        "time_met": summary["train_seconds"] <= target.seconds,
        "epochs_run": summary["epochs_run"],
        "best_epoch": summary["best_epoch"],
        "wall_seconds_of_the_command": round(wall, 1),
        "load_average_before_1_5_15min": load_before,
        "load_average_after_1_5_15min": list(os.getloadavg()),
    }


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=[t.name for t in TARGETS])
    parser.add_argument(
        "--keep", type=Path, help="keep the run folders under this folder (default: discard)"
    )
    parser.add_argument("--set", nargs="*", default=[], help="extra --set overrides for every run")
    parser.add_argument(
        "--out",
        default="time_to_target",
        help="benchmarks/results/OUT.json; targets not run keep their figures from that file, so "
        "give another machine a file of its own",
    )
    args = parser.parse_args()
    unknown = set(args.only) - {t.name for t in TARGETS}
    if unknown:
        parser.error(f"unknown target(s) {sorted(unknown)}; known: {[t.name for t in TARGETS]}")
    extra = [arg for o in args.set for arg in ("--set", o)]
    path = Path(__file__).parent / "results" / f"{args.out}.json"
    previous = json.loads(path.read_text()).get("targets", {}) if path.exists() else {}
    results = dict(previous)
    with tempfile.TemporaryDirectory() as scratch:
        for target in TARGETS:
            if target.name not in args.only:
                continue
            out = (args.keep or Path(scratch)) / target.name
            if out.exists():
                shutil.rmtree(out)
            print(f"{target.name}: configs/fast/{target.config}.toml ...", flush=True)
            results[target.name] = row = run_target(target, out, extra)
            print(
                f"  {target.metric} {row['value']:.4g} ({row['goal']}: "
                f"{'met' if row['goal_met'] else 'MISSED'}), train {row['train_seconds']:.0f} s "
                f"of {target.seconds:.0f} ({'met' if row['time_met'] else 'MISSED'})",
                flush=True,
            )
            write_json(args.out, {"machine": machine(), "targets": results})
    print(f"-> {path}")


if __name__ == "__main__":
    main()
