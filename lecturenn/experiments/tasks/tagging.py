"""Tagging task: the window tagger (models/window_tagger.py) on CoNLL-2003 NER, optionally with a
POS head and GloVe vectors; plus what the CLI needs for a trained run (``evaluate_run``,
``tag_text``).

Training works on padded sentences (the leading axis of ``Setup.train``), so SLL sees whole
sentences. An epoch groups the sentences by padded width (8, 16, 32, … columns), shuffles within
each group, and runs one jitted step per batch in a shuffled order of batches: one compile per
width, and no step pads a 10-word sentence to the longest sentence of the corpus. Evaluation
decodes every sentence, maps the tags back to the file's own scheme and scores entities by
conlleval's rules (train/metrics.py), in percent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from lecturenn.data.schemes import convert, file_scheme
from lecturenn.errors import UserError
from lecturenn.experiments.schemas import dataset, model


@model("window_tagger")
@dataclass
class WindowTaggerModel:
    """C&W's window network; see models/window_tagger.py for each key's meaning."""

    TASK: ClassVar[str] = "tag"
    kind: str = "window_tagger"
    scoring: str = "sll"  # "softmax" (WLL), "max_margin" or "sll"
    word_dim: int = 50
    caps_dim: int = 5
    suffix_dim: int = 0  # 0: no suffix feature
    window_size: int = 5
    hidden: int = 300
    activation: str = "hardtanh"
    dropout: float = 0.0
    input_dropout: float = 0.0
    corrupt_negatives: bool = True
    multitask_pos: bool = False  # a POS head on the shared hidden layer
    pos_weight: float = 1.0
    embedding_scale: float = 0.1
    init: str = "glorot_uniform"


@dataset("conll2003")
@dataclass
class Conll2003Data:
    """CoNLL-2003 English NER from $LECTURENN_DATA/conll2003 (data/registry.py)."""

    TASKS: ClassVar[tuple[str, ...]] = ("tag",)
    name: str = "conll2003"
    train_file: str = "eng.train"
    valid_file: str = "eng.testa"
    test_file: str = "eng.testb"
    scheme: str = "iobes"  # tags the model is trained on; scores use the file's own tags
    min_count: int = 1
    max_vocab: int = 0  # 0: every word seen min_count times
    lowercase: bool = True
    normalize_digits: bool = True
    suffix_length: int = 3
    word_dropout: float = 0.0  # training words replaced by <unk> with this probability
    glove: bool = False  # initialise the word vectors from GloVe, and add its words
    glove_file: str = "glove.6B.50d.txt"  # in $LECTURENN_DATA/glove (or its shipped subset)
    glove_path: str = ""  # a vector file anywhere; overrides glove_file
    glove_max_words: int = 0  # 0: every word of the file
    glove_scale: float = 1.0  # multiply the pretrained vectors by this
    eval_tokens: int = 8192  # padded positions per evaluation batch


_SPLIT_FIELDS = {"train": "train_file", "val": "valid_file", "test": "test_file"}
_SPLIT_ALIASES = {"valid": "val", "dev": "val", "testa": "val", "testb": "test"}
_TOKEN = re.compile(r"(?:[A-Za-z]\.){2,}|\w+(?:[-'.]\w+)*|[^\w\s]")


class Vocabs(NamedTuple):
    words: Any  # conll.Vocab
    suffixes: Any | None
    tags: Any  # in the training scheme
    pos: Any | None


class Prepared(NamedTuple):
    sentences: dict  # split name -> list of conll.Sentence, as read
    vocabs: Vocabs
    vectors_path: Path | None


class EvalSplit(NamedTuple):
    sentences: list  # as read, original tags
    scheme: str  # the file's own scheme ("iob1" or "iob2")
    batches: list  # (sentence indices, device arrays of shape (rows, width))


# ---- data --------------------------------------------------------------------------------------


def _split_file(data_cfg, split: str) -> Path:
    from lecturenn.data.registry import dataset_path

    return dataset_path("conll2003", getattr(data_cfg, _SPLIT_FIELDS[split]))


def _vectors_path(data_cfg) -> Path | None:
    from lecturenn.data.registry import dataset_path

    if not data_cfg.glove:
        return None
    if data_cfg.glove_path:
        path = Path(data_cfg.glove_path).expanduser()
        if not path.is_file():
            raise UserError(f"data.glove_path: {path} is not a file")
        return path
    return dataset_path("glove", data_cfg.glove_file)


def prepare(cfg, splits=("train", "val", "test")) -> Prepared:
    """Read the splits and build the vocabularies from the training split (plus GloVe's words)."""
    from lecturenn.data import conll, embeddings
    from lecturenn.data.schemes import SCHEMES

    data_cfg = cfg.data
    if data_cfg.scheme not in SCHEMES:
        raise UserError(f"data.scheme must be one of {', '.join(SCHEMES)}, got {data_cfg.scheme!r}")
    sentences = {s: conll.read_conll(_split_file(data_cfg, s)) for s in {"train", *splits}}
    train = conll.convert_sentences(sentences["train"], "iob1", data_cfg.scheme)
    vectors_path = _vectors_path(data_cfg)
    extra = ()
    if vectors_path is not None:
        extra = embeddings.read_vocab_words(
            vectors_path, max_words=data_cfg.glove_max_words or None
        )
    words = conll.build_word_vocab(
        train,
        min_count=data_cfg.min_count,
        lowercase=data_cfg.lowercase,
        max_size=data_cfg.max_vocab or None,
        extra_words=extra,
        normalize_digits=data_cfg.normalize_digits,
    )
    suffixes = None
    if cfg.model.suffix_dim > 0:
        suffixes = conll.build_suffix_vocab(train, data_cfg.suffix_length)
    pos = None
    if cfg.model.multitask_pos:
        # POS tags of the training split; a tag only seen in dev or test maps to <unk>
        names = sorted({t for s in sentences["train"] for t in s.pos})
        pos = conll.Vocab((conll.UNK, *names), unk=conll.UNK)
    tags = conll.tag_vocab(train, scheme=data_cfg.scheme)
    return Prepared(sentences, Vocabs(words, suffixes, tags, pos), vectors_path)


def encode(cfg, sentences, vocabs: Vocabs) -> dict:
    """numpy arrays (S, Lmax) words/caps/suffix?/tags/mask/lengths (+ pos), tags in the training
    scheme."""
    from lecturenn.data import conll

    scheme = cfg.data.scheme
    converted = conll.convert_sentences(sentences, "iob1", scheme)
    arrays = conll.encode(
        converted,
        vocabs.words,
        vocabs.tags,
        suffix_vocab=vocabs.suffixes,
        suffix_length=cfg.data.suffix_length,
    )
    if vocabs.pos is not None:
        arrays["pos"] = conll.encode(converted, vocabs.words, vocabs.pos, field="pos")["tags"]
    return arrays


def pretrained_vectors(cfg, vocabs: Vocabs, vectors_path: Path):
    """(V, word_dim) initial word table: GloVe rows where the file has the word, N(0, σ²) rows
    elsewhere with σ the spread of the found vectors; and the coverage stats."""
    import numpy as np

    from lecturenn.data import embeddings

    matrix, found, stats = embeddings.load_word_vectors(
        vectors_path, list(vocabs.words.tokens), dim=cfg.model.word_dim
    )
    matrix = matrix * cfg.data.glove_scale
    std = float(matrix[found].std()) if found.any() else cfg.model.embedding_scale
    rng = np.random.default_rng(cfg.train.seed)
    matrix[~found] = rng.normal(0.0, std, (int((~found).sum()), matrix.shape[1]))
    return matrix.astype(np.float32), stats


def build_model(model_cfg, vocabs: Vocabs, pretrained=None):
    from lecturenn.data.conll import NUM_CAPS
    from lecturenn.models import window_tagger

    return window_tagger.make(
        window_tagger.WindowTaggerConfig(
            vocab_size=len(vocabs.words),
            num_tags=len(vocabs.tags),
            word_dim=model_cfg.word_dim,
            caps_dim=model_cfg.caps_dim,
            num_caps=NUM_CAPS,
            suffix_vocab_size=len(vocabs.suffixes) if vocabs.suffixes is not None else 0,
            suffix_dim=model_cfg.suffix_dim,
            window_size=model_cfg.window_size,
            hidden=model_cfg.hidden,
            activation=model_cfg.activation,
            dropout=model_cfg.dropout,
            input_dropout=model_cfg.input_dropout,
            scoring=model_cfg.scoring,
            corrupt_negatives=model_cfg.corrupt_negatives,
            num_pos_tags=len(vocabs.pos) if vocabs.pos is not None else 0,
            pos_weight=model_cfg.pos_weight,
            embedding_scale=model_cfg.embedding_scale,
            init=model_cfg.init,
            pretrained=pretrained,
        )
    )


# ---- batching ----------------------------------------------------------------------------------


def width_of(length: int) -> int:
    """Padded width of a sentence: the next power of two, at least 8."""
    return max(8, 1 << max(int(length) - 1, 0).bit_length())


def make_epoch(
    model,
    optimizer,
    *,
    grads: str,
    batch_size: int,
    lengths,
    word_dropout: float = 0.0,
    unk_id: int = 1,
):
    """epoch(params, state, opt_state, data, key) for the runner: batches of ``batch_size``
    sentences of one padded width, in a shuffled order; a group's last batch is filled with
    empty (fully masked) rows. ``word_dropout``: each training word becomes ``unk_id`` with that
    probability, so the <unk> vector is trained for the unseen words of the test set."""
    import functools

    import jax
    import jax.numpy as jnp
    import numpy as np

    from lecturenn.train.step import make_step

    plain_step = make_step(model, optimizer, grads, jit=False)
    widths = np.array([width_of(n) for n in lengths])
    groups = {w: np.flatnonzero(widths == w) for w in sorted(set(widths.tolist()))}

    @functools.partial(jax.jit, static_argnames="width")
    def step(params, state, opt_state, data, rows, real, key, width):
        batch = {k: v[rows, :width] for k, v in data.items() if k != "lengths"}
        batch["mask"] = batch["mask"] * real[:, None].astype(batch["mask"].dtype)
        if word_dropout > 0:
            key, drop_key = jax.random.split(key)
            drop = jax.random.bernoulli(drop_key, word_dropout, batch["words"].shape)
            batch["words"] = jnp.where(drop & (batch["words"] > 0), unk_id, batch["words"])
        return plain_step(params, state, opt_state, batch, key)

    def epoch(params, state, opt_state, data, key):
        order_key, step_key = jax.random.split(key)
        rng = np.random.default_rng(np.asarray(jax.random.bits(order_key, (4,), jnp.uint32)))
        batches = []
        for width, members in groups.items():
            members = rng.permutation(members)
            for start in range(0, len(members), batch_size):
                rows = members[start : start + batch_size]
                real = np.arange(batch_size) < len(rows)
                rows = np.pad(rows, (0, batch_size - len(rows)))
                batches.append((width, rows.astype(np.int32), real))
        keys = jax.random.split(step_key, len(batches))
        losses, auxes = [], []
        for i in rng.permutation(len(batches)):
            width, rows, real = batches[i]
            params, state, opt_state, loss, aux = step(
                params, state, opt_state, data, rows, real, keys[i], width=width
            )
            losses.append(loss)
            auxes.append(aux)
        aux = jax.tree_util.tree_map(lambda *v: jnp.mean(jnp.stack(v)), *auxes)
        return params, state, opt_state, jnp.mean(jnp.stack(losses)), aux

    return epoch


def eval_split(cfg, sentences, vocabs: Vocabs) -> EvalSplit:
    """Sentences grouped by padded width into batches of about ``data.eval_tokens`` positions."""
    import jax.numpy as jnp
    import numpy as np

    arrays = encode(cfg, sentences, vocabs)
    widths = np.array([width_of(n) for n in arrays["lengths"]])
    batches = []
    for width in sorted(set(widths.tolist())):
        members = np.flatnonzero(widths == width)
        rows = max(cfg.data.eval_tokens // width, 1)
        for start in range(0, len(members), rows):
            index = members[start : start + rows]
            batch = {}
            for name, value in arrays.items():
                if name != "lengths":
                    chunk = value[index][:, :width]
                    pad = ((0, rows - len(index)), (0, width - chunk.shape[1]))
                    batch[name] = jnp.asarray(np.pad(chunk, pad))
            batches.append((index, batch))
    return EvalSplit(list(sentences), file_scheme(s.ner for s in sentences), batches)


def make_predict(model, vocabs: Vocabs, train_scheme: str):
    """predict(params, state, split) -> (predicted tag sequences in the file's scheme, mean eval
    loss, POS tag sequences or None)."""
    import jax
    import numpy as np


    multitask = vocabs.pos is not None

    @jax.jit
    def run(params, state, batch):
        loss, _ = model.loss(params, state, batch, jax.random.PRNGKey(0), train=False)
        tags = model.predict(params, state, batch)
        pos = model.predict(params, state, batch, head="pos") if multitask else tags
        return tags, loss, pos

    def predict(params, state, split: EvalSplit):
        tags, pos = [None] * len(split.sentences), [None] * len(split.sentences)
        loss_sum = weight_sum = 0.0
        for index, batch in split.batches:
            batch_tags, loss, batch_pos = (np.asarray(x) for x in run(params, state, batch))
            weight = float(np.asarray(batch["mask"]).sum())
            loss_sum, weight_sum = loss_sum + float(loss) * weight, weight_sum + weight
            for row, i in enumerate(index):
                n = len(split.sentences[i].words)
                predicted = vocabs.tags.decode(batch_tags[row, :n])
                tags[i] = convert(predicted, train_scheme, split.scheme)
                if multitask:
                    pos[i] = vocabs.pos.decode(batch_pos[row, :n])
        return tags, loss_sum / max(weight_sum, 1.0), pos if multitask else None

    return predict


def make_evaluate(model, vocabs: Vocabs, train_scheme: str, predict=None):
    """evaluate(params, state, split) -> {"f1", "precision", "recall", "accuracy", "loss"} (+
    "pos_accuracy"), percentages by conlleval's rules. ``predict``: a ``make_predict`` the
    caller also uses, so its compiled program is shared."""
    from lecturenn.train.metrics import entity_f1

    predict = predict or make_predict(model, vocabs, train_scheme)

    def evaluate(params, state, split: EvalSplit):
        tags, loss, pos = predict(params, state, split)
        scores = entity_f1([s.ner for s in split.sentences], tags, split.scheme)
        result = {k: scores[k] for k in ("f1", "precision", "recall", "accuracy")}
        result["loss"] = loss
        if pos is not None:
            gold = [t for s in split.sentences for t in s.pos]
            hits = sum(g == p for g, p in zip(gold, (t for s in pos for t in s), strict=True))
            result["pos_accuracy"] = 100.0 * hits / max(len(gold), 1)
        return result

    return evaluate


def write_predictions(path: Path, split: EvalSplit, tags) -> None:
    """conlleval's input: ``token gold predicted`` per line, a blank line after each sentence."""
    from lecturenn.io import atomic_write_text

    lines = []
    for sentence, predicted in zip(split.sentences, tags, strict=True):
        lines += [
            f"{w} {g} {p}\n"
            for w, g, p in zip(sentence.words, sentence.ner, predicted, strict=True)
        ]
        lines.append("\n")
    atomic_write_text(Path(path), "".join(lines))


# ---- the runner's entry point ------------------------------------------------------------------


def build(cfg):
    import jax
    import numpy as np

    from lecturenn.data.conll import UNK
    from lecturenn.experiments.runner import Setup, make_optimizer
    from lecturenn.train import loop

    if cfg.train.monitor not in ("f1", "loss", "accuracy", "precision", "recall"):
        raise UserError(f'train.monitor = {cfg.train.monitor!r}: a tagger reports f1; use "f1"')
    prepared = prepare(cfg)
    vocabs = prepared.vocabs
    pretrained, stats = None, None
    if prepared.vectors_path is not None:
        pretrained, stats = pretrained_vectors(cfg, vocabs, prepared.vectors_path)
    model_ = build_model(cfg.model, vocabs, pretrained)
    train_arrays = encode(cfg, prepared.sentences["train"], vocabs)
    train = loop.to_device(train_arrays)
    params_shape, _ = jax.eval_shape(model_.init, jax.random.PRNGKey(0))
    optimizer = make_optimizer(cfg.optim, params_shape)
    epoch_fn = make_epoch(
        model_,
        optimizer,
        grads=cfg.train.grads,
        batch_size=cfg.train.batch_size,
        lengths=train_arrays["lengths"],
        word_dropout=cfg.data.word_dropout,
        unk_id=vocabs.words.index[UNK],
    )
    held_out = {s: eval_split(cfg, prepared.sentences[s], vocabs) for s in ("val", "test")}
    predict = make_predict(model_, vocabs, cfg.data.scheme)

    def finalize(params, state, out_dir):
        for name, split in held_out.items():
            write_predictions(
                Path(out_dir) / f"predictions_{name}.txt", split, predict(params, state, split)[0]
            )
        extra = {
            "vocab_size": len(vocabs.words),
            "num_tags": len(vocabs.tags),
            "train_sentences": int(np.asarray(train_arrays["lengths"]).size),
        }
        if stats is not None:
            extra["glove_coverage"] = round(100.0 * stats.coverage, 2)
        return extra

    return Setup(
        model=model_,
        train=train,
        valid=held_out["val"],
        evaluate=make_evaluate(model_, vocabs, cfg.data.scheme, predict=predict),
        splits=held_out,
        epoch_fn=epoch_fn,
        finalize=finalize,
    )


# ---- trained runs (lecturenn eval / lecturenn tag) ---------------------------------------------


def _split_name(split: str) -> str:
    name = _SPLIT_ALIASES.get(split, split)
    if name not in _SPLIT_FIELDS:
        raise UserError(f"--split {split!r}: use train, val (dev, testa) or test (testb)")
    return name


def load_run(run_dir, splits=()):
    """(cfg, prepared data, model, best params, state) of a finished or running run folder."""
    import jax

    from lecturenn.experiments.config import load_config
    from lecturenn.train.checkpoint import load_checkpoint

    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file():
        raise UserError(f"{run_dir}: no config.toml there; is it a run folder of `lecturenn run`?")
    cfg = load_config(run_dir / "config.toml")
    if not isinstance(cfg.model, WindowTaggerModel):
        raise UserError(f"{run_dir}: model.kind is {cfg.model.kind!r}, not a tagger")
    prepared = prepare(cfg, splits)
    # shapes only: the checkpoint supplies the values, so the vectors need not be read
    model_ = build_model(cfg.model, prepared.vocabs)
    params, state = model_.init(jax.random.PRNGKey(0))
    like = {"best_params": params, **({"best_state": state} if state else {})}
    payload, _ = load_checkpoint(run_dir / "checkpoints", like)
    return cfg, prepared, model_, payload["best_params"], payload.get("best_state", state)


def evaluate_run(run_dir, split: str = "test", predictions_path=None) -> str:
    """conlleval's per-entity table of a trained run on ``split``; with ``predictions_path``,
    also write the predictions in conlleval's input format (original tags)."""
    from lecturenn.train.metrics import entity_f1, format_conlleval_table

    name = _split_name(split)
    cfg, prepared, model_, params, state = load_run(run_dir, (name,))
    data = eval_split(cfg, prepared.sentences[name], prepared.vocabs)
    tags = make_predict(model_, prepared.vocabs, cfg.data.scheme)(params, state, data)[0]
    if predictions_path is not None:
        write_predictions(Path(predictions_path), data, tags)
    return format_conlleval_table(entity_f1([s.ner for s in data.sentences], tags, data.scheme))


def tokenize(text: str) -> list[str]:
    """Words and punctuation marks, as CoNLL-2003 separates them ("Paris," -> "Paris", ",")."""
    return _TOKEN.findall(text)


def tag_text(run_dir, text: str) -> list[tuple[str, str]]:
    """(token, tag) for each token of ``text``, tags in the training file's scheme (Viterbi
    decoded when the model uses SLL)."""
    from lecturenn.data.conll import Sentence

    tokens = tokenize(text)
    if not tokens:
        return []
    cfg, prepared, model_, params, state = load_run(run_dir)
    outside = ("O",) * len(tokens)
    sentence = Sentence(tuple(tokens), ("NN",) * len(tokens), outside, outside)
    data = eval_split(cfg, [sentence], prepared.vocabs)
    data = data._replace(scheme=file_scheme(s.ner for s in prepared.sentences["train"]))
    tags = make_predict(model_, prepared.vocabs, cfg.data.scheme)(params, state, data)[0][0]
    return list(zip(tokens, tags, strict=True))
