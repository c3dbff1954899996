"""Using a trained run folder: load it, evaluate a tagger, tag a sentence, sample text.

A run folder is self-contained: ``config.toml`` says what the model is, ``model.json`` the sizes
that came from the data (vocabulary size, number of classes, input shape), ``vocab.json`` the
vocabularies it was trained with, ``checkpoints/`` its parameters. Nothing here rebuilds a
vocabulary from the data files; ``evaluate_run`` reads the split it scores and warns when that
file is not the one the run was trained and evaluated with (its sha256 is in summary.json).

    from lecturenn import load_run
    run = load_run("runs/ner_window")      # run.model, run.params, run.vocabs, run.config
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lecturenn.data.conll import Sentence
from lecturenn.data.text import EOS
from lecturenn.errors import UserError
from lecturenn.experiments import config as config_lib
from lecturenn.experiments import schemas
from lecturenn.experiments.provenance import data_key, file_sha256
from lecturenn.experiments.tasks import language, tagging
from lecturenn.models import nplm, rnn_lm
from lecturenn.models.window_tagger import WindowTaggerConfig
from lecturenn.train import checkpoint
from lecturenn.train.metrics import entity_f1, format_conlleval_table

MODEL_FILE, VOCAB_FILE, SUMMARY_FILE = "model.json", "vocab.json", "summary.json"
_SPLIT_ALIASES = {"valid": "val", "dev": "val", "testa": "val", "testb": "test"}
_TOKEN = re.compile(r"(?:[A-Za-z]\.){2,}|\w+(?:[-'.]\w+)*|[^\w\s]")


class Run(NamedTuple):
    """A trained run: its resolved config, model (config filled), best parameters and state,
    vocabularies (name -> tokens) and summary."""

    path: Path
    config: Any
    model_config: Any
    model: Any
    params: Any
    state: Any
    vocabs: dict
    summary: dict


def data_fields_json(model_config) -> dict:
    """The data-filled fields of a model config that ``load_run`` needs (arrays left out: the
    checkpoint holds the parameters they initialised)."""
    out = {}
    for f in dataclasses.fields(model_config):
        value = getattr(model_config, f.name)
        if f.metadata.get("data") and not isinstance(value, np.ndarray) and f.name != "output_bias":
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: missing; {what}") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not valid JSON ({error}); the run folder is damaged") from None


def load_run(path) -> Run:
    """The best parameters of a run folder written by ``lecturenn run``, with its model and
    vocabularies, read from the folder alone."""
    path = Path(path)
    if not (path / "config.toml").is_file():
        raise UserError(f"{path}: no config.toml; pass a run folder made by `lecturenn run`")
    cfg = config_lib.load_config(path / "config.toml")
    sizes = _read_json(
        path / MODEL_FILE,
        "the run folder predates saved model sizes or is not a finished run; train it again",
    )
    kind = schemas.MODELS[schemas.kind_of(cfg.model)]
    try:
        model_cfg = dataclasses.replace(
            cfg.model, **{k: tuple(v) if isinstance(v, list) else v for k, v in sizes.items()}
        )
    except TypeError as error:
        raise UserError(f"{path / MODEL_FILE}: {error}") from None
    model = kind.module.make(model_cfg)
    vocabs = (
        _read_json(path / VOCAB_FILE, "the run folder has no vocabularies")
        if (path / VOCAB_FILE).exists()
        else {}
    )
    if checkpoint.latest_checkpoint(path / "checkpoints") is None:
        raise UserError(f"{path}/checkpoints: no checkpoint to load the parameters from")
    params, state = model.init(jax.random.PRNGKey(0))  # the structure the checkpoint fills
    like = {"best_params": params, **({"best_state": state} if state else {})}
    payload, _ = checkpoint.load_checkpoint(path / "checkpoints", like)
    summary = _read_json(path / SUMMARY_FILE, "") if (path / SUMMARY_FILE).exists() else {}
    return Run(
        path,
        cfg,
        model_cfg,
        model,
        payload["best_params"],
        payload.get("best_state", state),
        vocabs,
        summary,
    )


def check_data_digest(run: Run, data_file: Path) -> None:
    """Warn (stderr, one line) when ``data_file`` differs from the file the run recorded."""
    recorded = run.summary.get("provenance", {}).get("data", {})
    key = data_key(data_file)
    if key in recorded and recorded[key] != file_sha256(data_file):
        print(
            f"lecturenn: warning: {data_file} differs from the file this run was trained and "
            f"evaluated with (sha256 {recorded[key][:12]}…); figures may not be comparable",
            file=sys.stderr,
        )


# --- taggers ------------------------------------------------------------------------------------


def _loaded(run_dirs) -> tuple[list[Path], list[Run]]:
    """(paths, runs) of one run folder or several; a run already loaded is used as it is."""
    items = [run_dirs] if isinstance(run_dirs, str | Path | Run) else list(run_dirs)
    runs = [item if isinstance(item, Run) else load_run(item) for item in items]
    return [run.path for run in runs], runs


def _tagger(path_or_run) -> tuple[Run, tagging.Vocabs]:
    run = path_or_run if isinstance(path_or_run, Run) else load_run(path_or_run)
    if not isinstance(run.config.model, WindowTaggerConfig):
        raise UserError(f"{run.path}: the run's model is not a window tagger")
    return run, tagging.vocabs_from_json(run.vocabs, run.config.data)


def split_name(split: str) -> str:
    name = _SPLIT_ALIASES.get(split, split)
    if name not in tagging.SPLIT_FIELDS:
        raise UserError(f"--split {split!r}: use train, val (dev, testa) or test (testb)")
    return name


def _check_combinable(paths: list, runs: list[Run]) -> None:
    """An ensemble's runs must read the data alike and score the same way."""
    first = runs[0]
    for path, run in zip(paths[1:], runs[1:], strict=True):
        for what, mine, theirs in (
            ("vocabularies", run.vocabs, first.vocabs),
            ("[data] settings", run.config.data, first.config.data),
            ("model.scoring", run.model_config.scoring, first.model_config.scoring),
        ):
            if mine != theirs:
                raise UserError(
                    f"{path}: its {what} differ from those of {paths[0]}; an ensemble needs runs "
                    "of one config (e.g. its seeds)"
                )


def tag_split(run_dirs, split: str = "test") -> tuple[tagging.EvalSplit, list]:
    """(the split's sentences, the predicted tags in the file's scheme) of a trained tagger, or
    of several runs of one config (e.g. its seeds) as an ensemble: each sentence decoded from the
    models' averaged scores (``tagging.make_ensemble_predict``). ``run_dirs``: folders or runs
    already loaded."""
    name = split_name(split)
    paths, runs = _loaded(run_dirs)
    taggers = [_tagger(run) for run in runs]
    run, vocabs = taggers[0]
    _check_combinable(paths, runs)
    for each in runs:
        check_data_digest(each, tagging.split_file(run.config.data, name))
    sentences = tagging.read_split(run.config.data, name)
    data = tagging.eval_split(run.config, sentences, vocabs)
    if len(runs) == 1:
        predict = tagging.make_predict(run.model, vocabs, run.config.data.scheme)
        return data, predict(run.params, run.state, data)[0]
    configs = [each.model_config for each in runs]
    predict = tagging.make_ensemble_predict(configs, vocabs, run.config.data.scheme)
    return data, predict([each.params for each in runs], data)


def evaluate_run(run_dirs, split: str = "test", predictions_path=None) -> str:
    """A trained run's figures on ``split``: a tagger's conlleval per-entity table, a language
    model's (recurrent or NPLM) nats per token and perplexity (``lm_split_loss``). Several run
    folders: those of their ensemble. With ``predictions_path`` (taggers), also write the
    predictions in conlleval's input format (original tags)."""
    if predictions_path is not None:  # before the runs are read: a slip costs no waiting
        folder = Path(predictions_path).parent
        if not folder.is_dir():
            raise UserError(f"--predictions {predictions_path}: no folder {folder}")
    paths, runs = _loaded(run_dirs)  # read once, for the dispatch and the scoring
    model_config = runs[0].model_config
    if not isinstance(model_config, _LM_CONFIGS | WindowTaggerConfig):
        raise UserError(
            f"{paths[0]}: eval reads window taggers and language models, not this model"
        )
    if isinstance(model_config, _LM_CONFIGS):
        if predictions_path is not None:
            raise UserError("--predictions: only for taggers (conlleval input)")
        return lm_split_loss(runs, split)
    split_name(split)
    data, tags = tag_split(runs, split)
    if predictions_path is not None:
        tagging.write_predictions(Path(predictions_path), data, tags)
    return format_conlleval_table(entity_f1([s.ner for s in data.sentences], tags, data.scheme))


def tokenize(text: str) -> list[str]:
    """Words and punctuation marks, as CoNLL-2003 separates them ("Paris," -> "Paris", ",")."""
    return _TOKEN.findall(text)


def tag_text(run_dir, text: str) -> list[tuple[str, str]]:
    """(token, tag) for each token of ``text``, tags in the training file's scheme (Viterbi
    decoded when the model uses SLL)."""
    run, vocabs = _tagger(run_dir)
    tokens = tokenize(text)
    if not tokens:
        raise UserError(f"tag: {text!r} has no words to tag")
    outside = ("O",) * len(tokens)
    sentence = Sentence(tuple(tokens), ("NN",) * len(tokens), outside, outside)
    data = tagging.eval_split(run.config, [sentence], vocabs, scheme=run.vocabs["file_scheme"])
    predict = tagging.make_predict(run.model, vocabs, run.config.data.scheme)
    tags = predict(run.params, run.state, data)[0][0]
    return list(zip(tokens, tags, strict=True))


# --- language models ---------------------------------------------------------------------------


_LM_CONFIGS = rnn_lm.RNNLMConfig | nplm.NPLMConfig


def _lm_split(run: Run, split: str) -> dict:
    """The split as the run's training scored it: a recurrent LM's windows, an NPLM's pairs."""
    name = {"val": "valid"}.get(split, split)
    corpus = language.load_corpus(run.config.data)
    if name not in ("valid", "test") or name not in corpus:
        have = " and ".join(s for s, key in (("val", "valid"), ("test", "test")) if key in corpus)
        raise UserError(f"--split {split!r}: the data of {run.path} has {have} splits only")
    if isinstance(run.model_config, nplm.NPLMConfig):
        return language.nplm_pairs(corpus[name], run.model_config.context)
    data = run.config.data
    return language.stream_windows(corpus[name], data.eval_batch_size, data.eval_num_steps)


def _token_log_probs(run: Run, data: dict):
    if isinstance(run.model_config, nplm.NPLMConfig):
        return language.make_nplm_token_log_probs(run.model)(run.params, data)
    return language.make_lm_token_log_probs(run.model_config)(run.params, data)


def lm_split_loss(run_dirs, split: str = "val") -> str:
    """Mean NLL per token (nats) and perplexity of a language-model run on ``split``, read as in
    training (a recurrent LM: the split front to back, the state carried; an NPLM: every
    (n previous words, next word) pair); several runs of one kind (seeds, or networks of other
    sizes trained on the same text): their ensemble, which averages the models' probabilities of
    each token (``language.ensemble_nll``), with each run's own figure. ``run_dirs``: folders or
    runs already loaded."""
    split = _SPLIT_ALIASES.get(split, split)
    paths, runs = _loaded(run_dirs)
    kind = type(runs[0].model_config)
    settings = (
        "model.context" if kind is nplm.NPLMConfig else "data.eval_batch_size, data.eval_num_steps"
    )
    log_probs, scored = [], None
    for path, run in zip(paths, runs, strict=True):
        if not isinstance(run.model_config, _LM_CONFIGS):
            raise UserError(f"{path}: not a language model")
        if type(run.model_config) is not kind:
            raise UserError(
                f"{path}: not the same kind of language model as {paths[0]}; "
                "an ensemble needs one kind"
            )
        if run.vocabs != runs[0].vocabs:
            raise UserError(f"{path}: its vocabulary differs from that of {paths[0]}")
        for data_file in language.corpus_files(run.config.data):
            check_data_digest(run, data_file)
        if scored is None or run.config.data != runs[0].config.data or kind is nplm.NPLMConfig:
            data = _lm_split(run, split)  # the text is read again only where it can differ
            if scored is not None and not all(
                data[k].shape == scored[k].shape and np.array_equal(data[k], scored[k])
                for k in ("x", "y")
            ):
                raise UserError(
                    f"{path}: scores other {split} tokens than {paths[0]} ({settings}); "
                    "set them alike"
                )
            scored = scored if scored is not None else data
        log_probs.append(_token_log_probs(run, scored))
    each = [-float(np.mean(np.asarray(lp, np.float64))) for lp in log_probs]
    nll = each[0] if len(each) == 1 else language.ensemble_nll(log_probs)
    tokens = int(np.prod(log_probs[0].shape))
    line = f"{split}: {nll:.4f} nats/token, perplexity {np.exp(nll):.3f} ({tokens:,} tokens"
    if len(each) == 1:
        return line + ")"
    return line + f"; ensemble of {len(each)} runs: " + ", ".join(f"{x:.4f}" for x in each) + ")"


def _draw(key, logits, temperature):
    return jax.random.categorical(key, logits / temperature, axis=-1)


def sample_rnn_ids(cfg, params, prime: np.ndarray, length: int, temperature: float, key):
    """``length`` ids drawn from a recurrent LM (models/rnn_lm.py) after the ids ``prime``."""

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


def sample_nplm_ids(cfg, params, prime: np.ndarray, length: int, temperature: float, key):
    """``length`` ids from Bengio's NPLM (models/nplm.py), sliding its n-word context window."""

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
    run_dir, prime: str = "", length: int = 500, temperature: float = 1.0, seed: int = 0
) -> str:
    """Sampling text from a trained language model (Karpathy's char-rnn; CS224n lecture 6): feed
    the prime, then repeatedly draw the next token from softmax(scores / temperature) and feed it
    back. Temperature < 1 sharpens the distribution (safer, more repetitive text), > 1 flattens
    it. Character models join the drawn characters; word models join words with spaces and turn
    ``<eos>`` into a line break. The same seed gives the same text."""
    if not temperature > 0:
        raise UserError(f"--temperature must be > 0, got {temperature}")
    if length < 1:
        raise UserError(f"--length must be >= 1, got {length}")
    run = load_run(run_dir)
    model_cfg = run.model_config
    if not isinstance(model_cfg, (nplm.NPLMConfig, rnn_lm.RNNLMConfig)):
        raise UserError(f"{run_dir}: the run's model is not a language model")
    vocab = run.vocabs.get("tokens")
    if not vocab:
        raise UserError(f"{Path(run_dir) / VOCAB_FILE}: no vocabulary to sample words from")
    is_nplm = isinstance(model_cfg, nplm.NPLMConfig)
    words = run.config.data.name == "ptb"
    start = EOS if words else "\n"
    prime_ids = _encode(prime, vocab, words, Path(run_dir))
    # With no prime (or a short one for the NPLM), the text starts after an end of line.
    pad = vocab.index(start) if start in vocab else 0
    needed = model_cfg.context if is_nplm else 1
    context = np.asarray([pad] * max(needed - len(prime_ids), 0) + prime_ids, np.int32)
    sampler = sample_nplm_ids if is_nplm else sample_rnn_ids
    ids = sampler(model_cfg, run.params, context, length, temperature, jax.random.PRNGKey(seed))
    text = _decode(ids, vocab, words)
    if not prime:
        return text
    return prime + (" " if words else "") + text
