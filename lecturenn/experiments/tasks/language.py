"""Language-model task: PTB words and tiny-shakespeare characters; RNN/IRNN/LSTM LMs trained with
truncated BPTT, and Bengio's NPLM on n-gram windows.

Recurrent LMs (Zaremba et al. 2014's reader): the training text is cut into B = train.batch_size
parallel streams and then into consecutive (B, T) windows, T = data.num_steps; an epoch is the
"streams" epoch of train/epochs.py (the windows in order, the recurrent state carried from zeros).
Evaluation does the same over a whole split with ``data.eval_batch_size`` streams (1 by default:
the split read once, front to back, as Zaremba's test), and reports the mean NLL per token in
nats (``loss``) and ``perplexity`` = exp(loss) (CS224n lecture 6). Windows are whole, so the last
< eval_batch_size · eval_num_steps tokens of a split are not scored.

The NPLM trains on shuffled (context, next word) pairs with the "shuffled" epoch.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from lecturenn.data import text
from lecturenn.data.registry import data_root, dataset_files
from lecturenn.experiments import schemas
from lecturenn.experiments.tasks.base import Setup, steps_of
from lecturenn.models import rnn_lm
from lecturenn.models.nplm import NPLMConfig
from lecturenn.nn import losses
from lecturenn.train import loop


def corpus_path(data_cfg) -> Path:
    if data_cfg.name == "ptb":
        return data_root() / "ptb"
    return Path(data_cfg.path) if data_cfg.path else data_root() / "tinyshakespeare" / "input.txt"


def load_corpus(data_cfg) -> dict:
    """{"train", "valid", optionally "test"} id arrays (cut to ``limit_train`` / ``limit_eval``
    tokens when set) and "vocab" (id → token, from the whole training text)."""
    if data_cfg.name == "ptb":
        corpus = text.load_ptb()
    else:
        corpus = text.load_chars(corpus_path(data_cfg), data_cfg.valid_fraction)
    for split in ("train", "valid", "test"):
        limit = data_cfg.limit_train if split == "train" else data_cfg.limit_eval
        if split in corpus and limit:
            corpus[split] = corpus[split][:limit]
    return corpus


def corpus_files(data_cfg) -> list[Path]:
    if data_cfg.name == "ptb":
        return dataset_files("ptb")
    if data_cfg.path:
        return [Path(data_cfg.path)]
    return dataset_files("tinyshakespeare")


def fill_model(model_cfg, vocab_size: int):
    return replace(model_cfg, vocab_size=vocab_size)


def build_model(model_cfg, vocab_size: int):
    """The models/*.py Model and its filled config for a [model] table."""
    filled = fill_model(model_cfg, vocab_size)
    return schemas.MODELS[schemas.kind_of(filled)].module.make(filled), filled


def stream_windows(ids, batch_size: int, num_steps: int) -> dict:
    """{"x", "y"}: (W, B, T) consecutive windows of B streams, on the device."""
    inputs, targets = text.bptt_windows(text.batchify(ids, batch_size), num_steps)
    return loop.to_device({"x": inputs, "y": targets})


def stream_row(loss, aux) -> dict:
    """An LM epoch's figures: the mean NLL per token (not the loss scaled by the window's steps)
    and its perplexity."""
    nll = aux["nll"]
    return {"train_loss": float(nll), "train_perplexity": float(jnp.exp(nll))}


def _over_windows(lm_cfg, params, data, score):
    """score(logits, targets) of each (B, T) window of a split in order, the recurrent state
    carried from zeros through all of them (Zaremba's reading of a held-out split)."""

    def window(lm_state, xy):
        logits, lm_state = rnn_lm.apply(lm_cfg, params, lm_state, xy[0])
        return lm_state, score(logits, xy[1])

    carry0 = rnn_lm.zero_state(lm_cfg, data["x"].shape[1], params["embed"].dtype)
    return jax.lax.scan(window, carry0, (data["x"], data["y"]))[1]


def make_lm_evaluate(lm_cfg):
    """evaluate(params, state, windows) -> {"loss" (nats/token), "perplexity"}, state carried
    from zeros through every window of the split in order."""

    @jax.jit
    def mean_nll(params, data):
        # every window has B·T tokens, so the mean of the windows' means is exact
        return jnp.mean(_over_windows(lm_cfg, params, data, losses.softmax_cross_entropy))

    def evaluate(params, state, data):
        nll = float(mean_nll(params, data))
        return {"loss": nll, "perplexity": float(jnp.exp(nll))}

    return evaluate


def make_lm_token_log_probs(lm_cfg):
    """log_probs(params, windows) -> (W, B, T): log P(y_t | the text before it) of every scored
    token of a split, read as ``make_lm_evaluate`` reads it (its loss is minus their mean)."""
    return jax.jit(
        lambda params, data: _over_windows(lm_cfg, params, data, losses.target_log_probs)
    )


def ensemble_nll(log_probs) -> float:
    """Mean NLL per token of the ensemble that averages K models' probabilities,
    -mean_t log((1/K) Σ_k P_k(y_t)), from each model's log P_k(y_t) (logsumexp, stable). It is
    at most the models' mean NLL (Jensen), and equals it when the models agree."""
    stacked = jnp.stack([jnp.asarray(lp) for lp in log_probs])
    mixed = jax.scipy.special.logsumexp(stacked, axis=0) - jnp.log(stacked.shape[0])
    return float(-jnp.mean(mixed))


def nplm_pairs(ids, context: int) -> dict:
    """Every (n previous words, next word) example of a split, on the device."""
    contexts, targets = text.ngram_windows(ids, context)
    return loop.to_device({"x": contexts, "y": targets})


def make_nplm_token_log_probs(model, batch_size: int = 2048):
    """log_probs(params, pairs) -> (N,): log P(y | its n previous words) of every pair of a
    split (``nplm_pairs``), scored ``batch_size`` pairs at a time; the split's loss is minus
    their mean."""

    @jax.jit
    def batch_log_probs(params, x, y):
        return losses.target_log_probs(model.predict(params, {}, x), y)

    def log_probs(params, pairs):
        x, y = pairs["x"], pairs["y"]
        return jnp.concatenate(
            [
                batch_log_probs(params, x[i : i + batch_size], y[i : i + batch_size])
                for i in range(0, x.shape[0], batch_size)
            ]
        )

    return log_probs


def make_nplm_evaluate(model, batch_size: int = 2048):
    """Mean NLL and perplexity over every (context, next word) pair of a split (summed in
    float64: a split has some 10⁵ pairs)."""
    log_probs = make_nplm_token_log_probs(model, batch_size)

    def evaluate(params, state, data):
        nll = -float(np.mean(np.asarray(log_probs(params, data), np.float64)))
        return {"loss": nll, "perplexity": float(np.exp(nll))}

    return evaluate


def build(cfg) -> Setup:
    corpus = load_corpus(cfg.data)
    model, model_cfg = build_model(cfg.model, len(corpus["vocab"]))
    splits = [s for s in ("valid", "test") if s in corpus]
    common = {
        "model": model,
        "model_config": model_cfg,
        "vocabs": {"tokens": list(corpus["vocab"])},
        "data_files": corpus_files(cfg.data),
    }
    if isinstance(model_cfg, NPLMConfig):
        train = nplm_pairs(corpus["train"], model_cfg.context)
        held_out = {s: nplm_pairs(corpus[s], model_cfg.context) for s in splits}
        return Setup(
            train=train,
            valid=held_out.get("valid"),
            evaluate=make_nplm_evaluate(model),
            splits={"val": held_out.get("valid"), "test": held_out.get("test")},
            steps_per_epoch=steps_of(train["x"].shape[0], cfg.train.batch_size),
            **common,
        )
    train = stream_windows(corpus["train"], cfg.train.batch_size, cfg.data.num_steps)
    held_out = {
        s: stream_windows(corpus[s], cfg.data.eval_batch_size, cfg.data.eval_num_steps)
        for s in splits
    }
    return Setup(
        train=train,
        valid=held_out.get("valid"),
        evaluate=make_lm_evaluate(model_cfg),
        splits={"val": held_out.get("valid"), "test": held_out.get("test")},
        epoch="streams",
        train_row=stream_row,
        # truncated BPTT: one step per window of batch_size streams × num_steps tokens
        steps_per_epoch=int(train["x"].shape[0]),
        **common,
    )
