"""The LSTM and CNN training steps called alone, in a fresh process: does the process's state
change their time? (docs/performance.md, "A step called alone".)

    python benchmarks/probe_step_alone.py                  # each step alone, 3 rounds of 5 calls
    python benchmarks/probe_step_alone.py --after rnn_steps  # ... then after 10 tanh-RNN LM steps
    python benchmarks/probe_step_alone.py --after trace      # ... then after tracing the LSTM step
    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 \\
        python benchmarks/probe_step_alone.py              # glibc keeps freed memory

Prints milliseconds per step of each round; writes nothing.
"""

from __future__ import annotations

import tempfile

import jax
from bench_models import Bench, seconds
from timing import block

from lecturenn.cli import Parser


def rounds(fn) -> list[float]:
    return [round(1e3 * seconds(fn, 5), 1) for _ in range(3)]


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--after", choices=["rnn_steps", "trace"])
    args = parser.parse_args()
    steps = {name: Bench(name).step("manual") for name in ("lstm_ptb_small", "cnn_fashion")}
    for fn in steps.values():
        block(fn())
    print("alone:", {name: rounds(fn) for name, fn in steps.items()}, flush=True)
    if args.after == "rnn_steps":
        other = Bench("rnn_lm").step("manual")
        for _ in range(10):
            block(other())
    elif args.after == "trace":
        with tempfile.TemporaryDirectory() as folder:
            with jax.profiler.trace(folder, create_perfetto_trace=True):
                for _ in range(3):
                    block(steps["lstm_ptb_small"]())
    if args.after:
        print(f"after {args.after}:", {name: rounds(fn) for name, fn in steps.items()})


if __name__ == "__main__":
    main()
