"""Data parallelism: 8 emulated CPU devices and 2 gloo-connected processes against one device.

The device count is fixed when JAX starts, so both run in child processes (tests/train/
_dist_worker.py) that print their results as JSON; every wait is bounded and children are killed
on failure.
"""

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from lecturenn.errors import UserError
from lecturenn.gradcheck import assert_trees_close
from lecturenn.train import parallel

WORKER = Path(__file__).with_name("_dist_worker.py")
ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 120


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_ENABLE_X64")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["JAX_PLATFORMS"] = "cpu"
    env.update(extra)
    return env


def _last_json(stdout: str) -> dict:
    return json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_make_mesh_rejects_more_devices_than_visible():
    with pytest.raises(UserError, match="xla_force_host_platform_device_count"):
        parallel.make_mesh(jax.device_count() + 1)
    assert parallel.make_mesh(1).axis_names == ("data",)


@pytest.mark.parametrize(
    "args", [("127.0.0.1:1234", None, 0), (None, 2, None), ("127.0.0.1:1234", 2, 2)]
)
def test_init_distributed_rejects_incomplete_or_bad_arguments(args):
    with pytest.raises(UserError):
        parallel.init_distributed(*args)


def test_eight_emulated_devices_equal_one_device():
    proc = subprocess.run(
        [sys.executable, str(WORKER), "devices"],
        env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=8"),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = _last_json(proc.stdout)
    assert out["device_count"] == 8
    # float32: the all-reduce sums the eight shards' gradients in another order than one matmul.
    assert_trees_close(out["scan_eight"], out["one"], rtol=1e-5, atol=1e-6)
    assert_trees_close(out["loop_eight"], out["one"], rtol=1e-5, atol=1e-6)
    assert out["scan_replicated"] and out["loop_replicated"]
    assert out["batch_specs"] == ['["data"]']
    assert out["shard_rows"] == [96 // 8]
    assert "divisible by the number of devices (8)" in out["indivisible_error"]


def test_two_processes_with_gloo_fit_like_one_process():
    """Two processes joined by ``init_distributed``, one CPU device each, run ``loop.fit`` with
    the data-parallel epoch (as parallel.py's script does) and end where one process ends."""
    port, count = _free_port(), 2
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "process", str(port), str(i), str(count)],
            env=_env(JAX_ENABLE_X64="1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]
    outputs = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
            assert proc.returncode == 0, stderr[-3000:]
            outputs.append(_last_json(stdout))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    spec = importlib.util.spec_from_file_location("_dist_worker", WORKER)
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    model, optimizer, _, _, data, _ = worker.problem()
    params, _, history = worker.fit_two_epochs(model, optimizer, data)
    expected = worker.host_leaves(params)

    assert sorted(o["process_index"] for o in outputs) == list(range(count))
    for out in outputs:
        assert out["device_count"] == count * out["local_device_count"]
        # float64 over gloo: only the order of the gradient sums differs from one process.
        assert_trees_close(out["params"], expected, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(
            out["train_loss"], [r["train_loss"] for r in history.epochs], rtol=1e-10
        )
