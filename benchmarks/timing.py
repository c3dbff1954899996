"""Shared timing helpers for the benchmarks: compile first, then median over interleaved repeats."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

import jax

from lecturenn import _malloc
from lecturenn.experiments.provenance import cpu_model


def block(tree):
    return jax.tree_util.tree_map(
        lambda x: x.block_until_ready() if hasattr(x, "block_until_ready") else x, tree
    )


def time_rounds(
    fns: dict, *, repeats: int = 7, number: int = 20, clock=time.perf_counter
) -> dict[str, list[float]]:
    """{name: [seconds per call in each round]} of each zero-argument fn (compiled first),
    measured round-robin, every other round in reverse order, so that the candidates share the
    machine's state (thermal, caches, other load) fairly, and a ratio can be taken round by
    round. ``clock``: wall time by default;
    ``time.process_time`` gives the process's CPU seconds (all threads)."""
    for fn in fns.values():
        block(fn())
    samples = {name: [] for name in fns}
    for round_ in range(repeats):
        for name, fn in in_round_order(fns, round_):
            start = clock()
            for _ in range(number):
                out = fn()
            block(out)
            samples[name].append((clock() - start) / number)
    return samples


def in_round_order(fns: dict, round_: int) -> list:
    """The (name, fn) pairs of ``fns``, reversed in odd rounds: no candidate always runs first
    (or right after another)."""
    items = list(fns.items())
    return items if round_ % 2 == 0 else items[::-1]


def spread(values: list[float]) -> list[float]:
    """[median, min, max]."""
    return [statistics.median(values), min(values), max(values)]


def ratio_spread(numerator: list[float], denominator: list[float]) -> list[float]:
    """[median, min, max] over the rounds of numerator / denominator, round by round."""
    return spread([n / d for n, d in zip(numerator, denominator, strict=True)])


def time_calls(fns: dict, *, repeats: int = 7, number: int = 20, spread: bool = False):
    """Median seconds per call of each fn (:func:`time_rounds`). With ``spread``, also
    {name: [median, min, max]} over the rounds, so a ratio can be told from noise."""
    samples = time_rounds(fns, repeats=repeats, number=number)
    medians = {name: statistics.median(s) for name, s in samples.items()}
    if not spread:
        return medians
    return medians, {name: [medians[name], min(s), max(s)] for name, s in samples.items()}


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),  # fewer under taskset
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "malloc_settings": dict(_malloc.applied),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "load_average_1_5_15min": list(os.getloadavg()),
        "devices": [str(d) for d in jax.devices()],
    }


def write_json(name: str, payload: dict) -> Path:
    out = Path(__file__).parent / "results" / f"{name}.json"
    out.parent.mkdir(exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(out)
    return out


def each_with_load(names, measure, report) -> dict:
    """{name: measure(name)} with the load average before and after each, ``report(name, row)``
    printed as each one ends."""
    rows = {}
    for name in names:
        before = os.getloadavg()
        rows[name] = measure(name)
        rows[name]["load_average_1_5_15_min"] = {"before": before, "after": os.getloadavg()}
        print(report(name, rows[name]), flush=True)
    return rows
