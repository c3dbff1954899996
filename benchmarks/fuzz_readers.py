"""Fuzz every reader with many generated inputs (hypothesis): arbitrary bytes and mutations of a
valid file must either parse or end in the one-line UserError, never in a traceback.

    python benchmarks/fuzz_readers.py [--examples 2000]   # writes benchmarks/results/fuzz.json

It runs tests/data/test_readers_fuzz.py (the same properties the test suite checks with a few
examples each) with ``--examples`` examples per reader, and records how many inputs each reader
parsed and refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import machine, write_json

from lecturenn.cli import Parser

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000, help="inputs per reader")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "counts.json"
        env = {
            **os.environ,
            "LECTURENN_FUZZ_EXAMPLES": str(args.examples),
            "LECTURENN_FUZZ_REPORT": str(report),
        }
        start = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "tests/data/test_readers_fuzz.py",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
        counts = json.loads(report.read_text()) if report.exists() else {}
    print(done.stdout[-2000:])
    for reader, c in counts.items():
        print(
            f"{reader:<22} {sum(c.values()):>6} inputs: {c.get('parsed', 0):>5} parsed, "
            f"{c.get('refused', 0):>5} refused with a one-line error"
        )
    path = write_json(
        "fuzz",
        {
            "benchmark": "reader_fuzzing",
            "machine": machine(),
            "examples_per_reader": args.examples,
            "seconds": round(seconds, 1),
            "passed": done.returncode == 0,
            "counts": counts,
        },
    )
    print(f"-> {path}")
    sys.exit(done.returncode)


if __name__ == "__main__":
    main()
