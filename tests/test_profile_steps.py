"""benchmarks/profile_steps.py's two pieces of logic: self time of nested trace events, and the
class of each operation of a compiled program (from its HLO text)."""

from __future__ import annotations

import importlib
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def prof(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module("profile_steps")


def event(name, ts, dur, tid=1):
    return {"ph": "X", "name": name, "ts": ts, "dur": dur, "pid": 1, "tid": tid}


def test_self_time_subtracts_nested_events_on_the_same_thread_only(prof):
    events = [
        event("while", 0, 100),
        event("body_a", 10, 30),  # nested in while
        event("inner", 15, 5),  # nested in body_a
        event("body_b", 50, 20),  # nested in while
        event("after", 100, 7),  # starts as while ends: not nested
        event("other_thread", 20, 60, tid=2),
        {"ph": "M", "name": "thread_name"},  # metadata is ignored
    ]
    times = prof.self_times(events)
    assert times == {
        "while": 50,
        "body_a": 25,
        "inner": 5,
        "body_b": 20,
        "after": 7,
        "other_thread": 60,
    }


def test_hlo_classes_of_a_compiled_program(prof):
    def f(a, b, ids, x):
        return (
            jnp.tanh(a @ b).sum(),
            jnp.zeros(8).at[ids].add(1.0),
            jax.lax.conv(x, x, (1, 1), "SAME"),
        )

    args = (jnp.ones((16, 16)), jnp.ones((16, 16)), jnp.arange(4), jnp.ones((1, 1, 5, 5)))
    table = prof.hlo_table(jax.jit(f).lower(*args).compile().as_text())
    classes = {category for category, _ in table.values()}
    assert {"matmul", "scatter", "convolution"} <= classes
    shapes = {shape for category, shape in table.values() if category == "matmul"}
    assert any("16,16" in s for s in shapes)
    assert prof.classify("while", {"while"}) == "while (loop bookkeeping)"
    assert prof.classify("fusion", {"add", "exponential"}) == "elementwise"
    assert prof.classify("fusion", {"reduce", "dot"}) == "matmul"
