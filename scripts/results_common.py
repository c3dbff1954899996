"""What the results-page scripts (scripts/reproduce_*_table.py) share: runs, their committed
records, and pages rebuilt from the records alone.

A run is a config plus ``--set`` overrides, trained by ``lecturenn run`` into runs/<page>/<name>.
Each finished run is kept as a small committed record, docs/results/records/<page>/<name>.json:
the command, the resolved config, summary.json (figures and provenance) and metrics.jsonl. A page
is rebuilt from the records alone, so a fresh clone regenerates it exactly (``--check`` compares,
the tests run it); ``--run`` first trains the runs that have no record.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lecturenn.cli import Parser

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "docs" / "results" / "records"


@dataclass(frozen=True)
class Run:
    page: str
    name: str
    config: str  # configs/<config>.toml
    overrides: tuple[str, ...] = field(default=())

    @property
    def folder(self) -> Path:
        return ROOT / "runs" / self.page / self.name

    @property
    def record_path(self) -> Path:
        return RECORDS / self.page / f"{self.name}.json"

    def command(self) -> str:
        words = ["lecturenn", "run", f"configs/{self.config}.toml"]
        words += ["--out", f"runs/{self.page}/{self.name}"]
        for override in self.overrides:
            words += ["--set", override]
        return shlex.join(words)


def seeded(page: str, name: str, config: str, seeds, overrides=()) -> list[Run]:
    """One run per seed, named <name>_s<seed>."""
    return [
        Run(page, f"{name}_s{seed}", config, (*overrides, f"train.seed={seed}")) for seed in seeds
    ]


def seed_records(page: str, config: str, seeds) -> list[tuple[int, dict]]:
    """(seed, record) of each seed of a config's runs that has a record."""
    found = []
    for seed, run in zip(seeds, seeded(page, config, config, seeds), strict=True):
        rec = record(run)
        if rec is not None:
            found.append((seed, rec))
    return found


EXTRA_FILES = ("confusion_test.json",)  # small outputs a page may show, kept when present


def keep_record(run: Run, extras: dict | None = None) -> dict | None:
    """The record of a finished run folder, written to its committed place; None if unfinished.
    ``extras``: more entries computed from the folder (e.g. a text sampled from the model)."""
    summary_path = run.folder / "summary.json"
    if not summary_path.exists():
        return None
    metrics = (run.folder / "metrics.jsonl").read_text().splitlines()
    summary = json.loads(summary_path.read_text())
    kept = record(run)
    # the same finished run kept before: its command stays (it may have been written by hand
    # for a run made with other flags than the generated command's)
    same = kept is not None and kept.get("summary") == summary
    entry = {
        "command": kept["command"] if same else run.command(),
        "config": (run.folder / "config.toml").read_text(),
        "summary": summary,
        "metrics": [json.loads(line) for line in metrics if line],
        "files": {
            name: json.loads((run.folder / name).read_text())
            for name in EXTRA_FILES
            if (run.folder / name).exists()
        },
        **(extras or {}),
    }
    write_record(run.record_path, entry)
    return entry


def record(run: Run) -> dict | None:
    """A run's committed record, else None."""
    if run.record_path.exists():
        return json.loads(run.record_path.read_text())
    return None


def write_record(path: Path, entry: dict) -> None:
    """A record, written whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(entry, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def keep_finished(runs: list[Run], extras=None) -> None:
    """Records for the runs that have finished in runs/ (``extras(run)``: more entries)."""
    for run in runs:
        if (run.folder / "summary.json").exists():
            keep_record(run, extras(run) if extras else None)


def train_missing(runs: list[Run], only: list[str], extras=None) -> None:
    """Trains, one after another, the runs with neither a record nor a finished folder (``only``:
    names or prefixes), and keeps each one's record as it finishes."""
    for run in runs:
        if only and not any(run.name.startswith(o) for o in only):
            continue
        if record(run) is not None or (run.folder / "summary.json").exists():
            continue
        print(f"$ {run.command()}", flush=True)
        subprocess.run(shlex.split(run.command()), cwd=ROOT, check=True)
        keep_record(run, extras(run) if extras else None)


def notes(page: str) -> list[str]:
    """The page's hand-written part, docs/results/notes/<page>.md (what was tried, runs from
    before the records), appended after the tables made from the records."""
    path = ROOT / "docs" / "results" / "notes" / f"{page}.md"
    return path.read_text().rstrip("\n").splitlines() if path.exists() else []


def mean_sd(values: list[float], digits: int = 2) -> str:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def machine_of(records: list[dict]) -> str:
    """The machines the records' runs trained on, from their provenance."""
    kinds, unrecorded = set(), 0
    for r in records:
        prov = r["summary"].get("provenance")
        if not prov:
            unrecorded += 1
            continue
        kinds.add(prov.get("cpu") or f"{prov.get('backend', '?')}/{prov.get('device_kind', '?')}")
    text = ", ".join(sorted(kinds))
    if unrecorded:
        text += f"{'; ' if text else ''}{unrecorded} earlier run(s) recorded no machine"
    return text


def benchmark_cpu(machine: dict) -> str:
    """A benchmark JSON's ``machine`` in words: its processor and cores."""
    return f"{machine.get('processor', 'an unrecorded CPU')}, {machine.get('cpu_count', '?')} cores"


def load_at_end(rec: dict) -> str:
    """The 1- and 15-minute load averages when the run wrote its summary ("?" if unrecorded)."""
    load = rec["summary"].get("provenance", {}).get("load_average_1_5_15min")
    return f"{load[0]:.1f} / {load[2]:.1f}" if load else "?"


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def arguments(doc: str) -> argparse.Namespace:
    parser = Parser(
        description=doc.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.epilog = doc
    parser.add_argument(
        "--run", action="store_true", help="first train the runs that have no record"
    )
    parser.add_argument("--only", nargs="*", default=[], help="run names (or prefixes) to train")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="first record the runs that have finished under runs/ (replacing their records)",
    )
    parser.add_argument(
        "--check", action="store_true", help="rebuild the page from the records and compare"
    )
    parser.add_argument(
        "--list", action="store_true", help="print each run's command and whether it has a record"
    )
    return parser.parse_args()


def list_runs(runs: list[Run]) -> None:
    for run in runs:
        print(f"{'recorded' if record(run) else 'missing '}  {run.command()}")


def write_page(path: Path, text: str, check: bool) -> None:
    if check:
        if not path.exists() or path.read_text() != text:
            print(f"{path} differs from the page its records make", file=sys.stderr)
            sys.exit(1)
        print(f"{path}: rebuilt from its records, unchanged")
        return
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    print(f"-> {path}")


def main(doc: str, runs: list[Run], page: Path, build, extras=None, keep_more=None) -> None:
    """What every reproduce script does: ``--list``, ``--keep``, ``--run``, then the page from the
    records (``build()`` returns its text), written or, with ``--check``, compared.
    ``keep_more()``: records made from several finished runs (e.g. ensembles), after ``--keep``
    and ``--run``."""
    args = arguments(doc)
    if args.list:
        list_runs(runs)
        return
    if args.keep:
        keep_finished(runs, extras)
    if args.run:
        train_missing(runs, args.only, extras)
    if keep_more is not None and (args.keep or args.run):
        keep_more()
    write_page(page, build(), args.check)
