"""Sampling from a run folder: reproducible from the seed, and at a temperature near 0 it is the
greedy (argmax) continuation computed independently from the model's forward pass."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lecturenn.errors import UserError
from lecturenn.experiments import config as config_lib
from lecturenn.experiments import runner
from lecturenn.experiments.inference import evaluate_run, sample_run
from lecturenn.models import rnn_lm

TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\n" * 8
RNN = 'kind = "rnn_lm"\nembed_dim = 8\nhidden_dim = 8\nnum_layers = 1'
NPLM = 'kind = "nplm"\ncontext = {context}\nembed_dim = 4\nhidden_dim = 8\ndirect = true'


def _train_char_lm(folder, seed: int, model: str = RNN):
    (folder / "tiny.txt").write_text(TEXT)
    (folder / "c.toml").write_text(
        f"""
name = "tiny"
[data]
name = "tinyshakespeare"
path = "{folder / "tiny.txt"}"
num_steps = 8
eval_batch_size = 1
eval_num_steps = 8
[model]
{model}
[optim]
name = "adam"
learning_rate = 0.01
[train]
epochs = 2
batch_size = 4
monitor = "perplexity"
seed = {seed}
"""
    )
    cfg = config_lib.load_config(folder / "c.toml")
    runner.run(cfg, folder / "run", quiet=True)
    return folder / "run"


@pytest.fixture(scope="module")
def char_run(tmp_path_factory):
    return _train_char_lm(tmp_path_factory.mktemp("sample"), seed=0)


@pytest.fixture(scope="module")
def char_run_seed1(tmp_path_factory):
    return _train_char_lm(tmp_path_factory.mktemp("sample1"), seed=1)


def test_same_seed_same_text_and_another_seed_differs(char_run):
    a = sample_run(char_run, prime="ROMEO:", length=60, temperature=1.0, seed=3)
    b = sample_run(char_run, prime="ROMEO:", length=60, temperature=1.0, seed=3)
    c = sample_run(char_run, prime="ROMEO:", length=60, temperature=1.0, seed=4)
    assert a == b and a.startswith("ROMEO:") and len(a) == len("ROMEO:") + 60
    assert a != c
    assert set(a) <= set(TEXT)


def test_low_temperature_is_greedy_decoding(char_run):
    from lecturenn.train import checkpoint

    vocab = sorted(set(TEXT))
    cfg = rnn_lm.RNNLMConfig(vocab_size=len(vocab), embed_dim=8, hidden_dim=8, num_layers=1)
    like, _ = rnn_lm.make(cfg).init(jax.random.PRNGKey(0))
    params = checkpoint.load_checkpoint(char_run / "checkpoints", {"best_params": like})[0]
    ids = [vocab.index(ch) for ch in "ROMEO:"]
    for _ in range(12):  # rerun the whole prefix each time: no state carried by this reference
        logits, _ = rnn_lm.apply(cfg, params["best_params"], {}, jnp.asarray([ids]))
        ids.append(int(np.argmax(logits[0, -1])))
    greedy = "".join(vocab[i] for i in ids)
    assert sample_run(char_run, prime="ROMEO:", length=12, temperature=1e-4, seed=0) == greedy


def test_prime_outside_the_vocabulary_is_a_user_error(char_run):
    with pytest.raises(UserError, match="vocabulary"):
        sample_run(char_run, prime="Zebra", length=5)
    with pytest.raises(UserError, match="temperature"):
        sample_run(char_run, prime="R", length=5, temperature=0.0)


def _nats(line: str) -> float:
    return float(re.match(r"val: ([0-9.]+) nats/token", line).group(1))


def _reference_probs(run_dir) -> tuple[np.ndarray, int]:
    """P(next char) of every validation character after the first, from one forward pass over
    the whole validation text (one stream, the state carried: what windows of 8 compute), in
    float64 numpy; and how many of them the windows score."""
    from lecturenn.experiments.inference import load_run

    run = load_run(run_dir)
    vocab = run.vocabs["tokens"]
    valid = TEXT[-len(TEXT) // 10 :]  # the text reader's valid_fraction = 0.1, taken at the end
    ids = np.array([vocab.index(ch) for ch in valid])
    logits, _ = rnn_lm.apply(run.model_config, run.params, {}, jnp.asarray(ids[None, :-1]))
    logits = np.asarray(logits[0], dtype=np.float64)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    scored = (len(ids) - 1) // 8 * 8
    return p[np.arange(len(ids) - 1), ids[1:]], scored


def test_eval_of_a_language_model_and_of_an_ensemble_that_mixes_probabilities(
    char_run, char_run_seed1
):
    """``lecturenn eval`` on an LM run: its validation loss as training measured it; on two
    runs: -mean log of the averaged probabilities, computed here from full forward passes."""
    import json

    single = _nats(evaluate_run(char_run, "valid"))
    summary = json.loads((char_run / "summary.json").read_text())
    assert single == pytest.approx(summary["val_loss"], abs=2e-4)
    assert _nats(evaluate_run([char_run, char_run], "val")) == pytest.approx(single, abs=1e-4)

    (p0, scored), (p1, _) = _reference_probs(char_run), _reference_probs(char_run_seed1)
    assert -np.mean(np.log(p0[:scored])) == pytest.approx(single, abs=2e-4)
    line = evaluate_run([char_run, char_run_seed1], "val")
    mixed = -np.mean(np.log((p0[:scored] + p1[:scored]) / 2))
    assert _nats(line) == pytest.approx(mixed, abs=2e-4)
    assert "ensemble of 2 runs" in line and f"({scored:,} tokens" in line
    each = [-np.mean(np.log(p[:scored])) for p in (p0, p1)]
    assert mixed < np.mean(each)  # the two seeds disagree somewhere, so mixing gains (Jensen)


def test_eval_of_a_language_model_names_what_it_cannot_do(char_run, tmp_path):
    with pytest.raises(UserError, match="--split 'test'.*val"):
        evaluate_run(char_run, "test")
    with pytest.raises(UserError, match="--predictions"):
        evaluate_run(char_run, "val", tmp_path / "p.txt")


@pytest.fixture(scope="module")
def nplm_runs(tmp_path_factory):
    """Two seeds of a 3-character NPLM and one of a 2-character one, on the same text."""
    return [
        _train_char_lm(tmp_path_factory.mktemp(f"nplm{i}"), seed, NPLM.format(context=n))
        for i, (seed, n) in enumerate([(0, 3), (1, 3), (0, 2)])
    ]


def _nplm_reference_probs(run_dir) -> np.ndarray:
    """P(next char | the 3 before it) of every validation character after the third, from the
    checkpoint's arrays in float64 numpy (Bengio et al. 2003, eq. 1: y = b + W x + U tanh(d +
    H x))."""
    from lecturenn.experiments.inference import load_run

    run = load_run(run_dir)
    vocab, n = run.vocabs["tokens"], run.model_config.context
    ids = np.array([vocab.index(ch) for ch in TEXT[-len(TEXT) // 10 :]])
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), run.params)
    x = p["C"][np.stack([ids[j : len(ids) - n + j] for j in range(n)], axis=1)]
    x = x.reshape(len(ids) - n, -1)
    y = (
        p["out"]["b"]
        + x @ p["direct"]
        + np.tanh(p["hidden"]["b"] + x @ p["hidden"]["W"]) @ (p["out"]["W"])
    )
    probs = np.exp(y - y.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return probs[np.arange(len(ids) - n), ids[n:]]


def test_eval_of_an_nplm_and_of_an_ensemble_of_two(nplm_runs):
    """``lecturenn eval`` on an NPLM run: its validation loss as training measured it, and as
    the arrays of its checkpoint give it; on two seeds: their mixed probabilities."""
    import json

    first, second, _ = nplm_runs
    single = _nats(evaluate_run(first, "val"))
    summary = json.loads((first / "summary.json").read_text())
    assert single == pytest.approx(summary["val_loss"], abs=2e-4)
    p0, p1 = _nplm_reference_probs(first), _nplm_reference_probs(second)
    assert single == pytest.approx(-np.mean(np.log(p0)), abs=2e-4)
    line = evaluate_run([first, second], "val")
    assert _nats(line) == pytest.approx(-np.mean(np.log((p0 + p1) / 2)), abs=2e-4)
    assert "ensemble of 2 runs" in line and f"({len(p0):,} tokens" in line


def test_an_ensemble_needs_one_kind_of_lm_scoring_the_same_tokens(nplm_runs, char_run):
    first, _, shorter_context = nplm_runs
    with pytest.raises(UserError, match="same kind of language model"):
        evaluate_run([first, char_run], "val")
    with pytest.raises(UserError, match=r"other val tokens.*model\.context"):
        evaluate_run([first, shorter_context], "val")
