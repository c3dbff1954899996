"""Every committed config trains, gradchecks, sweeps, shards, resumes and extends the same way.

Each config is shrunk with ``--set`` overrides (less data, smaller layers, two epochs) so that a
cell takes seconds, while its model keeps its structure (cell, depth, dropout, scoring, batch
norm, tying, pooling) and its data its kind of epoch (shuffled, bucketed sentences, streams).
The cells:

- gradcheck: manual vs ``jax.grad`` vs centered differences on a float64 toy of the model;
- grads and drivers: ``train.grads = "autodiff"`` and ``train.driver = "loop"`` train as the
  default (manual, scan) run does, within float32 tolerance;
- sweep: trials of one shape as one vmapped program, the best written as a run folder that
  ``load_run`` (and so ``eval``, ``tag``, ``sample``) accepts; and for bucketed sentences and
  text streams, the trials one per call of the unbatched program train as all in one call;
- parallel: ``parallel.data = 8`` on 8 emulated CPU devices equals one device;
- distributed: two ``lecturenn run`` processes joined on 127.0.0.1 equal one process, and only
  process 0 writes;
- resume: a run killed (SIGKILL) right after its first checkpoint resumes bit-identically;
- extend: a finished run continued with ``--resume --set train.epochs=N`` equals a run of N
  epochs, and any key that could change the past is refused by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from lecturenn.cli import main
from lecturenn.experiments import checks, inference, sweep
from lecturenn.experiments import config as config_lib
from lecturenn.models import cnn

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.toml"))
IDS = [p.stem for p in CONFIGS]

DATA = {
    "fashion-mnist": ["data.limit_train=256", "data.limit_eval=128"],
    "conll2003": ["data.limit_train=48", "data.limit_eval=24", "data.glove_max_words=3000"],
    "ptb": [
        "data.limit_train=3000",
        "data.limit_eval=600",
        "data.num_steps=8",
        "data.eval_num_steps=8",
    ],
    "tinyshakespeare": [
        "data.limit_train=3000",
        "data.limit_eval=600",
        "data.num_steps=8",
        "data.eval_num_steps=8",
    ],
    "adding": ["data.length=12", "data.num_train=64", "data.num_valid=32", "data.num_test=32"],
}
MODEL = {
    "mlp": [],
    "cnn": ["model.dense=16"],  # and 4, 8, 8, ... channels, as many blocks as the config has
    "window_tagger": ["model.hidden=16"],
    "nplm": ["model.hidden_dim=16", "model.embed_dim=8"],
    "rnn_lm": ["model.hidden_dim=16", "model.embed_dim=16"],
    "sequence_regressor": ["model.hidden_dim=8"],
}
NEEDS = {"fashion-mnist", "conll2003", "ptb", "tinyshakespeare"}  # shared data sets


def shrink(path: Path) -> list[str]:
    """The overrides that make a config's run take seconds."""
    raw = config_lib.read_toml(path)
    data, kind = raw["data"]["name"], raw["model"]["kind"]
    if data in NEEDS:
        root = Path(os.environ.get("LECTURENN_DATA", Path.home() / ".cache" / "lecturenn"))
        folder = {"fashion-mnist": "fashion-mnist"}.get(data, data)
        if not (root / folder).is_dir():
            pytest.skip(f"{data} not found under {root} (set LECTURENN_DATA)")
    model = list(MODEL[kind])
    if kind == "cnn":
        blocks = len(raw["model"].get("channels", cnn.CNNConfig().channels))
        model.append(f"model.channels={[4] + [8] * (blocks - 1)}")
    return [*DATA.get(data, []), *model, "train.epochs=2", "train.batch_size=8"]


@contextlib.contextmanager
def float32_process():
    """Train as ``lecturenn run`` does in a fresh process: without the tests' float64 default
    (conftest.py), so that in-process runs and subprocess runs compile the same programs."""
    was = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", was)


def cli_run(*args: str) -> int:
    with float32_process():
        return main(list(args))


def run_cli(path: Path, out: Path, *extra: str) -> dict:
    overrides = [arg for o in [*shrink(path), *extra] for arg in ("--set", o)]
    assert cli_run("run", str(path), "--out", str(out), "--quiet", *overrides) == 0
    return json.loads((out / "summary.json").read_text())


def rows(out: Path) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [
        {k: v for k, v in json.loads(line).items() if k not in ("seconds", "steps_per_s")}
        for line in lines
    ]


def arrays(out: Path) -> dict:
    latest = (out / "checkpoints" / "latest").read_text().strip()
    with np.load(out / "checkpoints" / latest / "arrays.npz", allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def assert_close_rows(a: list[dict], b: list[dict], rtol: float) -> None:
    assert [r["epoch"] for r in a] == [r["epoch"] for r in b]
    for x, y in zip(a, b, strict=True):
        for key in ("train_loss", "val_loss"):
            if key in x:
                assert x[key] == pytest.approx(y[key], rel=rtol), (key, x, y)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One default (manual, scan) run of each shrunk config, made on first use."""
    made = {}

    def get(path: Path) -> Path:
        if path not in made:
            out = tmp_path_factory.mktemp(path.stem) / "reference"
            run_cli(path, out)
            made[path] = out
        return made[path]

    return get


@pytest.mark.parametrize("path", CONFIGS, ids=IDS)
def test_gradcheck(path):
    cfg = config_lib.load_config(path, shrink(path))
    failed = [r.path for r in checks.toy_check(cfg) if not r.ok(1e-7, 1e-5)]
    assert failed == []


@pytest.mark.parametrize("path", CONFIGS, ids=IDS)
def test_grads_and_drivers_train_alike(path, reference, tmp_path):
    base = rows(reference(path))
    for extra in ('train.grads="autodiff"', 'train.driver="loop"'):
        out = tmp_path / extra.split("=")[0]
        run_cli(path, out, extra)
        assert_close_rows(rows(out), base, rtol=2e-3)


@pytest.mark.parametrize("path", CONFIGS, ids=IDS)
def test_sweep_writes_the_best_trial_as_a_run(path, tmp_path):
    cfg = config_lib.load_config(path)
    lr = cfg.optim.learning_rate
    space = {
        "optim.learning_rate": {"log_uniform": [lr / 2, lr]},
        "train.seed": {"int": [0, 9]},
    }
    traced = [k for k in sweep.vectorizable(type(cfg.model)) if k.startswith("model.")]
    for key in traced[:1]:
        space[key] = {"uniform": [0.0, 0.3]}
    overrides = shrink(path)
    if getattr(cfg.data, "val_fraction", 1) == 0:  # trials are ranked on a validation split
        overrides.append("data.val_fraction=0.2")
    with float32_process():
        ranked = sweep.run_sweep(path, 2, tmp_path, space=space, overrides=overrides)
        run = inference.load_run(tmp_path / "best")
    assert len(ranked) == 2 and len({r["group"] for r in ranked}) == 1
    summary = json.loads((tmp_path / "best" / "summary.json").read_text())
    assert summary["sweep_trial"]["train.seed"] == ranked[0]["train.seed"]
    assert any(k.startswith(("test_", "val_")) for k in summary) and run.params is not None


@pytest.mark.parametrize("name", ["ner_window", "ptb_lstm_small"])  # bucketed, streams
def test_sweep_trials_one_per_call_train_as_all_in_one_call(name, tmp_path):
    """The per_call=1 path (the unbatched program, each trial's slice of the plan) against the
    vmapped one, in float64 where the two differ only by rounding (in float32 a trial at a high
    learning rate can end visibly apart)."""
    path = ROOT / "configs" / f"{name}.toml"
    lr = config_lib.load_config(path).optim.learning_rate
    space = {
        "optim.learning_rate": {"log_uniform": [lr / 2, lr]},
        "model.dropout": {"uniform": [0.0, 0.3]},
        "train.seed": {"int": [0, 9]},
    }
    overrides = [*shrink(path), 'model.dtype="float64"']
    runs = {
        per_call: {
            r["trial"]: r
            for r in sweep.run_sweep(
                path,
                2,
                tmp_path / str(per_call),
                space=space,
                overrides=overrides,
                per_call=per_call,
            )
        }
        for per_call in (1, 2)
    }
    for trial, alone in runs[1].items():
        together = runs[2][trial]
        assert (alone["trials_per_call"], together["trials_per_call"]) == (1, 2)
        assert alone["best_epoch"] == together["best_epoch"]
        assert alone["val_loss"] == pytest.approx(together["val_loss"], rel=1e-9)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_ENABLE_X64")}
    env.update(extra)
    return env


def _cli(path: Path, out: Path, *extra: str) -> list[str]:
    overrides = [arg for o in [*shrink(path), *extra] for arg in ("--set", o)]
    return [
        sys.executable,
        "-m",
        "lecturenn.cli",
        "run",
        str(path),
        "--out",
        str(out),
        "--quiet",
        *overrides,
    ]


@pytest.mark.parametrize("path", CONFIGS, ids=IDS)
def test_eight_devices_train_as_one(path, reference, tmp_path):
    out = tmp_path / "eight"
    done = subprocess.run(
        _cli(path, out, "parallel.data=8"),
        env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=8"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert_close_rows(rows(out), rows(reference(path)), rtol=2e-3)


@pytest.mark.parametrize("path", CONFIGS, ids=IDS)
def test_two_processes_train_as_one_and_only_process_0_writes(path, reference, tmp_path):
    port = _free_port()
    procs = [
        subprocess.Popen(
            _cli(path, tmp_path / f"process{i}", "parallel.distributed=true"),
            env=_env(
                LECTURENN_COORDINATOR=f"127.0.0.1:{port}",
                LECTURENN_NUM_PROCESSES="2",
                LECTURENN_PROCESS_ID=str(i),
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    assert not (tmp_path / "process1").exists()
    assert_close_rows(rows(tmp_path / "process0"), rows(reference(path)), rtol=2e-3)


KILL_AFTER_FIRST_CHECKPOINT = """
import os, signal, sys
from lecturenn.train import checkpoint
save = checkpoint.save_checkpoint
def save_then_die(*args, **kwargs):
    folder = save(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
checkpoint.save_checkpoint = save_then_die
from lecturenn.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("path", CONFIGS, ids=IDS)
def test_a_killed_run_resumes_bit_identically(path, reference, tmp_path):
    out = tmp_path / "killed"
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_FIRST_CHECKPOINT, *_cli(path, out)[3:]],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -9, killed.stderr
    staging = out.with_name("killed.partial")  # the unfinished run; killed/ does not exist yet
    assert (staging / "checkpoints" / "latest").read_text().strip() == "step_00000001"
    assert not out.exists() and not (staging / "summary.json").exists()
    overrides = [arg for o in shrink(path) for arg in ("--set", o)]
    assert cli_run("run", str(path), "--resume", str(out), "--quiet", *overrides) == 0
    ref = reference(path)
    assert rows(out) == rows(ref)
    a, b = arrays(out), arrays(ref)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("path", CONFIGS, ids=IDS)
def test_a_finished_run_extends_with_more_epochs(path, reference, tmp_path, capsys):
    out = tmp_path / "short"
    run_cli(path, out, "train.epochs=1")
    overrides = [arg for o in shrink(path) for arg in ("--set", o)]
    refused = [*overrides, "--set", "train.seed=7"]
    assert cli_run("run", str(path), "--resume", str(out), "--quiet", *refused) == 2
    assert "train.seed" in capsys.readouterr().err
    assert cli_run("run", str(path), "--resume", str(out), "--quiet", *overrides) == 0
    ref = reference(path)
    assert rows(out) == rows(ref)
    a, b = arrays(out), arrays(ref)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs_run"] == 2
