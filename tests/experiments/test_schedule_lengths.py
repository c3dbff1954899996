"""Schedule lengths given in epochs (``decay_epochs``, ``step_size_epochs``, ``warmup_epochs``):
turned into steps from the data, so a schedule spans the same epochs whatever the batch size."""

import json
import math
import tomllib
from pathlib import Path

import pytest

from lecturenn.errors import UserError
from lecturenn.experiments import config as config_lib
from lecturenn.experiments.runner import run
from lecturenn.experiments.tasks.base import make_optimizer, schedule_in_steps

XOR = """name = "xor_cosine"
[model]
kind = "mlp"
hidden = [8]
[data]
name = "xor"
num_examples = 400
[optim]
name = "sgd"
learning_rate = 0.2
schedule = {{ kind = "cosine", decay_epochs = 4 }}
[train]
epochs = 4
batch_size = {batch_size}
"""


def test_epoch_lengths_become_steps_and_nested_warmup_too():
    assert schedule_in_steps({"kind": "cosine", "decay_epochs": 18}, 468) == {
        "kind": "cosine",
        "decay_steps": 8424,
    }
    assert (
        schedule_in_steps({"kind": "step_decay", "step_size_epochs": 2.5, "factor": 0.1}, 10)[
            "step_size"
        ]
        == 25
    )
    warm = {"kind": "warmup", "warmup_epochs": 0.01, "then": {"kind": "cosine", "decay_epochs": 3}}
    assert schedule_in_steps(warm, 100) == {
        "kind": "warmup",
        "warmup_steps": 1,  # at least one step
        "then": {"kind": "cosine", "decay_steps": 300},
    }
    # piecewise_epoch_decay gets the epoch's length; a table without epoch options is kept
    piecewise = {"kind": "piecewise_epoch_decay", "decay_start_epoch": 5, "factor": 0.5}
    assert schedule_in_steps(piecewise, 7) == {**piecewise, "steps_per_epoch": 7}
    plain = {"kind": "cosine", "decay_steps": 11}
    assert schedule_in_steps(plain, 7) == plain and schedule_in_steps(None, 7) is None


@pytest.mark.parametrize(
    "schedule, steps, message",
    [
        ({"kind": "cosine", "decay_epochs": 2, "decay_steps": 9}, 5, "not both"),
        ({"kind": "cosine", "decay_epochs": 0}, 5, "decay_epochs must be a number > 0"),
        ({"kind": "cosine", "decay_epochs": "all"}, 5, "got 'all'"),
        ({"kind": "cosine", "decay_epochs": 2}, None, "give decay_steps instead"),
        ({"kind": "step_decay", "decay_epochs": 2, "factor": 0.5}, 5, "no length 'decay_epochs'"),
    ],
)
def test_bad_epoch_lengths_are_refused_with_the_key_named(schedule, steps, message):
    with pytest.raises(UserError, match=message):
        schedule_in_steps(schedule, steps)


def test_the_cosine_over_the_run_ends_with_the_run_at_any_batch_size(tmp_path):
    """The rate each epoch starts at, as the run's metrics record it: α0·½(1 + cos(π(e−1)/4))
    for epochs e = 1..4, at batch 16 and at batch 50 (a different number of steps an epoch)."""
    for batch_size in (16, 50):
        path = tmp_path / f"xor_{batch_size}.toml"
        path.write_text(XOR.format(batch_size=batch_size))
        out = tmp_path / f"run_{batch_size}"
        run(config_lib.load_config(path), out, quiet=True)
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        rates = [r["lr"] for r in rows if "lr" in r]
        expected = [0.2 * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)]
        assert rates == pytest.approx(expected, rel=1e-6)


def test_make_optimizer_refuses_epochs_when_the_epoch_length_is_unknown():
    cfg = config_lib.load_config_dict(tomllib.loads(XOR.format(batch_size=16)))
    with pytest.raises(UserError, match="decay_epochs"):
        make_optimizer(cfg.optim)


def test_the_fast_fashion_recipe_spans_its_18_epochs_of_468_steps():
    """configs/fast/cnn_fashion_3conv.toml's cosine, given in epochs, is the 8,424-step cosine it
    was measured with (60,000 images in batches of 128: 468 steps an epoch)."""
    root = Path(__file__).resolve().parents[2]
    cfg = config_lib.load_config(root / "configs" / "fast" / "cnn_fashion_3conv.toml")
    steps = 60_000 // cfg.train.batch_size
    assert schedule_in_steps(cfg.optim.schedule, steps) == {"kind": "cosine", "decay_steps": 8424}
    assert cfg.train.epochs * steps == 8424
