"""Sampling text from a trained language model (Karpathy's char-rnn; CS224n lecture 6):
feed the prime, then repeatedly draw the next token from softmax(scores / temperature) and feed
it back. Temperature < 1 sharpens the distribution (safer, more repetitive text), > 1 flattens it.

    text = sample_run("runs/char_shakespeare", prime="ROMEO:", length=500, temperature=0.8, seed=0)

Character models join the drawn characters; word models join words with spaces and turn
``<eos>`` into a line break. The same seed gives the same text.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from lecturenn.data.text import EOS
from lecturenn.errors import UserError


def _draw(key, logits, temperature):
    return jax.random.categorical(key, logits / temperature, axis=-1)


def sample_rnn_ids(
    cfg, params: dict, prime: np.ndarray, length: int, temperature: float, key: jax.Array
) -> np.ndarray:
    """``length`` ids drawn from a recurrent LM (models/rnn_lm.py) after the ids ``prime``."""
    from lecturenn.models import rnn_lm

    @jax.jit
    def run(params, prime, key):
        logits, state = rnn_lm.apply(cfg, params, {}, prime[None, :])
        keys = jax.random.split(key, length)
        first = _draw(keys[0], logits[0, -1], temperature)

        def step(carry, k):
            state, token = carry
            logits, state = rnn_lm.apply(cfg, params, state, token[None, None])
            nxt = _draw(k, logits[0, 0], temperature)
            return (state, nxt), nxt

        _, rest = jax.lax.scan(step, (state, first), keys[1:])
        return jnp.concatenate([first[None], rest])

    return np.asarray(run(params, jnp.asarray(prime), key))


def sample_nplm_ids(
    cfg, params: dict, prime: np.ndarray, length: int, temperature: float, key: jax.Array
) -> np.ndarray:
    """``length`` ids from Bengio's NPLM (models/nplm.py), sliding its n-word context window."""
    from lecturenn.models import nplm

    @jax.jit
    def run(params, context, key):
        def step(context, k):
            nxt = _draw(k, nplm.apply(cfg, params, context[None, :])[0], temperature)
            return jnp.concatenate([context[1:], nxt[None]]), nxt

        return jax.lax.scan(step, context, jax.random.split(key, length))[1]

    return np.asarray(run(params, jnp.asarray(prime[-cfg.context :]), key))


def _encode(prime: str, vocab: list[str], words: bool, run_dir: Path) -> list[int]:
    index = {token: i for i, token in enumerate(vocab)}
    tokens = prime.split() if words else list(prime)
    unknown = [t for t in tokens if t not in index]
    if unknown:
        raise UserError(
            f"{run_dir}: prime token {unknown[0]!r} is not in the model's vocabulary; "
            f"use {'words' if words else 'characters'} from its training text"
        )
    return [index[t] for t in tokens]


def _decode(ids: np.ndarray, vocab: list[str], words: bool) -> str:
    if not words:
        return "".join(vocab[i] for i in ids)
    return " ".join(vocab[i] for i in ids).replace(f" {EOS} ", "\n").replace(EOS, "\n")


def sample_run(
    run_dir: str | Path,
    prime: str = "",
    length: int = 500,
    temperature: float = 1.0,
    seed: int = 0,
) -> str:
    """The prime followed by ``length`` sampled tokens, from the best parameters of a run folder
    written by ``lecturenn run`` with a language-model config."""
    from lecturenn.experiments import config as config_lib
    from lecturenn.experiments.tasks import language
    from lecturenn.train import checkpoint

    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file():
        raise UserError(f"{run_dir}: no config.toml; pass a run folder made by `lecturenn run`")
    if not temperature > 0:
        raise UserError(f"--temperature must be > 0, got {temperature}")
    if length < 1:
        raise UserError(f"--length must be >= 1, got {length}")
    cfg = config_lib.load_config(run_dir / "config.toml")
    if cfg.model.kind not in ("rnn_lm", "nplm"):
        raise UserError(f"{run_dir}: model.kind {cfg.model.kind!r} is not a language model")
    vocab = language.load_corpus(cfg.data)["vocab"]
    model, model_cfg = language.build_model(cfg.model, len(vocab))
    like, _ = model.init(jax.random.PRNGKey(0))  # the structure the checkpoint is read into
    if checkpoint.latest_checkpoint(run_dir / "checkpoints") is None:
        raise UserError(f"{run_dir}/checkpoints: no checkpoint to sample from")
    payload, _ = checkpoint.load_checkpoint(run_dir / "checkpoints", {"best_params": like})
    params = payload["best_params"]

    words = cfg.data.name == "ptb"
    start = EOS if words else "\n"
    prime_ids = _encode(prime, vocab, words, run_dir)
    # With no prime (or a short one for the NPLM), the text starts after an end of line.
    pad = vocab.index(start) if start in vocab else 0
    needed = cfg.model.context if cfg.model.kind == "nplm" else 1
    context = np.asarray([pad] * max(needed - len(prime_ids), 0) + prime_ids, np.int32)
    sampler = sample_nplm_ids if cfg.model.kind == "nplm" else sample_rnn_ids
    ids = sampler(model_cfg, params, context, length, temperature, jax.random.PRNGKey(seed))
    text = _decode(ids, vocab, words)
    if not prime:
        return text
    return prime + (" " if words else "") + text
