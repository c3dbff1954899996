"""End-to-end runs: run folder contents, determinism, resume after SIGKILL, refusals."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lecturenn.cli import main
from lecturenn.experiments import config as config_lib
from lecturenn.experiments.runner import run

XOR = """name = "xor_test"
[model]
kind = "mlp"
hidden = [8]
activation = "tanh"
[data]
name = "xor"
num_examples = 400
[optim]
name = "sgd"
learning_rate = 0.2
[train]
epochs = {epochs}
batch_size = 16
"""


def _config(tmp_path, epochs=6, extra="", name="xor.toml"):
    path = tmp_path / name
    path.write_text(XOR.format(epochs=epochs) + extra)
    return path


def _rows(run_dir: Path) -> list[dict]:
    """metrics.jsonl without the timing fields, which differ between identical runs."""
    return [
        {k: v for k, v in json.loads(line).items() if k not in ("seconds", "steps_per_s")}
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
    ]


def _arrays(run_dir: Path) -> dict:
    latest = (run_dir / "checkpoints" / "latest").read_text().strip()
    with np.load(run_dir / "checkpoints" / latest / "arrays.npz", allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def test_run_writes_the_run_folder(tmp_path):
    out = tmp_path / "run"
    summary = run(config_lib.load_config(_config(tmp_path)), out, quiet=True)
    assert summary["test_accuracy"] > 0.9 and summary["epochs_run"] == 6
    saved = json.loads((out / "summary.json").read_text())
    assert saved == summary and saved["train_seconds"] > 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert {"train_loss", "val_accuracy", "val_loss", "steps_per_s"} <= set(rows[0])
    assert (out / "plots" / "loss.png").stat().st_size > 0
    assert config_lib.load_config(out / "config.toml") == config_lib.load_config(_config(tmp_path))
    assert not list(out.rglob("*.tmp*"))
    # the classification task's test confusion matrix agrees with the summary's accuracy
    confusion = json.loads((out / "confusion_test.json").read_text())
    counts = np.array(confusion["counts"])
    assert counts.shape == (2, 2) and confusion["classes"] == ["0", "1"]
    assert np.trace(counts) / counts.sum() == pytest.approx(summary["test_accuracy"], abs=1e-6)
    assert summary["test_accuracy_class_1"] == pytest.approx(counts[1, 1] / counts[1].sum())
    assert (out / "plots" / "confusion_test.png").stat().st_size > 0


def test_same_config_and_seed_give_bit_identical_metrics(tmp_path):
    cfg = config_lib.load_config(_config(tmp_path, epochs=3))
    run(cfg, tmp_path / "a", quiet=True)
    run(cfg, tmp_path / "b", quiet=True)
    assert _rows(tmp_path / "a") == _rows(tmp_path / "b")
    a, b = _arrays(tmp_path / "a"), _arrays(tmp_path / "b")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_resume_after_sigkill_is_bit_identical(tmp_path):
    epochs = 150
    path = _config(tmp_path, epochs=epochs)
    reference = tmp_path / "reference"
    run(config_lib.load_config(path), reference, quiet=True)

    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "lecturenn.cli", "run", str(path), "--out", str(killed)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    # a run in progress lives in killed.partial; killed appears only when it has finished
    latest = killed.with_name("killed.partial") / "checkpoints" / "latest"
    while time.monotonic() < deadline and proc.poll() is None:
        if latest.exists() and int(latest.read_text().strip().split("_")[1]) >= 5:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed: make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    steps_done = int(latest.read_text().strip().split("_")[1])
    assert steps_done < epochs and not killed.exists()

    resumed = subprocess.run(
        [sys.executable, "-m", "lecturenn.cli", "run", str(path), "--resume", str(killed)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    a, b = _arrays(reference), _arrays(killed)
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    rows = (killed / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == list(range(1, epochs + 1))


def test_a_second_run_into_a_used_folder_is_refused(tmp_path, capsys):
    path = _config(tmp_path, epochs=1)
    assert main(["run", str(path), "--out", str(tmp_path / "r"), "--quiet"]) == 0
    assert main(["run", str(path), "--out", str(tmp_path / "r")]) == 2
    assert "--resume" in capsys.readouterr().err
    assert (
        main(
            ["run", str(path), "--resume", str(tmp_path / "r"), "--set", "optim.learning_rate=0.3"]
        )
        == 2
    )
    assert "config differs" in capsys.readouterr().err


def test_resume_accepts_a_run_whose_config_predates_a_new_default_field(tmp_path):
    path = _config(tmp_path, epochs=1)
    out = tmp_path / "r"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    saved = out / "config.toml"
    text = saved.read_text()
    assert "[parallel]" in text
    # a run folder written before the [parallel] section existed
    saved.write_text(text.split("[parallel]")[0])
    assert main(["run", str(path), "--resume", str(out), "--quiet"]) == 0


def test_a_run_with_parameter_averaging_extends_to_the_run_of_all_its_epochs(tmp_path):
    # the moving average and its step count live in the optimizer state: a run of 2 epochs
    # continued to 5 must keep them, or its kept (averaged) parameters drift from a 5-epoch run's
    short, longer = (_config(tmp_path, epochs=n, name=f"e{n}.toml") for n in (2, 5))
    for path in (short, longer):  # average_decay is an [optim] key: it goes before [train]
        path.write_text(path.read_text().replace("[train]", "average_decay = 0.9\n[train]"))
    assert main(["run", str(short), "--out", str(tmp_path / "extended"), "--quiet"]) == 0
    assert main(["run", str(longer), "--resume", str(tmp_path / "extended"), "--quiet"]) == 0
    assert main(["run", str(longer), "--out", str(tmp_path / "whole"), "--quiet"]) == 0
    a, b = _arrays(tmp_path / "extended"), _arrays(tmp_path / "whole")
    assert a.keys() == b.keys() and any("average" in k for k in a), sorted(a)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert _rows(tmp_path / "extended") == _rows(tmp_path / "whole")


def test_a_run_folder_another_process_is_writing_is_refused(tmp_path, capsys):
    import fcntl

    path = _config(tmp_path, epochs=1)
    out = tmp_path / "r"
    staging = tmp_path / "r.partial"  # where a run in progress writes
    staging.mkdir()
    fd = os.open(staging / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # what a running `lecturenn run --out r` holds
    try:
        assert main(["run", str(path), "--out", str(out), "--quiet"]) == 2
        assert "holds an unfinished run" in capsys.readouterr().err
        assert main(["run", str(path), "--out", str(out), "--quiet", "--overwrite"]) == 2
        assert "another lecturenn process is writing" in capsys.readouterr().err
        assert not out.exists() and list(staging.iterdir()) == [staging / ".lock"]
    finally:
        os.close(fd)
    # released (the writer died): --overwrite starts again
    assert main(["run", str(path), "--out", str(out), "--quiet", "--overwrite"]) == 0
    assert (out / "summary.json").exists() and not staging.exists()


def test_corrupt_checkpoint_is_refused_with_its_file_named(tmp_path, capsys):
    path = _config(tmp_path, epochs=2)
    out = tmp_path / "r"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    latest = out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip()
    arrays = latest / "arrays.npz"
    arrays.write_bytes(arrays.read_bytes()[:-100])
    metrics = (out / "metrics.jsonl").read_bytes()
    longer = _config(tmp_path, epochs=3, name="longer.toml")
    # more epochs may be asked for when continuing a run: the corrupt checkpoint stops it,
    # before any file of the run is touched
    assert main(["run", str(longer), "--resume", str(out)]) == 2
    assert "arrays.npz" in capsys.readouterr().err
    assert main(["run", str(path), "--resume", str(out)]) == 2
    assert "arrays.npz" in capsys.readouterr().err
    assert (out / "metrics.jsonl").read_bytes() == metrics
    assert config_lib.load_config(out / "config.toml").train.epochs == 2


def test_nan_loss_exits_2_with_one_line_and_writes_no_summary(tmp_path, capsys):
    path = _config(tmp_path, epochs=3)
    out = tmp_path / "r"
    code = main(["run", str(path), "--out", str(out), "--set", "train.input_noise=1e38"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "training loss became nan in epoch 1" in err and err.count("\n") == 0
    assert not (out / "summary.json").exists()


def test_divergence_keeps_the_last_good_checkpoint(tmp_path):
    import jax
    import jax.numpy as jnp
    import optax

    from lecturenn.models import mlp
    from lecturenn.train import checkpoint, epochs, loop
    from lecturenn.train.step import make_step

    model = mlp.make(mlp.MLPConfig(input_dim=2, num_classes=2, hidden=(4,)))
    data = {"x": jnp.ones((32, 2)), "y": jnp.zeros(32, jnp.int32)}
    step = make_step(model, optax.sgd(0.1), jit=False)
    real = epochs.shuffled(step, num_examples=32, batch_size=8)
    calls = []

    def epoch_fn(*args):
        calls.append(1)
        out = real(*args)
        return (*out[:3], jnp.nan if len(calls) == 3 else out[3], out[4])

    checkpointer = checkpoint.Checkpointer(tmp_path / "ckpt")
    with pytest.raises(loop.DivergedError, match="epoch 3.*last good checkpoint is kept"):
        loop.fit(
            model,
            optax.sgd(0.1),
            data,
            epochs=5,
            batch_size=8,
            key=jax.random.PRNGKey(0),
            epoch_fn=epoch_fn,
            checkpointer=checkpointer,
        )
    assert (tmp_path / "ckpt" / "latest").read_text().strip() == "step_00000002"


def test_halve_lr_on_plateau_halves_after_each_non_improving_epoch(tmp_path):
    path = _config(tmp_path, epochs=8)
    out = tmp_path / "r"
    run(
        config_lib.load_config(path, ["train.halve_lr_on_plateau=true", "train.monitor=loss"]),
        out,
        quiet=True,
    )
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    scale, best = 1.0, float("inf")
    for row in rows:
        assert row["lr_scale"] == scale
        if row["val_loss"] < best:
            best = row["val_loss"]
        else:
            scale /= 2
    assert any(r["lr_scale"] < 1 for r in rows) or all(
        b["val_loss"] < a["val_loss"] for a, b in zip(rows, rows[1:], strict=False)
    )


@pytest.mark.parametrize("driver", ["scan", "loop"])
def test_diagnostics_are_logged_and_plotted(tmp_path, driver):
    out = tmp_path / "r"
    run(
        config_lib.load_config(
            _config(tmp_path, epochs=2), ["train.diagnostics=true", f"train.driver={driver}"]
        ),
        out,
        quiet=True,
    )
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert set(row["grad_norms"]) == {"['layers'][0]['W']", "['layers'][1]['W']"}
    assert len(row["saturation"]) == 1 and 0 <= row["saturation"][0] <= 1
    assert (out / "plots" / "grad_norms.png").exists()
    assert (out / "plots" / "activations.png").exists()


def test_report_compares_runs_in_a_table_and_a_plot(tmp_path, capsys):
    for name, lr in (("slow", "0.01"), ("fast", "0.3")):
        assert (
            main(
                [
                    "run",
                    str(_config(tmp_path, epochs=2)),
                    "--out",
                    str(tmp_path / name),
                    "--quiet",
                    "--set",
                    f"optim.learning_rate={lr}",
                ]
            )
            == 0
        )
    capsys.readouterr()
    plot = tmp_path / "cmp.png"
    assert (
        main(["report", str(tmp_path / "slow"), str(tmp_path / "fast"), "--plot", str(plot)]) == 0
    )
    out = capsys.readouterr().out
    assert "| slow |" in out and "| fast |" in out and "test_accuracy" in out
    assert plot.stat().st_size > 0
    assert main(["report", str(tmp_path)]) == 2


def test_sweep_cli_ranks_trials_by_validation_metric(tmp_path, capsys):
    space = tmp_path / "space.toml"
    space.write_text('"optim.learning_rate" = {log_uniform = [0.01, 1.0]}\n')
    out = tmp_path / "sweep"
    assert (
        main(
            [
                "sweep",
                str(_config(tmp_path, epochs=2)),
                "--trials",
                "3",
                "--space",
                str(space),
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    lines = (out / "trials.jsonl").read_text().splitlines()
    assert len(lines) == 3
    assert "learning_rate" in capsys.readouterr().out


def test_parallel_data_config_runs_on_8_emulated_devices(tmp_path):
    """`parallel.data = 8` in a config: same metrics as one device within float tolerance."""
    path = _config(tmp_path, epochs=2)
    script = (
        "import json, sys\n"
        "from lecturenn.experiments import config as c\n"
        "from lecturenn.experiments.runner import run\n"
        "cfg = c.load_config(sys.argv[1], sys.argv[3:])\n"
        "print(json.dumps(run(cfg, sys.argv[2], quiet=True)))\n"
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    results = []
    for n in (1, 8):
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                script,
                str(path),
                str(tmp_path / f"d{n}"),
                f"parallel.data={n}",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert results[0]["val_loss"] == pytest.approx(results[1]["val_loss"], rel=1e-4)
    assert results[0]["test_accuracy"] == pytest.approx(results[1]["test_accuracy"], abs=0.01)


def test_init_options_reach_the_initializer_and_constant_init_diagnostics_work(tmp_path):
    """init = "constant" with init_options: every weight equal, so each layer's activations are
    equal too, and the diagnostics' histograms still get a usable range."""
    import jax

    from lecturenn.experiments.tasks import classify

    cfg = config_lib.load_config(
        _config(tmp_path, epochs=1),
        [
            'model.init="constant"',
            "model.init_options={value = 0.01}",
            "train.diagnostics=true",
            'model.activation="sigmoid"',
        ],
    )
    params, _ = classify.build_model(cfg.model, (2,), 2).init(jax.random.PRNGKey(0))
    assert all(np.all(np.asarray(layer["W"]) == np.float32(0.01)) for layer in params["layers"])
    out = tmp_path / "r"
    run(cfg, out, quiet=True)
    assert (out / "plots" / "activations.png").exists()


def test_test_time_flip_changes_evaluation_not_training(tmp_path):
    cnn = """name = "tta"
[data]
name = "digits"
preprocess = "none"
augment_flip = true
test_time_flip = {flip}
[model]
kind = "cnn"
channels = [4]
dense = 8
[optim]
name = "adam"
learning_rate = 2e-3
[train]
epochs = 1  # one epoch: both runs end with the same parameters
batch_size = 64
checkpoint = false
"""
    rows, summaries = {}, {}
    for flip in ("false", "true"):
        path = tmp_path / f"tta_{flip}.toml"
        path.write_text(cnn.format(flip=flip))
        out = tmp_path / flip
        summaries[flip] = run(config_lib.load_config(path), out, quiet=True)
        rows[flip] = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        counts = np.array(json.loads((out / "confusion_test.json").read_text())["counts"])
        assert np.trace(counts) / counts.sum() == pytest.approx(
            summaries[flip]["test_accuracy"], abs=1e-6
        )
    assert [r["train_loss"] for r in rows["false"]] == [r["train_loss"] for r in rows["true"]]
    assert rows["false"][-1]["val_loss"] != rows["true"][-1]["val_loss"]
    assert summaries["false"]["test_loss"] != summaries["true"]["test_loss"]
    # the flipped run also reports the unflipped accuracy: the other run's, same parameters
    assert "test_accuracy_no_flip" not in summaries["false"]
    assert summaries["true"]["test_accuracy_no_flip"] == pytest.approx(
        summaries["false"]["test_accuracy"], abs=1e-6
    )


def test_without_validation_the_checkpoint_keeps_the_latest_params_as_best(tmp_path):
    out = tmp_path / "run"
    path = _config(tmp_path, epochs=3, extra="")
    path.write_text(
        path.read_text().replace('name = "xor"\n', 'name = "xor"\nval_fraction = 0.0\n')
    )
    summary = run(config_lib.load_config(path), out, quiet=True)
    assert summary["best_epoch"] == 3 and "val_accuracy" not in summary
    arrays = _arrays(out)
    params = {k: v for k, v in arrays.items() if k.startswith("params")}
    assert params
    for name, value in params.items():
        np.testing.assert_array_equal(arrays["best_" + name], value)
