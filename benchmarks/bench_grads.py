"""Steps/s of the jitted MLP training step: hand-written backprop vs jax.grad, side by side.

    python benchmarks/bench_grads.py            # writes benchmarks/results/grads.json
    python benchmarks/bench_grads.py --same-program   # → grads_same_program.json
    taskset -c 0 python benchmarks/bench_grads.py --out grads_one_core
    XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=false \
        python benchmarks/bench_grads.py --out grads_sequential_scheduler

Per shape, the two steps are timed in interleaved rounds (``--repeats``, ``--number`` calls
each); every figure is [median, min, max] over the rounds, the ratio taken round by round, with
the load average before and after the shape. Goal: manual / autodiff time ≤ 1.0 for every shape.
``--same-program`` is the control: the hand-written step compiled twice (two ``jax.jit``
objects, the same program) and timed against itself and against ``jax.grad`` the same way, so
that a ratio between two different programs can be told from what two copies of one give.
"""

from __future__ import annotations

import itertools
import os

import jax
import jax.numpy as jnp
from timing import each_with_load, machine, ratio_spread, spread, time_rounds, write_json

from lecturenn.cli import Parser
from lecturenn.models import mlp
from lecturenn.optim.transforms import sgd
from lecturenn.train.step import make_step

SHAPES = [(64, 2), (256, 2), (256, 4), (1024, 3), (128, 6)]
GOAL = 1.0


def bench(
    width: int, depth: int, batch_size: int, activation: str, repeats: int, same_program=False
) -> dict:
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
    if same_program:
        steps["manual_copy"] = make_step(model, opt, "manual")
    samples = time_rounds(
        {g: (lambda s=s: s(params, state, opt_state, batch, key)) for g, s in steps.items()},
        repeats=repeats,
    )
    row = {
        "width": width,
        "depth": depth,
        "batch_size": batch_size,
        "activation": activation,
        "seconds_median_min_max": {g: spread(v) for g, v in samples.items()},
        "manual_over_autodiff_time": ratio_spread(samples["manual"], samples["autodiff"]),
    }
    if same_program:
        row["manual_over_manual_copy_time"] = ratio_spread(
            samples["manual"], samples["manual_copy"]
        )
        row["manual_copy_over_autodiff_time"] = ratio_spread(
            samples["manual_copy"], samples["autodiff"]
        )
    return row


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--same-program", action="store_true", help="the control: manual vs a second compilation"
    )
    parser.add_argument(
        "--out",
        help="results file name (default: grads, or grads_same_program with --same-program)",
    )
    args = parser.parse_args()
    cases = {
        f"{width}x{depth}_{activation}": (width, depth, activation)
        for (width, depth), activation in itertools.product(SHAPES, ["relu", "tanh"])
    }

    def report(name: str, row: dict) -> str:
        manual, auto = (row["seconds_median_min_max"][g][0] for g in ("manual", "autodiff"))
        ratio = row["manual_over_autodiff_time"]
        text = (
            f"{name:12s} manual {1 / manual:8.0f}/s  autodiff {1 / auto:8.0f}/s  "
            f"ratio {ratio[0]:.3f} [{ratio[1]:.3f}, {ratio[2]:.3f}]"
        )
        if args.same_program:
            copy = row["manual_over_manual_copy_time"]
            text += f"  manual/copy {copy[0]:.3f} [{copy[1]:.3f}, {copy[2]:.3f}]"
        return text

    load_before = os.getloadavg()
    rows = each_with_load(
        cases,
        lambda name: bench(
            *cases[name][:2], 128, cases[name][2], args.repeats, same_program=args.same_program
        ),
        report,
    )
    worst = max(r["manual_over_autodiff_time"][0] for r in rows.values())
    path = write_json(
        args.out or ("grads_same_program" if args.same_program else "grads"),
        {
            "benchmark": "mlp_step_manual_vs_autodiff"
            + ("_with_a_second_compilation_of_manual" if args.same_program else ""),
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
