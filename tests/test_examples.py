"""The examples run, and a run's exported weights are its parameters (and, where PyTorch is
installed, give PyTorch's LSTM the same log-likelihood)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lecturenn import load_run
from lecturenn.experiments import config as config_lib
from lecturenn.experiments import runner
from lecturenn.experiments.export import export_run, flat_arrays

ROOT = Path(__file__).resolve().parents[1]
TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\n" * 8


def _example(name: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_train_from_python_learns_the_digits():
    out = _example("train_from_python.py")
    assert float(out.split("test accuracy")[1]) > 0.9, out


def test_check_my_layer_agrees_three_ways():
    assert "all gradients agree" in _example("check_my_layer.py")


@pytest.fixture(scope="module")
def lstm_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    (folder / "tiny.txt").write_text(TEXT)
    (folder / "c.toml").write_text(
        f"""
name = "tiny"
[data]
name = "tinyshakespeare"
path = "{folder / "tiny.txt"}"
num_steps = 8
eval_num_steps = 8
[model]
kind = "rnn_lm"
embed_dim = 8
hidden_dim = 8
num_layers = 2
recurrent_bias = true
output_bias = "uniform"
[optim]
learning_rate = 0.01
[train]
epochs = 2
batch_size = 4
monitor = "perplexity"
"""
    )
    runner.run(config_lib.load_config(folder / "c.toml"), folder / "run", quiet=True)
    return folder / "run"


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_export_writes_the_best_parameters_and_the_config(lstm_run, tmp_path, fmt):
    run = load_run(lstm_run)
    path = export_run(lstm_run, fmt, tmp_path / f"m.{fmt}")
    expected = flat_arrays(run.params)
    if fmt == "npz":
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files if not k.startswith("__")}
            meta = {"config": str(f["__config__"]), "model": str(f["__model__"])}
    else:
        safetensors = pytest.importorskip("safetensors", reason="the export extra is not installed")
        from safetensors import safe_open

        arrays = dict(safetensors.numpy.load_file(str(path)))
        with safe_open(str(path), "np") as f:
            meta = f.metadata()
    assert set(arrays) == set(expected) >= {"embed", "layers.0.Wx", "layers.1.Wh", "out.W"}
    assert all(np.array_equal(arrays[k], expected[k]) for k in expected)
    assert 'kind = "rnn_lm"' in meta["config"]
    assert json.loads(meta["model"])["vocab_size"] == len(set(TEXT))


def test_an_exported_lstm_gives_pytorch_the_same_log_likelihood(lstm_run):
    pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.13.0)")
    pytest.importorskip("safetensors", reason="the export extra is not installed")
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from lstm_to_pytorch import log_likelihoods
    finally:
        sys.path.remove(str(ROOT / "examples"))
    ours, theirs = log_likelihoods(lstm_run, "ROMEO:\nBut soft, what light")
    assert ours < 0 and theirs == pytest.approx(ours, rel=1e-5)
