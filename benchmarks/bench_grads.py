"""Steps/s of the jitted MLP training step: hand-written backprop vs jax.grad, side by side.

    python benchmarks/bench_grads.py            # writes benchmarks/results/grads.json

Per shape, the two steps are timed in interleaved rounds (``--repeats``, ``--number`` calls
each); every figure is [median, min, max] over the rounds, the ratio taken round by round, with
the load average before and after the shape. Goal: manual / autodiff time ≤ 1.0 for every shape.
"""

from __future__ import annotations

import argparse
import itertools
import os

import jax
import jax.numpy as jnp
from timing import each_with_load, machine, ratio_spread, spread, time_rounds, write_json

from lecturenn.models import mlp
from lecturenn.optim.transforms import sgd
from lecturenn.train.step import make_step

SHAPES = [(64, 2), (256, 2), (256, 4), (1024, 3), (128, 6)]
GOAL = 1.0


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
    samples = time_rounds(
        {g: (lambda s=s: s(params, state, opt_state, batch, key)) for g, s in steps.items()},
        repeats=repeats,
    )
    return {
        "width": width,
        "depth": depth,
        "batch_size": batch_size,
        "activation": activation,
        "seconds_median_min_max": {g: spread(v) for g, v in samples.items()},
        "manual_over_autodiff_time": ratio_spread(samples["manual"], samples["autodiff"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    cases = {
        f"{width}x{depth}_{activation}": (width, depth, activation)
        for (width, depth), activation in itertools.product(SHAPES, ["relu", "tanh"])
    }

    def report(name: str, row: dict) -> str:
        manual, auto = (row["seconds_median_min_max"][g][0] for g in ("manual", "autodiff"))
        ratio = row["manual_over_autodiff_time"]
        return (
            f"{name:12s} manual {1 / manual:8.0f}/s  autodiff {1 / auto:8.0f}/s  "
            f"ratio {ratio[0]:.3f} [{ratio[1]:.3f}, {ratio[2]:.3f}]"
        )

    load_before = os.getloadavg()
    rows = each_with_load(
        cases, lambda name: bench(*cases[name][:2], 128, cases[name][2], args.repeats), report
    )
    worst = max(r["manual_over_autodiff_time"][0] for r in rows.values())
    path = write_json(
        "grads",
        {
            "benchmark": "mlp_step_manual_vs_autodiff",
            "machine": machine(),
            "load_average_1_5_15_min": {"before": load_before, "after": os.getloadavg()},
            "rounds": args.repeats,
            "goal_max_time_ratio": GOAL,
            "worst_median_time_ratio": worst,
            "rows": rows,
        },
    )
    print(f"worst median manual/autodiff time ratio {worst:.3f} (goal <= {GOAL}) -> {path}")


if __name__ == "__main__":
    main()
