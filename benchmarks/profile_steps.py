"""Where a training step's time goes: per-operation times from a ``jax.profiler`` trace, each
operation classified from the compiled program's HLO.

    python benchmarks/profile_steps.py [--only lstm_ptb_small cnn_fashion] [--calls 10] [--top 8]
    # writes benchmarks/results/profile.json (--out NAME: NAME.json)

For each model (bench_models.py's networks at their configs' sizes, plus two MLPs of
bench_grads.py, batch 128: 1024×3 relu and 256×2 tanh, where hand-written/jax.grad is furthest
from 1) and each way of computing the gradient (hand-written,
``jax.grad``), the jitted step is compiled, called ``--calls`` times under
``jax.profiler.trace(create_perfetto_trace=True)``, and the trace's XLA events are summed per
operation as *self* time (an event's duration minus the events nested inside it on the same
thread). Each operation is looked up in the compiled HLO text (``.compile().as_text()``): a
fusion is classed by what its fused computation holds, in this order: convolution, matmul
(``dot``), scatter, sort, reduction, else elementwise; an unfused instruction by its opcode;
``while`` is the loop's own bookkeeping (its body's operations are counted apart).
``share_by_thread`` says how the operations' time spread over the runtime's threads. The profiler
adds a cost per event, so the figures are shares of the traced time, beside the step's untraced
wall time (median of interleaved rounds).
"""

from __future__ import annotations

import collections
import gzip
import json
import os
import re
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
from bench_models import DEFAULT, Bench
from timing import block, machine, spread, time_rounds, write_json

from lecturenn.cli import Parser
from lecturenn.models import mlp
from lecturenn.optim.transforms import sgd
from lecturenn.train.step import make_step

MLPS = {"mlp_1024x3": (1024, 3, "relu"), "mlp_256x2_tanh": (256, 2, "tanh")}
MODELS = (*DEFAULT, *MLPS)
CATEGORIES = ("convolution", "matmul", "scatter", "sort", "reduction", "elementwise")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\S+?)(?:\{[^}]*\})?\s+([\w\-]+)\(")
_CALLS = re.compile(r"calls=%?([\w.\-]+)")
_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")


def hlo_table(text: str) -> dict[str, tuple[str, str]]:
    """{instruction name: (category, output shape)} for every instruction of a compiled HLO
    module's text."""
    bodies: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        head = _COMPUTATION.match(line)
        if head and "=" not in line.split("{")[0]:
            current = head.group(1)
            bodies[current] = []
        elif current is not None:
            bodies[current].append(line)

    def opcodes(computation: str, seen=()) -> set[str]:
        found = set()
        for line in bodies.get(computation, []):
            m = _INSTRUCTION.match(line)
            if m:
                found.add(m.group(3))
                called = _CALLS.search(line)
                if called and called.group(1) not in seen and m.group(3) in ("fusion", "call"):
                    found |= opcodes(called.group(1), (*seen, computation))
        return found

    table = {}
    for lines in bodies.values():
        for line in lines:
            m = _INSTRUCTION.match(line)
            if not m:
                continue
            name, shape, opcode = m.groups()
            inner = {opcode}
            called = _CALLS.search(line)
            if opcode in ("fusion", "call", "custom-call") and called:
                inner = opcodes(called.group(1))
            table[name] = (classify(opcode, inner), shape)
    return table


def classify(opcode: str, inner: set[str]) -> str:
    if opcode == "while":
        return "while (loop bookkeeping)"
    if opcode in ("copy", "transpose", "bitcast", "copy-start", "copy-done"):
        return "copy/transpose"
    for category, ops in (
        ("convolution", {"convolution"}),
        ("matmul", {"dot"}),
        ("scatter", {"scatter"}),
        ("sort", {"sort"}),
        ("reduction", {"reduce", "reduce-window", "select-and-scatter"}),
    ):
        if inner & ops:
            return category
    return "elementwise"


def self_times(events: list[dict]) -> dict[str, float]:
    """{name: self time in µs} of the complete ("X") events: per thread, each event's duration
    minus that of the events nested inside it."""
    per_thread = collections.defaultdict(list)
    for e in events:
        if e.get("ph") == "X" and "dur" in e:
            per_thread[(e.get("pid"), e.get("tid"))].append(e)
    out: dict[str, float] = collections.defaultdict(float)
    for thread_events in per_thread.values():
        thread_events.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack: list[list] = []  # [end, name, duration, time of nested events]
        for e in thread_events:
            while stack and e["ts"] >= stack[-1][0]:
                _, name, dur, nested = stack.pop()
                out[name] += dur - nested
            if stack:
                stack[-1][3] += e["dur"]
            stack.append([e["ts"] + e["dur"], e["name"], e["dur"], 0.0])
        for _, name, dur, nested in stack:
            out[name] += dur - nested
    return dict(out)


def mlp_step(width: int, depth: int, activation: str):
    cfg = mlp.MLPConfig(
        input_dim=784, num_classes=10, hidden=(width,) * depth, activation=activation
    )
    model = mlp.make(cfg)
    key = jax.random.PRNGKey(0)
    params, state = model.init(key)
    opt = sgd(0.01)
    batch = {
        "x": jax.random.normal(key, (128, 784), jnp.float32),
        "y": jax.random.randint(key, (128,), 0, 10),
    }
    args = (params, state, opt.init(params), batch, key)
    return {g: (make_step(model, opt, g), args) for g in ("manual", "autodiff")}


def bench_steps(name: str):
    bench = Bench(name)
    return {grads: bench.jitted_step(grads) for grads in ("manual", "autodiff")}


def profile(step, args, calls: int, top: int = 8) -> dict:
    table = hlo_table(step.lower(*args).compile().as_text())
    block(step(*args))
    with tempfile.TemporaryDirectory() as folder:
        with jax.profiler.trace(folder, create_perfetto_trace=True):
            for _ in range(calls):
                block(step(*args))
        trace = next(Path(folder).rglob("perfetto_trace.json.gz"))
        data = json.loads(gzip.decompress(trace.read_bytes()))
    events = data["traceEvents"] if isinstance(data, dict) else data
    times = {n: t for n, t in self_times(events).items() if n in table}
    per_thread: dict = collections.defaultdict(float)
    for e in events:
        if e.get("ph") == "X" and e.get("name") in table:
            per_thread[e.get("tid")] += e.get("dur", 0.0)
    thread_total = sum(per_thread.values()) or 1.0
    total = sum(times.values())
    by_category: dict[str, float] = collections.defaultdict(float)
    for op, t in times.items():
        by_category[table[op][0]] += t
    largest = sorted(times.items(), key=lambda kv: -kv[1])[:top]
    return {
        "traced_op_ms_per_step": total / calls / 1e3,
        # how the operations' time (with nested events) spreads over the runtime's threads
        "share_by_thread": [
            round(t / thread_total, 3) for t in sorted(per_thread.values(), reverse=True)
        ],
        "share_by_category": {
            c: round(t / total, 4) for c, t in sorted(by_category.items(), key=lambda kv: -kv[1])
        },
        "top_operations": [
            {
                "op": op,
                "category": table[op][0],
                "shape": table[op][1],
                "ms_per_step": t / calls / 1e3,
            }
            for op, t in largest
        ],
    }


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--top", type=int, default=8, help="largest operations kept per step")
    parser.add_argument("--out", default="profile", help="benchmarks/results/OUT.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    rows = {}
    for name in args.only:
        steps = mlp_step(*MLPS[name]) if name in MLPS else bench_steps(name)
        wall = time_rounds(
            {g: (lambda s=s, a=a: s(*a)) for g, (s, a) in steps.items()},
            repeats=args.rounds,
            number=5,
        )
        rows[name] = {
            g: {
                "wall_ms_per_step": [1e3 * v for v in spread(wall[g])],
                **profile(s, a, args.calls, args.top),
            }
            for g, (s, a) in steps.items()
        }
        for g, r in rows[name].items():
            shares = ", ".join(f"{c} {100 * v:.0f}%" for c, v in r["share_by_category"].items())
            print(f"{name:15s} {g:8s} {r['wall_ms_per_step'][0]:7.1f} ms: {shares}", flush=True)
    print(
        write_json(
            args.out,
            {
                "benchmark": "training_step_profile",
                "machine": machine(),
                "load_average_1_5_15_min": {"before": load_before, "after": os.getloadavg()},
                "calls_traced": args.calls,
                "models": rows,
            },
        )
    )


if __name__ == "__main__":
    main()
