"""Language-model task: PTB words and tiny-shakespeare characters; RNN/IRNN/LSTM LMs trained with
truncated BPTT, and Bengio's NPLM on n-gram windows.

Recurrent LMs (Zaremba et al. 2014's reader): the training text is cut into B = train.batch_size
parallel streams and then into consecutive (B, T) windows, T = data.num_steps. One epoch is a
``lax.scan`` over the windows *in order*; the recurrent state runs from zeros at the start of the
epoch through every window (the model stops its gradient at each window's start: truncated BPTT).
Evaluation does the same over a whole split with ``data.eval_batch_size`` streams (1 by default:
the split read once, front to back, as Zaremba's test), and reports the mean NLL per token in
nats (``loss``) and ``perplexity`` = exp(loss) (CS224n lecture 6). Windows are whole, so the last
< eval_batch_size · eval_num_steps tokens of a split are not scored.

The NPLM trains on shuffled (context, next word) pairs with the runner's ordinary epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lecturenn.errors import UserError
from lecturenn.experiments.schemas import dataset, model

TASK = "lm"


@model("rnn_lm")
@dataclass
class RNNLMModel:
    """Embedding → L recurrent layers → softmax over the vocabulary (models/rnn_lm.py)."""

    TASK: ClassVar[str] = TASK
    kind: str = "rnn_lm"
    cell: str = "lstm"
    embed_dim: int = 200
    hidden_dim: int = 200
    num_layers: int = 2
    dropout: float = 0.0
    init: str = "uniform"
    init_scale: float = 0.1
    forget_bias: float = 0.0
    tie_weights: bool = False
    loss_reduction: str = "sum_steps"


@model("nplm")
@dataclass
class NPLMModel:
    """Bengio et al. 2003: y = b + W x + U tanh(d + H x) over n previous words (models/nplm.py)."""

    TASK: ClassVar[str] = TASK
    kind: str = "nplm"
    context: int = 4
    embed_dim: int = 100
    hidden_dim: int = 200
    direct: bool = False
    dropout: float = 0.0
    embed_dropout: float = 0.0
    init_scale: float = 0.05


@dataset("ptb")
@dataclass
class PTBData:
    """Penn Treebank, Mikolov's split: $LECTURENN_DATA/ptb/ptb.{train,valid,test}.txt."""

    TASKS: ClassVar[tuple[str, ...]] = (TASK,)
    name: str = "ptb"
    num_steps: int = 20
    eval_batch_size: int = 1
    eval_num_steps: int = 50


@dataset("tinyshakespeare")
@dataclass
class ShakespeareData:
    """Characters of tiny-shakespeare (path "" = $LECTURENN_DATA/tinyshakespeare/input.txt)."""

    TASKS: ClassVar[tuple[str, ...]] = (TASK,)
    name: str = "tinyshakespeare"
    path: str = ""
    valid_fraction: float = 0.1
    num_steps: int = 100
    eval_batch_size: int = 1
    eval_num_steps: int = 100


def load_corpus(data_cfg) -> dict:
    """{"train", "valid", optionally "test"} id arrays and "vocab" (id → token)."""
    from pathlib import Path

    from lecturenn.data import text
    from lecturenn.data.registry import data_root

    if data_cfg.name == "ptb":
        return text.load_ptb()
    path = Path(data_cfg.path) if data_cfg.path else data_root() / "tinyshakespeare" / "input.txt"
    return text.load_chars(path, data_cfg.valid_fraction)


def build_model(model_cfg, vocab_size: int):
    """The models/*.py Model and its config dataclass for a [model] table."""
    if model_cfg.kind == "nplm":
        from lecturenn.models import nplm

        cfg = nplm.NPLMConfig(
            vocab_size=vocab_size,
            context=model_cfg.context,
            embed_dim=model_cfg.embed_dim,
            hidden_dim=model_cfg.hidden_dim,
            direct=model_cfg.direct,
            dropout=model_cfg.dropout,
            embed_dropout=model_cfg.embed_dropout,
            init_scale=model_cfg.init_scale,
        )
        return nplm.make(cfg), cfg
    from lecturenn.models import rnn_lm

    cfg = rnn_lm.RNNLMConfig(
        vocab_size=vocab_size,
        embed_dim=model_cfg.embed_dim,
        hidden_dim=model_cfg.hidden_dim,
        num_layers=model_cfg.num_layers,
        cell=model_cfg.cell,
        dropout=model_cfg.dropout,
        init=model_cfg.init,
        init_scale=model_cfg.init_scale,
        forget_bias=model_cfg.forget_bias,
        tie_weights=model_cfg.tie_weights,
        loss_reduction=model_cfg.loss_reduction,
    )
    return rnn_lm.make(cfg), cfg


def stream_windows(ids, batch_size: int, num_steps: int) -> dict:
    """{"x", "y"}: (W, B, T) consecutive windows of B streams, on the device."""
    from lecturenn.data import text
    from lecturenn.train import loop

    inputs, targets = text.bptt_windows(text.batchify(ids, batch_size), num_steps)
    return loop.to_device({"x": inputs, "y": targets})


def make_lm_epoch(model, optimizer, lm_cfg, grads: str = "manual"):
    """epoch(params, state, opt_state, windows, key) for truncated BPTT (see module doc).

    Returns the runner's (params, state, opt_state, mean NLL per token, {"perplexity"}); the
    runner's ``state`` passes through untouched, the recurrent carry lives inside the epoch.
    """
    import jax
    import jax.numpy as jnp
    import optax

    from lecturenn.models import rnn_lm
    from lecturenn.train.step import value_and_grad_fn

    value_and_grad = value_and_grad_fn(model, grads)

    @jax.jit
    def epoch(params, state, opt_state, data, key):
        keys = jax.random.split(key, data["x"].shape[0])
        carry0 = rnn_lm.zero_state(lm_cfg, data["x"].shape[1], params["embed"].dtype)

        def window(carry, xs):
            params, opt_state, lm_state = carry
            x, y, k = xs
            (_, (lm_state, aux)), g = value_and_grad(params, lm_state, {"x": x, "y": y}, k)
            updates, opt_state = optimizer.update(g, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state, lm_state), aux["nll"]

        (params, opt_state, _), nlls = jax.lax.scan(
            window, (params, opt_state, carry0), (data["x"], data["y"], keys)
        )
        nll = jnp.mean(nlls)
        return params, state, opt_state, nll, {"perplexity": jnp.exp(nll)}

    return epoch


def make_lm_evaluate(lm_cfg):
    """evaluate(params, state, windows) -> {"loss" (nats/token), "perplexity"}, state carried
    from zeros through every window of the split in order."""
    import jax
    import jax.numpy as jnp

    from lecturenn.models import rnn_lm
    from lecturenn.nn import losses

    @jax.jit
    def mean_nll(params, data):
        def window(lm_state, xy):
            logits, lm_state = rnn_lm.apply(lm_cfg, params, lm_state, xy[0])
            return lm_state, losses.softmax_cross_entropy(logits, xy[1])

        carry0 = rnn_lm.zero_state(lm_cfg, data["x"].shape[1], params["embed"].dtype)
        _, nlls = jax.lax.scan(window, carry0, (data["x"], data["y"]))
        return jnp.mean(nlls)  # every window has B·T tokens, so the mean of means is exact

    def evaluate(params, state, data):
        nll = float(mean_nll(params, data))
        return {"loss": nll, "perplexity": float(jnp.exp(nll))}

    return evaluate


def make_nplm_evaluate(model, batch_size: int = 2048):
    """Mean NLL and perplexity over every (context, next word) pair of a split."""
    import jax
    import jax.numpy as jnp

    from lecturenn.nn import losses

    @jax.jit
    def nll_sum(params, x, y):
        scores = model.predict(params, {}, x)
        return losses.softmax_cross_entropy(scores, y) * y.shape[0]

    def evaluate(params, state, data):
        x, y = data["x"], data["y"]
        total = sum(
            float(nll_sum(params, x[i : i + batch_size], y[i : i + batch_size]))
            for i in range(0, x.shape[0], batch_size)
        )
        nll = total / x.shape[0]
        return {"loss": nll, "perplexity": float(jnp.exp(nll))}

    return evaluate


def _fill_steps_per_epoch(optim_cfg, steps: int) -> None:
    """Zaremba's per-epoch decay needs the number of windows an epoch has; fill it in."""
    schedule = optim_cfg.schedule
    if schedule and schedule.get("kind") == "piecewise_epoch_decay":
        schedule.setdefault("steps_per_epoch", steps)


def build(cfg):
    import jax

    from lecturenn.experiments.runner import Setup, make_optimizer
    from lecturenn.train import loop

    if cfg.train.monitor not in ("loss", "perplexity"):
        raise UserError(
            f"train.monitor = {cfg.train.monitor!r}: a language model reports loss and "
            'perplexity; set train.monitor = "perplexity"'
        )
    corpus = load_corpus(cfg.data)
    vocab_size = len(corpus["vocab"])
    model_, lm_cfg = build_model(cfg.model, vocab_size)
    splits = [s for s in ("valid", "test") if s in corpus]

    if cfg.model.kind == "nplm":
        from lecturenn.data import text

        def pairs(ids):
            contexts, targets = text.ngram_windows(ids, cfg.model.context)
            return loop.to_device({"x": contexts, "y": targets})

        train = pairs(corpus["train"])
        _fill_steps_per_epoch(cfg.optim, train["x"].shape[0] // cfg.train.batch_size)
        held_out = {s: pairs(corpus[s]) for s in splits}
        evaluate, epoch_fn = make_nplm_evaluate(model_), None
    else:
        train = stream_windows(corpus["train"], cfg.train.batch_size, cfg.data.num_steps)
        _fill_steps_per_epoch(cfg.optim, train["x"].shape[0])
        held_out = {
            s: stream_windows(corpus[s], cfg.data.eval_batch_size, cfg.data.eval_num_steps)
            for s in splits
        }
        params_shape, _ = jax.eval_shape(model_.init, jax.random.PRNGKey(0))
        optimizer = make_optimizer(cfg.optim, params_shape)
        epoch_fn = make_lm_epoch(model_, optimizer, lm_cfg, cfg.train.grads)
        evaluate = make_lm_evaluate(lm_cfg)

    valid = held_out.get("valid")
    return Setup(
        model=model_,
        train=train,
        valid=valid,
        evaluate=evaluate,
        splits={"val": valid, "test": held_out.get("test")},
        epoch_fn=epoch_fn,
        # truncated BPTT: one step per window of batch_size streams × num_steps tokens
        steps_per_epoch=None if cfg.model.kind == "nplm" else int(train["x"].shape[0]),
    )
