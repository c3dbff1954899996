"""Nothing lost, nothing silently wrong: run folders, paths and bad input end with one line naming
the file, line, key or flag and exit status 2, and never destroy what is there."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from lecturenn.cli import main
from lecturenn.nn import conv

XOR = """name = "trust"
[model]
kind = "mlp"
hidden = [8]
[data]
name = "xor"
num_examples = 200
[optim]
name = "sgd"
learning_rate = 0.2
[train]
epochs = {epochs}
batch_size = 16
checkpoint = {checkpoint}
"""


def config(tmp_path, epochs=2, checkpoint="true", name="c.toml"):
    path = tmp_path / name
    path.write_text(XOR.format(epochs=epochs, checkpoint=checkpoint))
    return path


def one_line_error(capsys, *fragments) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("lecturenn: error:"), err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# --- 1. data loss ------------------------------------------------------------------------------


def test_a_finished_run_without_checkpoints_is_not_overwritten(tmp_path, capsys):
    path, out = config(tmp_path, checkpoint="false"), tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    before = snapshot(out)
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 2
    one_line_error(capsys, str(out), "--overwrite", "--resume")
    assert snapshot(out) == before


def test_a_users_folder_is_not_touched_and_a_failed_run_leaves_nothing(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    path = config(tmp_path)
    assert main(["run", str(path), "--out", str(mine), "--quiet"]) == 2
    one_line_error(capsys, "already holds files")
    assert snapshot(mine) == {"notes.txt": b"mine"}
    # a run that fails (NaN in epoch 1) into a new folder leaves no folder at all
    out = tmp_path / "new"
    args = ["run", str(path), "--out", str(out), "--quiet", "--set", "train.input_noise=1e38"]
    assert main(args) == 2
    capsys.readouterr()
    assert not out.exists() and not (tmp_path / "new.partial").exists()


def test_overwrite_replaces_only_when_the_new_run_has_finished(tmp_path, capsys):
    path, out = config(tmp_path), tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    before = snapshot(out)
    failing = ["--set", "train.input_noise=1e38"]
    assert main(["run", str(path), "--out", str(out), "--quiet", "--overwrite", *failing]) == 2
    capsys.readouterr()
    assert snapshot(out) == before  # the failed replacement left the old run as it was
    changed = ["--set", "optim.learning_rate=0.1"]
    assert main(["run", str(path), "--out", str(out), "--quiet", "--overwrite", *changed]) == 0
    assert "learning_rate = 0.1" in (out / "config.toml").read_text()
    assert not list(tmp_path.glob("run.*"))  # no staging or replaced folder left


# --- 2. paths ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../x", "/tmp/x", "a/b", "..", ""])
def test_run_names_are_plain_names(tmp_path, capsys, name):
    path = config(tmp_path)
    assert main(["run", str(path), "--set", f"name={json.dumps(name)}"]) == 2
    one_line_error(capsys, "plain name")


def test_out_under_a_file_or_in_an_unwritable_place_is_one_line(tmp_path, capsys):
    path = config(tmp_path)
    (tmp_path / "file").write_text("")
    assert main(["run", str(path), "--out", str(tmp_path / "file" / "run"), "--quiet"]) == 2
    one_line_error(capsys, "is a file")
    assert main(["run", str(path), "--out", "/proc/lecturenn-run", "--quiet"]) == 2
    one_line_error(capsys, "/proc")


# --- 3. results that change with the data: test_tagging.py (saved vocabularies, digests) ------

# --- 4. tracebacks instead of one line -----------------------------------------------------------


def test_non_utf8_inputs_name_the_file_and_line(tmp_path, capsys):
    from lecturenn.data import conll, text
    from lecturenn.errors import UserError

    (tmp_path / "c.toml").write_bytes(b'name = "x"\n\xff\n')
    assert main(["run", str(tmp_path / "c.toml")]) == 2
    one_line_error(capsys, "c.toml", "UTF-8")
    bad = tmp_path / "eng.train"
    bad.write_bytes(b"EU NNP B-NP B-ORG\n\nPeter NNP B-NP B-PER\nBlack\xe9burn NNP I-NP I-PER\n")
    with pytest.raises(UserError, match=r"eng\.train:4: not UTF-8"):
        conll.read_conll(bad)
    chars = tmp_path / "input.txt"
    chars.write_bytes(b"ROMEO:\nhi\x80\n")
    with pytest.raises(UserError, match=r"input\.txt:2: not UTF-8"):
        text.load_chars(chars)
    assert main(["run", str(tmp_path)]) == 2
    one_line_error(capsys, "is a folder")


def test_bad_ranges_are_refused_before_any_work(tmp_path, capsys):
    path = config(tmp_path)
    for override, key in (
        ("train.batch_size=0", "train.batch_size"),
        ("train.batch_size=-3", "train.batch_size"),
        ("model.hidden=[0]", "model.hidden"),
        ("model.hidden=[-4]", "model.hidden"),
        ("train.monitor=f1", "train.monitor"),
        ("train.epochs=-1", "train.epochs"),
        ("train.epochs=0", "train.epochs"),
    ):
        out = tmp_path / "never"
        assert main(["run", str(path), "--out", str(out), "--set", override]) == 2, override
        one_line_error(capsys, key, f"--set '{override}'")
        assert not out.exists()


def test_a_checkpoint_with_missing_or_garbage_meta_is_refused_before_anything_is_touched(
    tmp_path, capsys
):
    path, out = config(tmp_path, epochs=3), tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    latest = out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip()
    (latest / "meta.json").write_text("garbage")
    before = snapshot(out)
    assert main(["run", str(path), "--resume", str(out), "--set", "train.epochs=4"]) == 2
    one_line_error(capsys, "meta.json", "--from-step 2")
    assert snapshot(out) == before
    (latest / "meta.json").unlink()
    assert main(["run", str(path), "--resume", str(out), "--set", "train.epochs=4"]) == 2
    one_line_error(capsys, "meta.json")
    # the earlier intact checkpoint, asked for by --from-step, continues the run
    args = ["--resume", str(out), "--from-step", "2", "--set", "train.epochs=4", "--quiet"]
    assert main(["run", str(path), *args]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]


def test_eval_predictions_into_a_missing_folder_is_refused_first(tmp_path, capsys):
    assert main(["eval", str(tmp_path), "--predictions", str(tmp_path / "no" / "p.txt")]) == 2
    one_line_error(capsys, "--predictions")


# --- 5. accepted nonsense -----------------------------------------------------------------------


def test_gradcheck_and_tag_refuse_nonsense(tmp_path, capsys):
    assert main(["gradcheck", "mlp", "--depth", "-1"]) == 2
    one_line_error(capsys, "--depth")
    assert main(["gradcheck", "mlp", "--h", "0"]) == 2
    one_line_error(capsys, "--h")
    assert main(["tag", str(tmp_path / "missing_run"), ""]) == 2
    one_line_error(capsys, "missing_run")


# --- 6. a NaN that hides ------------------------------------------------------------------------


@pytest.mark.parametrize("position", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_max_pool_propagates_a_nan_anywhere_in_its_window(position):
    x = jnp.arange(16.0).reshape(1, 4, 4, 1).at[0, position[0], position[1], 0].set(jnp.nan)
    y, _ = conv.maxpool_forward(x)
    assert np.isnan(np.asarray(y)[0, 0, 0, 0]) and not np.isnan(np.asarray(y)[0, 1, 1, 0])


# --- 7. messages that point the right way -------------------------------------------------------


def test_an_empty_training_file_is_named(tmp_path):
    from lecturenn.data import text
    from lecturenn.errors import UserError

    folder = tmp_path / "ptb"
    folder.mkdir()
    (folder / "ptb.train.txt").write_text("")
    (folder / "ptb.valid.txt").write_text(" a b \n")
    (folder / "ptb.test.txt").write_text(" a b \n")
    with pytest.raises(UserError, match=r"ptb\.train\.txt: empty"):
        text.load_ptb(tmp_path)


def test_data_fetch_offers_the_mirror_option_it_names(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LECTURENN_DATA", str(tmp_path))
    assert main(["data", "fetch", "ptb", "--base-url", "http://127.0.0.1:9/"]) == 2
    one_line_error(capsys, "127.0.0.1:9", "--base-url")


def test_ctrl_c_says_where_the_checkpoint_is_and_how_to_resume(tmp_path):
    # epochs enough that the run cannot finish before the interrupt, however loaded the machine
    path, out = config(tmp_path, epochs=100_000), tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lecturenn.cli", "run", str(path), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    latest = tmp_path / "run.partial" / "checkpoints" / "latest"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not latest.exists():
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and "interrupted" in last and f"--resume {out}" in last
    assert "run.partial" in last and not out.exists()
    # the first Ctrl-C lets the epoch finish and keeps its checkpoint before stopping
    assert "stopping after this epoch" in err
    epochs = (tmp_path / "run.partial" / "metrics.jsonl").read_text().splitlines()
    kept = (tmp_path / "run.partial" / "checkpoints" / "latest").read_text().strip()
    assert kept == f"step_{len(epochs):08d}"
