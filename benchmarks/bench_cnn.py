"""The Fashion-MNIST CNN's training speed: hand-written backprop vs ``jax.grad`` vs PyTorch, step
and epoch, and lecturenn's two epoch drivers.

    python benchmarks/bench_cnn.py [--rounds 3]     # writes benchmarks/results/cnn.json

The network is configs/cnn_fashion.toml's at batch 128 of 28×28 images. Step and epoch against
PyTorch are measured as in bench_models.py (its ``measure``: PyTorch 2.13 in a child process with
the faster of 1 and 2 threads, interleaved by round, [median, min, max] over the rounds, ratios
taken round by round). Besides, lecturenn's epoch of the same batches with each driver of
train/epochs.py, interleaved by round: "scan" (the whole epoch one compiled ``lax.scan``, what
``lecturenn run`` uses) and "loop" (one jitted step per batch called from Python).
Goals: ≥ 1.5× PyTorch, step and epoch; manual ≤ 0.8× the time of ``jax.grad``.
"""

from __future__ import annotations

import os

from bench_models import BATCHES, Bench, measure
from timing import machine, ratio_spread, spread, time_rounds, write_json

from lecturenn.cli import Parser
from lecturenn.train import epochs
from lecturenn.train.step import make_step

NAME = "cnn_fashion"


def drivers(rounds: int) -> dict:
    """Seconds of one epoch with each driver, and scan / loop, per round."""
    bench = Bench(NAME)
    step = make_step(bench.model, bench.optimizer, "manual", jit=False)
    fns = {}
    for driver in ("scan", "loop"):
        epoch = epochs.shuffled(
            step,
            num_examples=BATCHES * bench.batch_size,
            batch_size=bench.batch_size,
            driver=driver,
        )
        fns[driver] = lambda e=epoch: e(
            bench.params, bench.state, bench.opt_state, bench.data, bench.key
        )
    before = os.getloadavg()
    samples = time_rounds(fns, repeats=rounds, number=1)
    return {
        "epoch_batches": BATCHES,
        "epoch_seconds_median_min_max": {d: spread(s) for d, s in samples.items()},
        "scan_over_loop_time": ratio_spread(samples["scan"], samples["loop"]),
        "load_average_1_5_15_min": {"before": before, "after": os.getloadavg()},
    }


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--number", type=int, default=5, help="steps per timed call")
    args = parser.parse_args()
    load_before = os.getloadavg()
    row = measure(NAME, args.rounds, args.number)
    row["load_average_1_5_15_min"] = {"before": load_before, "after": os.getloadavg()}
    result = {
        "benchmark": "cnn_training_speed",
        "machine": machine(),
        "rounds": args.rounds,
        "goals": {"speedup_over_pytorch_min": 1.5, "manual_over_autodiff_time_max": 0.8},
        NAME: row,
        "epoch_drivers": drivers(args.rounds),
    }
    print(write_json("cnn", result))
    for key in ("manual_over_autodiff_time", "step_speedup_over_pytorch"):
        print(key, row.get(key))
    print("epoch over PyTorch", row.get("epoch_speedup_over_pytorch"))
    print("scan / loop time", result["epoch_drivers"]["scan_over_loop_time"])


if __name__ == "__main__":
    main()
