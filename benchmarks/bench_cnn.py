"""Images/s of the Fashion-MNIST CNN's training step: hand-written backprop vs jax.grad vs PyTorch.

    python benchmarks/bench_cnn.py            # writes benchmarks/results/cnn.json

Same net in all three (conv 32 → BN → relu → pool → conv 64 → BN → relu → pool → dense 128 →
dropout 0.4 → 10, no conv bias under batch norm), same batch (128 × 28×28×1), plain SGD; PyTorch
on CPU with 2 threads. Two measurements for each framework:
- one training step called from Python (the median of repeated calls), and
- one epoch of EPOCH_BATCHES distinct batches the way each trains: lecturenn's epochs.shuffled
  ("scan": the whole epoch one compiled lax.scan, the runner's default; "loop": one jitted step
  per batch from Python) and PyTorch's usual Python loop over the batches.
PyTorch runs in a child process started by this script, after the JAX timings: timed in the same
process and interleaved with XLA's calls, its OpenMP threads and XLA's thread pool compete for
the 2 cores and slow both sides (the first version of this benchmark did that).
Goals: manual ≤ 1.1× jax.grad time; lecturenn ≥ 1.0× PyTorch images/s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from timing import machine, time_calls, write_json

from lecturenn.models import cnn
from lecturenn.optim.transforms import sgd
from lecturenn.train import epochs
from lecturenn.train.step import make_step

BATCH = 128
EPOCH_BATCHES = 20
CFG = cnn.CNNConfig(
    input_shape=(28, 28, 1),
    num_classes=10,
    channels=(32, 64),
    dense=128,
    dropout=0.4,
    batchnorm=True,
)


def batches(n: int) -> tuple[np.ndarray, np.ndarray]:
    """n batches of random images (NHWC) and labels, the same in both processes."""
    rng = np.random.default_rng(0)
    x = rng.random((n * BATCH, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, n * BATCH).astype(np.int32)
    return x, y


def torch_timings(repeats: int, number: int) -> dict:
    """Seconds per step and per epoch of EPOCH_BATCHES batches for the same net in PyTorch."""
    import torch
    from torch import nn

    torch.set_num_threads(2)
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(7 * 7 * 64, 128),
        nn.ReLU(),
        nn.Dropout(0.4),
        nn.Linear(128, 10),
    )
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    x, y = batches(EPOCH_BATCHES)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    yt = torch.from_numpy(y.astype(np.int64))
    loss_fn = nn.CrossEntropyLoss()

    def step(i: int = 0):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(xt[i * BATCH : (i + 1) * BATCH]), yt[i * BATCH : (i + 1) * BATCH])
        loss.backward()
        opt.step()
        return loss.item()

    def epoch():
        order = torch.randperm(EPOCH_BATCHES)
        return [step(int(i)) for i in order][-1]

    seconds = time_calls({"step": step}, repeats=repeats, number=number)
    seconds.update(time_calls({"epoch": epoch}, repeats=3, number=1))
    return seconds


def torch_in_child(repeats: int, number: int) -> dict:
    cmd = [sys.executable, __file__, "--torch-child", f"--repeats={repeats}", f"--number={number}"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--number", type=int, default=10)
    parser.add_argument("--torch-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_child:
        print(json.dumps(torch_timings(args.repeats, args.number)))
        return

    model = cnn.make(CFG)
    key = jax.random.PRNGKey(0)
    params, state = model.init(key)
    opt = sgd(0.01)
    opt_state = opt.init(params)
    x, y = batches(EPOCH_BATCHES)
    data = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
    batch = {"x": data["x"][:BATCH], "y": data["y"][:BATCH]}
    steps = {g: make_step(model, opt, g) for g in ("manual", "autodiff")}
    fns = {g: (lambda s=s: s(params, state, opt_state, batch, key)) for g, s in steps.items()}
    seconds = time_calls(fns, repeats=args.repeats, number=args.number)
    epoch_fns = {
        d: epochs.shuffled(
            make_step(model, opt, "manual", jit=False),
            num_examples=data["y"].shape[0],
            batch_size=BATCH,
            driver=d,
        )
        for d in ("scan", "loop")
    }
    epoch_seconds = time_calls(
        {d: (lambda e=e: e(params, state, opt_state, data, key)) for d, e in epoch_fns.items()},
        repeats=3,
        number=1,
    )
    started = time.perf_counter()
    torch_seconds = torch_in_child(args.repeats, args.number)
    seconds["pytorch"] = torch_seconds["step"]
    epoch_seconds["pytorch"] = torch_seconds["epoch"]
    images = EPOCH_BATCHES * BATCH
    result = {
        "batch_size": BATCH,
        "epoch_batches": EPOCH_BATCHES,
        "step_seconds": seconds,
        "step_images_per_second": {k: BATCH / v for k, v in seconds.items()},
        "epoch_seconds": epoch_seconds,
        "epoch_images_per_second": {k: images / v for k, v in epoch_seconds.items()},
        "manual_over_autodiff_time": seconds["manual"] / seconds["autodiff"],
        "manual_step_over_pytorch_step_images_per_second": seconds["pytorch"] / seconds["manual"],
        "scan_epoch_over_pytorch_epoch_images_per_second": (
            epoch_seconds["pytorch"] / epoch_seconds["scan"]
        ),
        "scan_over_loop_time": epoch_seconds["scan"] / epoch_seconds["loop"],
        "pytorch_child_seconds": time.perf_counter() - started,
        "machine": machine(),
    }
    print(write_json("cnn", result))
    print({k: v for k, v in result.items() if k != "machine"})


if __name__ == "__main__":
    main()
