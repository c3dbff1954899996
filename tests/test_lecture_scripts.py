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


def test_lm_page_keeps_run_records_and_refuses_to_drop_missing_runs(
    tmp_path, scripts_on_path, monkeypatch
):
    """reproduce_lm_table.py copies each run's summary and epochs to a committed record, reads
    the record once the run folder is gone, and leaves the page alone while runs are missing."""
    import json

    import reproduce_lm_table as lm

    runs, records, page = tmp_path / "runs", tmp_path / "records", tmp_path / "lm.md"
    for name, value in [("RUNS", runs), ("RECORDS", records), ("PAGE", page)]:
        monkeypatch.setattr(lm, name, value)
    monkeypatch.setattr(lm, "SAMPLE", records / "sample.txt")
    folder = runs / "ptb_nplm"
    folder.mkdir(parents=True)
    epochs = [
        {"epoch": 1, "val_perplexity": 201.25, "train_perplexity": 310.0, "seconds": 60.0},
        {"epoch": 2, "val_perplexity": 171.5, "train_perplexity": 190.0, "seconds": 61.0},
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in epochs))
    summary = {"test_perplexity": 149.75, "val_perplexity": 171.5, "epochs_run": 2}
    summary["train_seconds"] = 121.0
    (folder / "summary.json").write_text(json.dumps(summary))
    page.write_text("the page as it was\n")

    monkeypatch.setattr("sys.argv", ["reproduce_lm_table.py", "--no-sample"])
    with pytest.raises(SystemExit) as stop:
        lm.main()
    assert stop.value.code == 2
    assert page.read_text() == "the page as it was\n"
    kept = json.loads((records / "ptb_nplm.json").read_text())
    assert kept["summary"] == summary and kept["metrics"] == epochs

    (folder / "metrics.jsonl").unlink()
    (folder / "summary.json").unlink()
    assert lm.read("ptb_nplm") == (summary, epochs)
    assert lm.read("ptb_rnn") == (None, [])

    monkeypatch.setattr("sys.argv", ["reproduce_lm_table.py", "--no-sample", "--allow-missing"])
    lm.main()
    rows = {row[0]: row for row in table_rows(page.read_text(), "model")}
    assert rows["ptb_nplm"][1] == "**149.8** (171.5)"
    assert rows["ptb_nplm"][3] == "≤ 150.0 (met)"
    assert rows["ptb_rnn"][1].startswith("not run")
