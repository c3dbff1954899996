"""Smoke test of the lecture experiment scripts (scripts/lecture_*.py) at a tiny size: the
optimizers experiment with ``--quick`` (our SGD and optax's) on a few spirals points, one epoch."""

import re
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture
def scripts_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))


def table_rows(markdown: str, first_header: str) -> list[list[str]]:
    """The body rows of the markdown table whose header starts with ``| first_header |``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def test_optimizers_script_writes_a_table_with_ours_equal_to_optax(tmp_path, scripts_on_path):
    from lecture_common import main
    from lecture_experiments import EXPERIMENTS

    docs, runs = tmp_path / "docs", tmp_path / "runs"
    argv = [
        "optimizers",
        "--quick",
        "--epochs",
        "1",
        "--set",
        'data.name="spirals"',
        "--set",
        "data.num_per_class=30",
        "--docs-dir",
        str(docs),
        "--runs-dir",
        str(runs),
    ]
    assert main(EXPERIMENTS, argv) == 0

    page = (docs / "optimizers.md").read_text()
    assert "python scripts/lecture_optimizers.py --quick --epochs 1" in page
    rows = table_rows(page, "optimizer")
    assert [row[0] for row in rows] == ["sgd"]
    # columns: optimizer, lr, test acc (ours), test acc (optax), final train loss,
    # max |Δ train loss|, max |Δ val loss|: our SGD must follow optax's step for step
    assert rows[0][2] == rows[0][3]
    assert float(rows[0][5]) < 1e-5 and float(rows[0][6]) < 1e-5
    assert (docs / "optimizers.png").stat().st_size > 0
    for variant in ("sgd", "optax-sgd"):
        assert (runs / "optimizers" / variant / "summary.json").exists()
