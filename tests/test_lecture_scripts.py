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


@pytest.fixture
def results_root(tmp_path, scripts_on_path, monkeypatch):
    """results_common pointed at an empty tree: runs/ and docs/results/records/ under tmp_path."""
    import results_common

    monkeypatch.setattr(results_common, "ROOT", tmp_path)
    monkeypatch.setattr(results_common, "RECORDS", tmp_path / "records")
    return tmp_path


def finished_run(folder, summary: dict, epochs: list[dict]) -> None:
    import json

    folder.mkdir(parents=True)
    (folder / "config.toml").write_text('name = "x"\n')
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in epochs))
    (folder / "summary.json").write_text(json.dumps(summary))


def test_lm_page_is_rebuilt_from_committed_records_alone(results_root, monkeypatch, capsys):
    """--keep copies a finished run's command, config, summary and epochs into its record; the
    page is then made from the records alone (the run folder gone), and --check fails as soon as
    the page differs from what the records make."""
    import json
    import shutil

    import reproduce_lm_table as lm

    page = results_root / "lm.md"
    monkeypatch.setattr(lm, "PAGE", page)
    epochs = [
        {"epoch": 1, "val_perplexity": 201.25, "train_perplexity": 310.0, "seconds": 60.0},
        {"epoch": 2, "val_perplexity": 171.5, "train_perplexity": 190.0, "seconds": 61.0},
    ]
    summary = {"test_perplexity": 149.75, "val_perplexity": 171.5, "best_epoch": 2}
    summary["train_seconds"] = 121.0
    folder = results_root / "runs" / "lm" / "ptb_nplm_s0"
    finished_run(folder, summary, epochs)

    def main(*flags):
        monkeypatch.setattr("sys.argv", ["reproduce_lm_table.py", *flags])
        lm.main(lm.__doc__, lm.RUNS, lm.PAGE, lm.build)

    main("--keep")
    kept = json.loads((results_root / "records" / "lm" / "ptb_nplm_s0.json").read_text())
    assert kept["summary"] == summary and kept["metrics"] == epochs
    assert kept["command"].startswith("lecturenn run configs/ptb_nplm.toml")
    assert "train.seed=0" in kept["command"]
    # a command written into the record by hand (the run was made another way) survives a
    # second --keep of the same finished run, and a new result replaces it
    record_path = results_root / "records" / "lm" / "ptb_nplm_s0.json"
    record_path.write_text(json.dumps({**kept, "command": "lecturenn run by hand"}))
    main("--keep")
    assert json.loads(record_path.read_text())["command"] == "lecturenn run by hand"
    (folder / "summary.json").write_text(json.dumps({**summary, "wall_seconds": 1.0}))
    main("--keep")
    assert json.loads(record_path.read_text())["command"] == kept["command"]
    (folder / "summary.json").write_text(json.dumps(summary))
    main("--keep")
    written = page.read_text()
    rows = {row[0]: row for row in table_rows(written, "model")}
    assert rows["ptb_nplm"][1:3] == ["0", "**149.8**"]
    assert rows["ptb_nplm"][5] == "≤ 140.2 (**missed**)"
    assert rows["ptb_rnn"][1] == "not run"
    assert "- ptb_nplm_s0: 201.2 (60), 171.5 (61); best epoch 2" in written

    shutil.rmtree(results_root / "runs")
    main("--check")
    assert "unchanged" in capsys.readouterr().out
    page.write_text(written.replace("149.8", "139.8"))
    with pytest.raises(SystemExit) as stop:
        main("--check")
    assert stop.value.code == 1
    main()
    assert page.read_text() == written


@pytest.mark.parametrize("script", ["reproduce_ner_table", "reproduce_cnn_table"])
def test_results_pages_without_records_name_the_commands_to_run(results_root, script):
    """With no record, a page still builds, and says which command would make each row."""
    import importlib

    module = importlib.import_module(script)
    text = module.build(write_image=False) if script.endswith("cnn_table") else module.build()
    assert "not run" in text.lower()
    assert module.RUNS[0].command() in text


@pytest.mark.parametrize(
    "script", ["reproduce_lm_table.py", "reproduce_ner_table.py", "reproduce_cnn_table.py"]
)
def test_a_committed_page_is_what_its_committed_records_make(script):
    """The page is rebuilt from docs/results/records/<page>/ alone and compared (--check)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, str(SCRIPTS / script), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "unchanged" in done.stdout
