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

and each under three malloc settings: ``lecturenn`` (what ``import lecturenn`` sets,
lecturenn/_malloc.py), ``glibc`` (glibc's own, ``LECTURENN_MALLOC_DEFAULTS=0``) and ``one_arena``
(lecturenn's earlier setting: one arena for every thread, no mmap'd blocks, no trimming below
1 GiB). A setting is process-wide and cannot be undone, so each round runs this script once per
setting in a child process (``--malloc SETTING``, one round, its own compilations), the order of
the settings reversed every other round.

Writes benchmarks/results/step_call.json: per setting and model, [median, min, max] over the
rounds of the milliseconds and of the minor page faults per step, the step program's temporary
buffer (XLA's ``memory_analysis``), the bytes of its outputs, and the load average around each
child.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

import jax
from bench_models import BATCHES, Bench
from timing import block, machine, spread, write_json

from lecturenn import _malloc
from lecturenn.cli import Parser
from lecturenn.train.step import make_step


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def per_step(fn, number: int, batches: int = 1) -> tuple[float, float]:
    """(seconds, minor page faults) per step of ``number`` calls of ``fn``, each ``batches``
    steps."""
    faults, start = minor_faults(), time.perf_counter()
    for _ in range(number):
        fn()
    fn.sync()
    steps = number * batches
    return (time.perf_counter() - start) / steps, (minor_faults() - faults) / steps


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


class Epochs:
    """The scan epoch as a zero-argument call."""

    def __init__(self, bench: Bench):
        self.epoch, self.out = bench.epoch(), None

    def __call__(self):
        self.out = self.epoch()

    def sync(self):
        block(self.out)


def measure(name: str, rounds: int, number: int) -> dict:
    """One setting's figures for one model (in the process of that setting)."""
    bench = Bench(name)
    calls = {
        "fresh": Calls(bench, chained=False, donate=False),
        "chained": Calls(bench, chained=True, donate=False),
        "donated": Calls(bench, chained=True, donate=True),
        "scan1": Calls(bench, chained=True, donate=False, loop=True),
    }
    epoch = Epochs(bench)
    for call in (*calls.values(), epoch):  # compile, then one untimed round: the heap settles
        call()
        call.sync()
    for call in calls.values():
        per_step(call, number)
    samples = {k: [] for k in (*calls, "scan")}
    for _ in range(rounds):
        for key, call in calls.items():
            samples[key].append(per_step(call, number))
        samples["scan"].append(per_step(epoch, 1, BATCHES))
    c = calls["chained"]
    compiled = c.step.lower(c.params, c.state, c.opt_state, bench.batch, bench.key).compile()
    out_bytes = sum(a.nbytes for a in jax.tree_util.tree_leaves((bench.params, bench.opt_state)))
    return {
        "ms_per_step": {k: [1e3 * t for t, _ in v] for k, v in samples.items()},
        "page_faults_per_step": {k: [f for _, f in v] for k, v in samples.items()},
        "temp_buffer_bytes": compiled.memory_analysis().temp_size_in_bytes,
        "params_and_optimizer_state_bytes": out_bytes,
    }


# each setting: the environment its child process starts with; "one_arena" is lecturenn's earlier
# setting (every thread sharing one arena), given as glibc's environment variables
SETTINGS = {
    "lecturenn": {},
    "glibc": {_malloc.OPT_OUT: "0"},
    "one_arena": {
        "MALLOC_ARENA_MAX": "1",
        "MALLOC_MMAP_MAX_": "0",
        "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
    },
}


def child(setting: str, models: list[str], number: int) -> dict:
    """This script run for one round under ``setting``, in a process of its own."""
    env = {k: v for k, v in os.environ.items() if k != _malloc.OPT_OUT}
    done = subprocess.run(
        [sys.executable, __file__, "--malloc", setting, "--number", str(number), "--only", *models],
        env={**env, **SETTINGS[setting]},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary_line(setting: str, name: str, row: dict) -> str:
    return f"{setting:10s} {name} " + "  ".join(
        f"{k} {v[0]:.1f} ms ({f[0]:.0f} faults)"
        for (k, v), f in zip(
            row["ms_per_step_median_min_max"].items(),
            row["page_faults_per_step_median_min_max"].values(),
            strict=True,
        )
    )


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--number", type=int, default=10, help="steps per timed call")
    parser.add_argument("--only", nargs="*", default=["lstm_ptb_small", "cnn_fashion"])
    parser.add_argument(
        "--malloc",
        choices=[*SETTINGS, "all"],
        default="all",
        help="one setting in this process (one round, JSON on stdout), or all in child processes",
    )
    args = parser.parse_args()
    if args.malloc != "all":
        expected = args.malloc == "lecturenn"  # the others tune malloc from the environment
        if bool(_malloc.applied) != expected:
            parser.error(f"--malloc {args.malloc}: the process's malloc settings differ")
        print(json.dumps({name: measure(name, 1, args.number) for name in args.only}))
        return
    rounds = {setting: [] for setting in SETTINGS}
    loads = []
    for round_ in range(args.rounds):
        order = list(SETTINGS) if round_ % 2 == 0 else list(SETTINGS)[::-1]
        for setting in order:
            before = os.getloadavg()
            rounds[setting].append(child(setting, args.only, args.number))
            loads.append({"setting": setting, "before": before, "after": os.getloadavg()})
    out = {}
    for setting, results in rounds.items():
        out[setting] = {}
        for name in args.only:
            first = results[0][name]
            row = {
                f"{key}_median_min_max": {
                    k: spread([r[name][key][k][0] for r in results]) for k in first[key]
                }
                for key in ("ms_per_step", "page_faults_per_step")
            }
            row["temp_buffer_bytes"] = first["temp_buffer_bytes"]
            row["params_and_optimizer_state_bytes"] = first["params_and_optimizer_state_bytes"]
            out[setting][name] = row
            print(summary_line(setting, name, row), flush=True)
    payload = {
        "machine": machine(),
        "rounds": args.rounds,
        "number": args.number,
        "settings": {
            "lecturenn": {name: value for name, _, value, _ in _malloc.DEFAULTS},
            "glibc": f"{_malloc.OPT_OUT}=0: glibc's own",
            "one_arena": SETTINGS["one_arena"],
        },
        "load_average_1_5_15_min": loads,
        "malloc": out,
    }
    print(write_json("step_call", payload))


if __name__ == "__main__":
    main()
