"""The lm task: the truncated-BPTT epoch walks the windows in order carrying the state (checked
against a Python loop over the windows), windowed evaluation with a carried state equals one pass
over the whole stream, a uniform model scores perplexity = vocabulary size, config errors."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lecturenn.errors import UserError
from lecturenn.experiments import config as config_lib
from lecturenn.experiments.tasks import language
from lecturenn.experiments.tasks.base import make_epoch, optimizer_for
from lecturenn.models import rnn_lm
from lecturenn.optim.build import build_optimizer
from lecturenn.train.step import make_step

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 6


@pytest.fixture
def char_config(tmp_path):
    (tmp_path / "tiny.txt").write_text(TEXT)
    (tmp_path / "c.toml").write_text(
        f"""
name = "tiny"
[data]
name = "tinyshakespeare"
path = "{tmp_path / "tiny.txt"}"
num_steps = 5
eval_batch_size = 2
eval_num_steps = 4
[model]
kind = "rnn_lm"
embed_dim = 6
hidden_dim = 6
[optim]
name = "sgd"
learning_rate = 0.5
clip_global_norm = 5.0
schedule = {{ kind = "piecewise_epoch_decay", decay_start_epoch = 1, factor = 0.5 }}
[train]
batch_size = 3
monitor = "perplexity"
"""
    )
    return tmp_path / "c.toml"


def test_epoch_is_an_in_order_pass_over_windows_carrying_the_state(char_config):
    cfg = config_lib.load_config(char_config)
    setup = language.build(cfg)
    # the runner's steps_per_s and the per-epoch schedule count these windows
    assert setup.epoch == "streams" and setup.steps_per_epoch == setup.train["x"].shape[0]
    lm_cfg = rnn_lm.RNNLMConfig(vocab_size=len(set(TEXT)), embed_dim=6, hidden_dim=6)
    schedule = {**cfg.optim.schedule, "steps_per_epoch": setup.steps_per_epoch}
    optimizer = build_optimizer("sgd", 0.5, clip_global_norm=5.0, schedule=schedule)
    params, state = setup.model.init(jax.random.PRNGKey(0))
    opt_state = optimizer.init(params)
    key = jax.random.PRNGKey(1)
    epoch = make_epoch(
        setup,
        make_step(setup.model, optimizer_for(setup, setup.model, cfg.optim), jit=False),
        cfg.train,
    )
    new_params, new_state, _, loss, aux = epoch(params, state, opt_state, setup.train, key)
    assert new_state == {}
    row = setup.train_row(loss, aux)

    step = jax.jit(setup.model.manual_value_and_grad)
    lm_state, nlls = rnn_lm.zero_state(lm_cfg, 3), []
    keys = jax.random.split(key, setup.train["x"].shape[0])
    for w in range(setup.train["x"].shape[0]):
        batch = {"x": setup.train["x"][w], "y": setup.train["y"][w]}
        (_, (lm_state, a)), g = step(params, lm_state, batch, keys[w])
        updates, opt_state = optimizer.update(g, opt_state, params)
        params = optax.apply_updates(params, updates)
        nlls.append(float(a["nll"]))
    leaves = zip(
        jax.tree_util.tree_leaves(new_params), jax.tree_util.tree_leaves(params), strict=True
    )
    for got, want in leaves:
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert np.isclose(row["train_loss"], np.mean(nlls), rtol=1e-5)
    assert np.isclose(row["train_perplexity"], np.exp(row["train_loss"]), rtol=1e-6)


def test_windowed_evaluation_equals_one_pass_over_the_streams(char_config):
    cfg = config_lib.load_config(char_config)
    setup = language.build(cfg)
    params, state = setup.model.init(jax.random.PRNGKey(2))
    valid = setup.valid  # (W, 2, 4) windows of 2 streams
    got = setup.evaluate(params, state, valid)

    lm_cfg = rnn_lm.RNNLMConfig(vocab_size=len(set(TEXT)), embed_dim=6, hidden_dim=6)
    streams = jnp.concatenate(list(valid["x"]), axis=1)  # (2, W·4): the streams, unbroken
    targets = jnp.concatenate(list(valid["y"]), axis=1)
    logits, _ = rnn_lm.apply(lm_cfg, params, {}, streams)
    log_p = jax.nn.log_softmax(logits.astype(jnp.float64))
    nll = -float(jnp.take_along_axis(log_p, targets[..., None], -1).mean())
    assert np.isclose(got["loss"], nll, rtol=1e-5)
    assert np.isclose(got["perplexity"], np.exp(nll), rtol=1e-5)

    uniform = dict(params, out=jax.tree_util.tree_map(jnp.zeros_like, params["out"]))
    assert np.isclose(setup.evaluate(uniform, state, valid)["perplexity"], len(set(TEXT)))


def test_nplm_builds_on_the_same_corpus_and_scores_uniform_as_vocab_size(char_config):
    cfg = config_lib.load_config(char_config, ["model.kind=nplm", "model.context=3"])
    setup = language.build(cfg)
    assert setup.epoch == "shuffled" and setup.train["x"].shape[1] == 3
    params, state = setup.model.init(jax.random.PRNGKey(0))
    params["out"] = jax.tree_util.tree_map(jnp.zeros_like, params["out"])
    assert np.isclose(setup.evaluate(params, state, setup.valid)["perplexity"], len(set(TEXT)))


def test_accuracy_monitor_is_refused_when_the_config_is_read(char_config):
    with pytest.raises(UserError, match="train.monitor.*perplexity, loss"):
        config_lib.load_config(char_config, ["train.monitor=accuracy"])


def test_shipped_lm_configs_validate():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "configs"
    names = [
        "ptb_nplm",
        "ptb_rnn",
        "ptb_lstm_small",
        "ptb_lstm_medium",
        "char_shakespeare",
        "adding_problem",
    ]
    for name in names:
        path = root / f"{name}.toml"
        if path.exists():
            cfg = config_lib.load_config(path)
            assert dataclasses.is_dataclass(cfg.model)


def test_adding_with_fresh_data_trains_on_a_new_batch_every_step(tmp_path):
    """data.fresh: the step's batch is replaced by newly drawn sequences of the same size (so no
    sequence is seen twice), with input noise still applied on top when asked for."""
    from lecturenn.experiments.tasks import adding

    path = tmp_path / "adding.toml"
    path.write_text(
        '[data]\nname = "adding"\nlength = 12\nnum_train = 64\nnum_valid = 8\nnum_test = 8\n'
        'fresh = true\n[model]\nkind = "sequence_regressor"\ncell = "irnn"\nhidden_dim = 8\n'
        '[train]\nepochs = 1\nbatch_size = 16\nmonitor = "mse"\n'
    )
    setup = adding.build(config_lib.load_config(path))
    batch = jax.tree_util.tree_map(lambda a: a[:16], setup.train)
    one = setup.augment(jax.random.PRNGKey(0), batch)
    two = setup.augment(jax.random.PRNGKey(1), batch)
    assert one["x"].shape == batch["x"].shape and one["y"].shape == batch["y"].shape
    assert not np.array_equal(np.asarray(one["x"]), np.asarray(batch["x"]))
    assert not np.array_equal(np.asarray(one["x"]), np.asarray(two["x"]))
    np.testing.assert_allclose(
        np.sum(np.asarray(one["x"]).prod(-1), 1), np.asarray(one["y"]), rtol=1e-6
    )
    noisy = adding.build(config_lib.load_config(path, ["train.input_noise=0.1"]))
    assert not np.array_equal(
        np.asarray(noisy.augment(jax.random.PRNGKey(0), batch)["x"]), np.asarray(one["x"])
    )
    assert adding.build(config_lib.load_config(path, ["data.fresh=false"])).augment is None
