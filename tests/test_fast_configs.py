"""The time-to-target recipes of configs/fast/ (benchmarks/bench_time_to_target.py).

Each target of the benchmark names a committed fast config; each fast config is a valid config
that extends a committed full recipe, keeps its model kind and its dataset (the lecture's model,
the same data), and says in its header what it changes and why it exists.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from lecturenn.experiments import config as config_lib
from lecturenn.experiments.tasks.base import make_optimizer

ROOT = Path(__file__).resolve().parents[1]
FAST = sorted((ROOT / "configs" / "fast").glob("*.toml"))


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module("bench_time_to_target")


def test_every_target_has_its_fast_config_and_every_fast_config_a_target(bench):
    targets = {t.config for t in bench.TARGETS}
    assert targets == {p.stem for p in FAST}


@pytest.mark.parametrize("path", FAST, ids=[p.stem for p in FAST])
def test_a_fast_config_is_its_full_recipe_with_a_stated_change(path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Time to target"), "the header says what the recipe is for"
    raw = config_lib.read_toml(path)
    base = ROOT / "configs" / f"{path.stem}.toml"
    assert f'extends = "../{base.name}"' in text
    full = config_lib.read_toml(base)
    assert raw["model"]["kind"] == full["model"]["kind"]
    assert raw["data"]["name"] == full["data"]["name"]
    cfg = config_lib.load_config(path)
    assert cfg.name == f"fast_{path.stem}"
    make_optimizer(cfg.optim, steps_per_epoch=100)  # the schedule's options are its kind's
