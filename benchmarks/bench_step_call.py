"""Why one training step called from Python costs more than the same step inside a scan epoch.

    python benchmarks/bench_step_call.py [--rounds 5] [--only lstm_ptb_small cnn_fashion]

For each model of bench_models.py (its committed config's network at real sizes, random batches)
this times, per step, interleaved by round:

- ``fresh``: the jitted step called again and again on the same inputs (what bench_models.py's
  "step" times): every call returns new parameters and optimizer state in newly allocated
  buffers;
- ``chained``: each call fed the previous call's outputs, as a Python training loop does;
- ``donated``: chained, with the parameters and the optimizer state donated
  (``jax.jit(..., donate_argnums=(0, 2))``), so XLA may write the new values into the old buffers;
- ``scan1``: chained, the step jitted as a ``lax.scan`` of length 1 (the step's program compiled
  as a loop body, one step a call);
- ``scan``: one step of an epoch of ``BATCHES`` steps run as one ``lax.scan`` (the way
  ``lecturenn run`` trains; the epoch's time / BATCHES).

Writes benchmarks/results/step_call.json: [median, min, max] milliseconds per step over the
rounds, the bytes of the step's outputs, and the load average before and after.
"""

from __future__ import annotations

import statistics
import time

import jax
from bench_models import BATCHES, Bench
from timing import block, each_with_load, machine, write_json

from lecturenn.cli import Parser
from lecturenn.train.step import make_step


def per_step(fn, number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    fn.sync()
    return (time.perf_counter() - start) / number


def as_loop_body(step):
    """The same step, as the body of a ``lax.scan`` that runs it once."""

    def looped(params, state, opt_state, batch, key):
        def body(carry, _):
            return step(*carry, batch, key)[:3], None

        (params, state, opt_state), _ = jax.lax.scan(body, (params, state, opt_state), length=1)
        return params, state, opt_state, None, None

    return looped


class Calls:
    """A zero-argument step call that keeps its own (params, state, opt_state)."""

    def __init__(self, bench: Bench, chained: bool, donate: bool, loop: bool = False):
        step = make_step(bench.model, bench.optimizer, "manual", jit=False)
        self.bench = bench
        self.state = bench.initial_state(step)
        if loop:
            step = as_loop_body(step)
        self.step = jax.jit(step, donate_argnums=(0, 2) if donate else ())
        self.chained = chained
        copy = lambda t: jax.tree_util.tree_map(lambda a: a.copy(), t)  # noqa: E731
        self.params, self.opt_state = copy(bench.params), copy(bench.opt_state)
        self.out = None

    def __call__(self):
        b = self.bench
        self.out = self.step(self.params, self.state, self.opt_state, b.batch, b.key)
        if self.chained:
            self.params, _, self.opt_state, _, _ = self.out

    def sync(self):
        block(self.out)


def measure(name: str, rounds: int, number: int) -> dict:
    bench = Bench(name)
    calls = {
        "fresh": Calls(bench, chained=False, donate=False),
        "chained": Calls(bench, chained=True, donate=False),
        "donated": Calls(bench, chained=True, donate=True),
        "scan1": Calls(bench, chained=True, donate=False, loop=True),
    }
    epoch = bench.epoch()
    for call in calls.values():
        call()
        call.sync()
    block(epoch())
    samples = {k: [] for k in (*calls, "scan")}
    for _ in range(rounds):
        for key, call in calls.items():
            samples[key].append(1e3 * per_step(call, number))
        start = time.perf_counter()
        block(epoch())
        samples["scan"].append(1e3 * (time.perf_counter() - start) / BATCHES)
    out_bytes = sum(a.nbytes for a in jax.tree_util.tree_leaves((bench.params, bench.opt_state)))
    return {
        "ms_per_step_median_min_max": {
            k: [statistics.median(v), min(v), max(v)] for k, v in samples.items()
        },
        "params_and_optimizer_state_bytes": out_bytes,
    }


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--number", type=int, default=10, help="steps per timed call")
    parser.add_argument("--only", nargs="*", default=["lstm_ptb_small", "cnn_fashion"])
    args = parser.parse_args()
    rows = each_with_load(
        args.only,
        lambda name: measure(name, args.rounds, args.number),
        lambda name, row: (
            f"{name} "
            + "  ".join(f"{k} {v[0]:.1f} ms" for k, v in row["ms_per_step_median_min_max"].items())
        ),
    )
    print(write_json("step_call", {"machine": machine(), "rounds": args.rounds, "models": rows}))


if __name__ == "__main__":
    main()
