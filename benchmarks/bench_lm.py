"""The recurrent language models' training speed: hand-written BPTT vs ``jax.grad`` vs PyTorch,
step and epoch, for the PTB-small, character and PTB-medium LSTMs.

    python benchmarks/bench_lm.py [--rounds 3]     # writes benchmarks/results/lm.json

Each model is measured as in bench_models.py (its ``measure``: the committed config's network at
its real sizes on random batches; lecturenn and PyTorch 2.13 in a child process with the faster
of 1 and 2 threads, interleaved by round; [median, min, max] over the rounds, ratios taken round
by round; the load average before and after each model). Besides, per round, the process CPU
seconds of the manual step (all threads: less sensitive to other jobs than wall time). The
medium LSTM (configs/ptb_lstm_medium.toml, 2×650, 35 steps, dropout 0.5) adds an estimate of
its 39 epochs on this CPU: windows per epoch × 39 × the median manual step.
Goals: ≥ 1.5× PyTorch, step and epoch; manual ≤ 0.8× the time of ``jax.grad``.
"""

from __future__ import annotations

import os
import time

from bench_models import Bench, measure, summary_line
from timing import each_with_load, machine, spread, time_rounds, write_json

from lecturenn.cli import Parser

MODELS = ("lstm_ptb_small", "char_lstm", "lstm_ptb_medium")
PTB_TRAIN_TOKENS = 929_589  # ptb.train.txt with one <eos> per line


def lm_row(name: str, rounds: int, number: int) -> dict:
    bench = Bench(name)
    row = measure(name, rounds, number, bench)
    step = bench.step("manual")
    cpu = time_rounds({"manual": step}, repeats=rounds, number=number, clock=time.process_time)
    row["manual_cpu_seconds_median_min_max"] = spread(cpu["manual"])
    if name == "lstm_ptb_medium":
        cfg = bench.cfg
        windows = (PTB_TRAIN_TOKENS // cfg.train.batch_size - 1) // cfg.data.num_steps
        manual = row["seconds_median_min_max"]["manual"][0]
        row["estimated_hours_of_all_epochs"] = cfg.train.epochs * windows * manual / 3600
    return row


def report(name: str, r: dict) -> str:
    text = summary_line(name, r)
    if "estimated_hours_of_all_epochs" in r:
        text += f", all epochs ≈ {r['estimated_hours_of_all_epochs']:.1f} h"
    return text


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--number", type=int, default=5, help="steps per timed call")
    parser.add_argument("--only", nargs="*", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args()
    load_before = os.getloadavg()
    rows = each_with_load(args.only, lambda n: lm_row(n, args.rounds, args.number), report)
    path = write_json(
        "lm",
        {
            "benchmark": "recurrent_lm_training_speed",
            "machine": machine(),
            "load_average_1_5_15_min": {"before": load_before, "after": os.getloadavg()},
            "rounds": args.rounds,
            "goals": {"speedup_over_pytorch_min": 1.5, "manual_over_autodiff_time_max": 0.8},
            "models": rows,
        },
    )
    print(path)


if __name__ == "__main__":
    main()
