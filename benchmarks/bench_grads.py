"""Steps/s of the jitted MLP training step: hand-written backprop vs jax.grad, side by side.

    python benchmarks/bench_grads.py            # writes benchmarks/results/grads.json

Goal: manual / autodiff time ratio ≤ 1.10 for every shape.
"""

from __future__ import annotations

import argparse
import itertools

import jax
import jax.numpy as jnp
from timing import machine, time_calls, write_json

from lecturenn.models import mlp
from lecturenn.optim.transforms import sgd
from lecturenn.train.step import make_step


def bench(width: int, depth: int, batch_size: int, activation: str, repeats: int) -> dict:
    cfg = mlp.MLPConfig(
        input_dim=784, num_classes=10, hidden=(width,) * depth, activation=activation
    )
    model = mlp.make(cfg)
    key = jax.random.PRNGKey(0)
    params, state = model.init(key)
    opt = sgd(0.01)
    opt_state = opt.init(params)
    batch = {
        "x": jax.random.normal(key, (batch_size, 784), jnp.float32),
        "y": jax.random.randint(key, (batch_size,), 0, 10),
    }
    steps = {g: make_step(model, opt, g) for g in ("manual", "autodiff")}
    seconds = time_calls(
        {g: (lambda s=s: s(params, state, opt_state, batch, key)) for g, s in steps.items()},
        repeats=repeats,
    )
    return {
        "width": width,
        "depth": depth,
        "batch_size": batch_size,
        "activation": activation,
        "manual_steps_per_s": 1 / seconds["manual"],
        "autodiff_steps_per_s": 1 / seconds["autodiff"],
        "manual_over_autodiff_time": seconds["manual"] / seconds["autodiff"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rows = []
    for (width, depth), activation in itertools.product(
        [(64, 2), (256, 2), (256, 4), (1024, 3), (128, 6)], ["relu", "tanh"]
    ):
        row = bench(width, depth, 128, activation, args.repeats)
        print(
            f"{width:5d}x{depth} {activation:5s} manual {row['manual_steps_per_s']:8.0f}/s  "
            f"autodiff {row['autodiff_steps_per_s']:8.0f}/s  "
            f"ratio {row['manual_over_autodiff_time']:.3f}"
        )
        rows.append(row)
    worst = max(r["manual_over_autodiff_time"] for r in rows)
    path = write_json(
        "grads",
        {
            "benchmark": "mlp_step_manual_vs_autodiff",
            "machine": machine(),
            "goal_max_time_ratio": 1.10,
            "worst_time_ratio": worst,
            "rows": rows,
        },
    )
    print(f"worst manual/autodiff time ratio {worst:.3f} -> {path}")


if __name__ == "__main__":
    main()
