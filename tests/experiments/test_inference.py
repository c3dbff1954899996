"""Sampling from a run folder: reproducible from the seed, and at a temperature near 0 it is the
greedy (argmax) continuation computed independently from the model's forward pass."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lecturenn.errors import UserError
from lecturenn.experiments import config as config_lib
from lecturenn.experiments import runner
from lecturenn.experiments.inference import sample_run
from lecturenn.models import rnn_lm

TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\n" * 8


@pytest.fixture(scope="module")
def char_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sample")
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
kind = "rnn_lm"
embed_dim = 8
hidden_dim = 8
num_layers = 1
[optim]
name = "adam"
learning_rate = 0.01
[train]
epochs = 2
batch_size = 4
monitor = "perplexity"
"""
    )
    cfg = config_lib.load_config(folder / "c.toml")
    runner.run(cfg, folder / "run", quiet=True)
    return folder / "run"


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
