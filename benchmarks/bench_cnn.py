"""Images/s of the Fashion-MNIST CNN's training step: hand-written backprop vs jax.grad vs PyTorch.

    python benchmarks/bench_cnn.py            # writes benchmarks/results/cnn.json

Same net in all three (conv 32 → BN → relu → pool → conv 64 → BN → relu → pool → dense 128 →
dropout 0.4 → 10, no conv bias under batch norm), same batch (128 × 28×28×1), plain SGD; PyTorch
on CPU with 2 threads. Also one epoch of 10 batches through make_epoch's "scan" and "loop"
drivers (REFERENCES.md: lax.conv inside lax.scan can be slow on XLA CPU).
Goals (issue 7): manual ≤ 1.1× jax.grad time; lecturenn ≥ 1.0× PyTorch images/s.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from timing import machine, time_calls, write_json

from lecturenn.models import cnn
from lecturenn.optim.transforms import sgd
from lecturenn.train.loop import make_epoch
from lecturenn.train.step import make_step

BATCH = 128
CFG = cnn.CNNConfig(
    input_shape=(28, 28, 1),
    num_classes=10,
    channels=(32, 64),
    dense=128,
    dropout=0.4,
    batchnorm=True,
)


def torch_step(x: np.ndarray, y: np.ndarray):
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
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    yt = torch.from_numpy(y.astype(np.int64))
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(xt), yt)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--number", type=int, default=10)
    args = parser.parse_args()

    model = cnn.make(CFG)
    key = jax.random.PRNGKey(0)
    params, state = model.init(key)
    opt = sgd(0.01)
    opt_state = opt.init(params)
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, BATCH).astype(np.int32)
    batch = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
    steps = {g: make_step(model, opt, g) for g in ("manual", "autodiff")}
    fns = {g: (lambda s=s: s(params, state, opt_state, batch, key)) for g, s in steps.items()}
    fns["pytorch"] = torch_step(x, y)
    seconds = time_calls(fns, repeats=args.repeats, number=args.number)

    ten = {"x": jnp.tile(batch["x"], (10, 1, 1, 1)), "y": jnp.tile(batch["y"], 10)}
    epochs = {
        d: make_epoch(model, opt, grads="manual", batch_size=BATCH, driver=d)
        for d in ("scan", "loop")
    }
    epoch_seconds = time_calls(
        {d: (lambda e=e: e(params, state, opt_state, ten, key)) for d, e in epochs.items()},
        repeats=3,
        number=1,
    )
    result = {
        "batch_size": BATCH,
        "images_per_second": {k: BATCH / v for k, v in seconds.items()},
        "step_seconds": seconds,
        "manual_over_autodiff_time": seconds["manual"] / seconds["autodiff"],
        "manual_over_pytorch_images_per_second": seconds["pytorch"] / seconds["manual"],
        "epoch_10_batches_seconds": epoch_seconds,
        "scan_over_loop_time": epoch_seconds["scan"] / epoch_seconds["loop"],
        "machine": machine(),
    }
    print(write_json("cnn", result))
    print({k: v for k, v in result.items() if k != "machine"})


if __name__ == "__main__":
    main()
