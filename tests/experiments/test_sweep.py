"""``lecturenn sweep``: search spaces, grouping by shape, and the sweep of a config."""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lecturenn.cli import main
from lecturenn.errors import UserError
from lecturenn.experiments import config as config_lib
from lecturenn.experiments import sweep
from lecturenn.experiments.tasks import classify
from lecturenn.experiments.tasks.base import make_optimizer
from lecturenn.models import mlp
from lecturenn.train import loop

SPACE = {
    "optim.learning_rate": {"log_uniform": [1e-4, 1e-1]},
    "optim.l2": {"uniform": [0.0, 0.01]},
    "train.seed": {"int": [0, 3]},
    "model.hidden": {"choice": [[64], [128]]},
}


def test_sample_trials_is_deterministic_and_stays_in_range():
    trials = sweep.sample_trials(SPACE, 200, seed=5)
    assert trials == sweep.sample_trials(SPACE, 200, seed=5)
    assert trials != sweep.sample_trials(SPACE, 200, seed=6)
    assert sweep.sample_trials(SPACE, 3, seed=5) == trials[:3]
    lrs = np.array([t["optim.learning_rate"] for t in trials])
    assert lrs.min() >= 1e-4 and lrs.max() <= 1e-1
    # Log-uniform: about a third of the draws in each decade.
    for low in (1e-4, 1e-3, 1e-2):
        assert 40 < np.sum((lrs >= low) & (lrs < 10 * low)) < 95
    assert {t["train.seed"] for t in trials} == {0, 1, 2, 3}
    assert all(0 <= t["optim.l2"] <= 0.01 for t in trials)
    assert {tuple(t["model.hidden"]) for t in trials} == {(64,), (128,)}


@pytest.mark.parametrize(
    "space",
    [
        {},
        {"optim.learning_rate": [1e-4, 1e-1]},
        {"optim.learning_rate": {"log_uniform": [0.0, 1.0]}},
        {"optim.learning_rate": {"normal": [0.0, 1.0]}},
        {"train.seed": {"int": [0.5, 3]}},
        {"optim.l2": {"uniform": [1.0, 0.0]}},
        {"model.hidden": {"choice": []}},
    ],
)
def test_bad_spaces_are_user_errors(space):
    with pytest.raises(UserError):
        sweep.sample_trials(space, 2, seed=0)


def test_group_by_shape_splits_only_on_shape_keys():
    trials = [
        {"optim.learning_rate": 0.1, "train.seed": 1, "model.hidden": [64]},
        {"optim.learning_rate": 0.2, "train.seed": 2, "model.hidden": [128]},
        {"optim.learning_rate": 0.3, "train.seed": 3, "model.hidden": [64]},
        {"optim.learning_rate": 0.3, "train.seed": 3, "model.hidden": [64], "model.dropout": 0.1},
    ]
    shared = sweep.vectorizable(mlp.MLPConfig)
    assert "model.dropout" in shared and "model.hidden" not in shared
    # a dropout rate is traced like the learning rate: it does not split a group
    assert sweep.group_by_shape(trials, shared) == [[0, 2, 3], [1]]


def test_traced_optimizer_matches_build_optimizer():
    optim_cfg = config_lib.OptimConfig(
        name="momentum",
        learning_rate=0.05,
        schedule={"kind": "step_decay", "step_size": 2, "factor": 0.5},
        clip_global_norm=1.0,
        l1=1e-3,
        l2=1e-2,
        options={"mu": 0.8},
    )
    reference = make_optimizer(optim_cfg)
    params = {"W": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.ones(3)}

    def traced(**values):
        return make_optimizer(dataclasses.replace(optim_cfg, **values), params)

    grads = [
        jax.tree_util.tree_map(lambda p, i=i: jnp.cos(p * (i + 1)) * 3, params) for i in range(4)
    ]

    @jax.jit
    def run(lr, l1, l2):
        opt = traced(learning_rate=lr, l1=l1, l2=l2)
        p, s, out = params, opt.init(params), []
        for g in grads:
            u, s = opt.update(g, s, p)
            p = optax.apply_updates(p, u)
            out.append(p)
        return out

    p, s = params, reference.init(params)
    expected = []
    for g in grads:
        u, s = reference.update(g, s, p)
        p = optax.apply_updates(p, u)
        expected.append(p)
    got = run(jnp.asarray(0.05), jnp.asarray(1e-3), jnp.asarray(1e-2))
    for a, b in zip(
        jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-12)


CONFIG = """
name = "tiny"
[data]
name = "xor"
num_examples = 240
val_fraction = 0.25
[model]
kind = "mlp"
hidden = [8]
activation = "tanh"
[optim]
name = "adam"
[train]
epochs = 3
batch_size = 20
"""


def test_run_sweep_writes_ranked_trials_that_match_single_runs(tmp_path):
    config_path = tmp_path / "tiny.toml"
    config_path.write_text(CONFIG)
    space_path = tmp_path / "space.toml"
    space_path.write_text(
        '"train.seed" = {int = [0, 100]}\n'
        "[optim]\nlearning_rate = {log_uniform = [1e-3, 1e-1]}\nl2 = {log_uniform = [1e-5, 1e-2]}\n"
        "[model]\nhidden = {choice = [[8], [12]]}\n"
    )
    space = sweep.load_space(space_path)
    assert set(space) == {"optim.learning_rate", "optim.l2", "train.seed", "model.hidden"}
    rows = sweep.run_sweep(config_path, 5, tmp_path / "out", space=space, seed=1)

    lines = (tmp_path / "out" / "trials.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["trial"] for line in lines) == list(range(5))
    assert len({r["group"] for r in rows}) == len({tuple(r["model.hidden"]) for r in rows})
    accuracies = [r["val_accuracy"] for r in rows]
    assert accuracies == sorted(accuracies, reverse=True)
    table = (tmp_path / "out" / "sweep.md").read_text().splitlines()
    assert [int(line.split("|")[2]) for line in table[6:]] == [r["trial"] for r in rows]
    # steps of a few thousand flops: each group's trials share one call of its program
    sizes = {g: sum(r["group"] == g for r in rows) for g in {r["group"] for r in rows}}
    assert all(r["trials_per_call"] == sizes[r["group"]] for r in rows)
    assert f"{sizes[0]} (group 0)" in table[2]

    # A trial equals one plain run of the config with its values, on the config's data split.
    row = rows[0]
    overrides = [
        f"optim.learning_rate={row['optim.learning_rate']!r}",
        f"optim.l2={row['optim.l2']!r}",
        f"model.hidden={json.dumps(row['model.hidden'])}",
    ]
    cfg = config_lib.load_config(config_path, overrides)
    setup = classify.build(cfg)
    params_shape, _ = jax.eval_shape(setup.model.init, jax.random.PRNGKey(0))
    _, _, history = loop.fit(
        setup.model,
        make_optimizer(cfg.optim, params_shape),
        setup.train,
        epochs=3,
        batch_size=20,
        key=jax.random.PRNGKey(row["train.seed"]),
        valid=setup.valid,
        evaluate=setup.evaluate,
    )
    assert row["best_epoch"] == history.best_epoch
    best = history.epochs[history.best_epoch - 1]
    assert math.isclose(row["val_loss"], best["val_loss"], rel_tol=1e-5)
    assert row["val_accuracy"] == pytest.approx(best["val_accuracy"], abs=1e-6)


def test_the_best_trial_is_an_ordinary_run_folder(tmp_path):
    from lecturenn.experiments.inference import load_run

    config_path = tmp_path / "tiny.toml"
    config_path.write_text(
        CONFIG.replace('activation = "tanh"', 'activation = "tanh"\ndropout = 0.1')
    )
    space_path = tmp_path / "space.toml"
    space_path.write_text(
        "[optim]\nlearning_rate = {log_uniform = [1e-3, 1e-1]}\n"
        "[model]\ndropout = {uniform = [0.0, 0.5]}\n"
    )
    rows = sweep.run_sweep(config_path, 4, tmp_path / "out", space=sweep.load_space(space_path))
    assert len({r["group"] for r in rows}) == 1  # dropout and lr vary: one program
    best = tmp_path / "out" / "best"
    summary = json.loads((best / "summary.json").read_text())
    assert summary["sweep_trial"]["model.dropout"] == rows[0]["model.dropout"]
    assert summary["val_accuracy"] == pytest.approx(rows[0]["val_accuracy"], abs=1e-6)
    assert "test_accuracy" in summary
    run = load_run(best)
    assert run.config.model.dropout == pytest.approx(rows[0]["model.dropout"])
    assert run.config.optim.learning_rate == pytest.approx(rows[0]["optim.learning_rate"])
    scores = loop.make_evaluate(run.model)(run.params, run.state, classify.build(run.config).valid)
    assert scores["accuracy"] == pytest.approx(summary["val_accuracy"], abs=1e-6)


def test_trials_one_per_call_rank_as_all_in_one_call(tmp_path, capsys):
    config_path = tmp_path / "tiny.toml"
    config_path.write_text(CONFIG)
    together = sweep.run_sweep(config_path, 3, tmp_path / "a", seed=2)
    alone = sweep.run_sweep(config_path, 3, tmp_path / "b", seed=2, per_call=1)
    assert [r["trial"] for r in alone] == [r["trial"] for r in together]
    for a, b in zip(alone, together, strict=True):
        assert (a["trials_per_call"], b["trials_per_call"]) == (1, 3)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
    with pytest.raises(SystemExit) as stop:
        main(["sweep", str(config_path), "--trials-per-call", "0"])
    assert stop.value.code == 2
    assert "argument --trials-per-call: want a positive integer or auto, got '0'" in (
        capsys.readouterr().err
    )


def test_run_sweep_needs_a_validation_split(tmp_path):
    config_path = tmp_path / "tiny.toml"
    config_path.write_text(CONFIG.replace("val_fraction = 0.25", "val_fraction = 0.0"))
    with pytest.raises(UserError, match="val_fraction"):
        sweep.run_sweep(config_path, 2, tmp_path / "out")
