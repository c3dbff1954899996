"""Tagging task: the window tagger (models/window_tagger.py) on CoNLL-2003 NER, optionally with a
POS head and GloVe vectors.

Training works on padded sentences (the leading axis of ``Setup.train``), so SLL sees whole
sentences, in the "bucketed" epoch of train/epochs.py (sentences grouped by padded width).
Evaluation decodes every sentence, maps the tags back to the file's own scheme and scores
entities by conlleval's rules (train/metrics.py), in percent. The vocabularies are built from the
training split (plus GloVe's words) and saved with the run (``Setup.vocabs``), so that a trained
run is evaluated and used with the vocabularies it was trained with (experiments/inference.py).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lecturenn.data import conll, embeddings
from lecturenn.data.registry import dataset_path
from lecturenn.data.schemes import SCHEMES, convert, file_scheme
from lecturenn.errors import UserError
from lecturenn.experiments.tasks.base import Setup
from lecturenn.io import atomic_write_text
from lecturenn.models import window_tagger
from lecturenn.train import epochs, loop
from lecturenn.train.metrics import entity_f1

SPLIT_FIELDS = {"train": "train_file", "val": "valid_file", "test": "test_file"}


class Vocabs(NamedTuple):
    words: conll.Vocab
    suffixes: conll.Vocab | None
    tags: conll.Vocab  # in the training scheme
    pos: conll.Vocab | None
    prefixes: conll.Vocab | None = None
    shapes: conll.Vocab | None = None


class EvalSplit(NamedTuple):
    sentences: list  # as read, original tags
    scheme: str  # the file's own scheme ("iob1" or "iob2")
    batches: list  # (sentence indices, device arrays of shape (rows, width))


# ---- data --------------------------------------------------------------------------------------


def split_file(data_cfg, split: str) -> Path:
    return dataset_path("conll2003", getattr(data_cfg, SPLIT_FIELDS[split]))


def read_split(data_cfg, split: str) -> list[conll.Sentence]:
    """The sentences of a split, cut to ``limit_train`` / ``limit_eval`` when set."""
    sentences = conll.read_conll(split_file(data_cfg, split))
    limit = data_cfg.limit_train if split == "train" else data_cfg.limit_eval
    return sentences[:limit] if limit else sentences


def vectors_path(data_cfg) -> Path | None:
    if not data_cfg.glove:
        return None
    if data_cfg.glove_path:
        path = Path(data_cfg.glove_path).expanduser()
        if not path.is_file():
            raise UserError(f"data.glove_path: {path} is not a file")
        return path
    return dataset_path("glove", data_cfg.glove_file)


def build_vocabs(cfg, train: list[conll.Sentence], vectors: Path | None) -> Vocabs:
    """The vocabularies of the training sentences (as read) and, with GloVe, its words."""
    data_cfg = cfg.data
    if data_cfg.scheme not in SCHEMES:
        raise UserError(f"data.scheme must be one of {', '.join(SCHEMES)}, got {data_cfg.scheme!r}")
    if not train:
        raise UserError(f"{split_file(data_cfg, 'train')}: no sentences to train on")
    converted = conll.convert_sentences(train, "iob1", data_cfg.scheme)
    extra = ()
    if vectors is not None:
        extra = embeddings.read_vocab_words(vectors, max_words=data_cfg.glove_max_words or None)
    words = conll.build_word_vocab(
        converted,
        min_count=data_cfg.min_count,
        lowercase=data_cfg.lowercase,
        max_size=data_cfg.max_vocab or None,
        extra_words=extra,
        normalize_digits=data_cfg.normalize_digits,
    )
    suffixes = None
    if cfg.model.suffix_dim > 0:
        suffixes = conll.build_suffix_vocab(converted, data_cfg.suffix_length)
    pos = None
    if cfg.model.multitask_pos:
        # POS tags of the training split; a tag only seen in dev or test maps to <unk>
        names = sorted({t for s in train for t in s.pos})
        pos = conll.Vocab((conll.UNK, *names), unk=conll.UNK)
    tags = conll.tag_vocab(converted, scheme=data_cfg.scheme)
    prefixes = shapes = None
    if cfg.model.prefix_dim > 0:
        prefixes = conll.build_prefix_vocab(converted, data_cfg.prefix_length)
    if cfg.model.shape_dim > 0:
        shapes = conll.build_shape_vocab(converted)
    return Vocabs(words, suffixes, tags, pos, prefixes, shapes)


def vocabs_to_json(vocabs: Vocabs, scheme_of_files: str) -> dict:
    """What the run folder keeps: every vocabulary's tokens, and the scheme of the data files."""
    out = {"file_scheme": scheme_of_files}
    for name, vocab in vocabs._asdict().items():
        if vocab is not None:
            out[name] = list(vocab.tokens)
    return out


def vocabs_from_json(saved: dict, data_cfg) -> Vocabs:
    """The inverse of ``vocabs_to_json`` for the run's data settings."""

    def vocab(name, **kwargs):
        return conll.Vocab(tuple(saved[name]), **kwargs) if name in saved else None

    return Vocabs(
        vocab(
            "words",
            unk=conll.UNK,
            lowercase=data_cfg.lowercase,
            normalize_digits=data_cfg.normalize_digits,
        ),
        vocab("suffixes", unk=conll.UNK),
        vocab("tags"),
        vocab("pos", unk=conll.UNK),
        vocab("prefixes", unk=conll.UNK),
        vocab("shapes", unk=conll.UNK),
    )


def encode(cfg, sentences, vocabs: Vocabs) -> dict:
    """numpy arrays (S, Lmax) words/caps/suffix?/tags/mask/lengths (+ pos), tags in the training
    scheme."""
    converted = conll.convert_sentences(sentences, "iob1", cfg.data.scheme)
    arrays = conll.encode(
        converted,
        vocabs.words,
        vocabs.tags,
        suffix_vocab=vocabs.suffixes,
        suffix_length=cfg.data.suffix_length,
        prefix_vocab=vocabs.prefixes,
        prefix_length=cfg.data.prefix_length,
        shape_vocab=vocabs.shapes,
    )
    if vocabs.pos is not None:
        arrays["pos"] = conll.encode(converted, vocabs.words, vocabs.pos, field="pos")["tags"]
    return arrays


def pretrained_vectors(cfg, vocabs: Vocabs, path: Path):
    """(V, word_dim) initial word table: GloVe rows where the file has the word, N(0, σ²) rows
    elsewhere with σ the spread of the found vectors; and the coverage stats."""
    matrix, found, stats = embeddings.load_word_vectors(
        path, list(vocabs.words.tokens), dim=cfg.model.word_dim
    )
    matrix = matrix * cfg.data.glove_scale
    std = float(matrix[found].std()) if found.any() else cfg.model.embedding_scale
    rng = np.random.default_rng(cfg.train.seed)
    matrix[~found] = rng.normal(0.0, std, (int((~found).sum()), matrix.shape[1]))
    return matrix.astype(np.float32), stats


def fill_model(model_cfg, vocabs: Vocabs, pretrained=None):
    """The window tagger's config with the sizes of the vocabularies (and the initial vectors)."""
    return replace(
        model_cfg,
        vocab_size=len(vocabs.words),
        num_tags=len(vocabs.tags),
        num_caps=conll.NUM_CAPS,
        suffix_vocab_size=len(vocabs.suffixes) if vocabs.suffixes is not None else 0,
        prefix_vocab_size=len(vocabs.prefixes) if vocabs.prefixes is not None else 0,
        shape_vocab_size=len(vocabs.shapes) if vocabs.shapes is not None else 0,
        num_pos_tags=len(vocabs.pos) if vocabs.pos is not None else 0,
        pretrained=pretrained,
    )


def build_model(model_cfg, vocabs: Vocabs, pretrained=None):
    return window_tagger.make(fill_model(model_cfg, vocabs, pretrained))


def word_dropout(rate: float, unk_id: int):
    """augment: each training word becomes ``unk_id`` with probability ``rate``, so the <unk>
    vector is trained for the unseen words of the test set."""

    def augment(key, batch):
        drop = jax.random.bernoulli(key, rate, batch["words"].shape)
        return {**batch, "words": jnp.where(drop & (batch["words"] > 0), unk_id, batch["words"])}

    return augment


# ---- evaluation ----------------------------------------------------------------------------


def eval_split(cfg, sentences, vocabs: Vocabs, scheme: str | None = None) -> EvalSplit:
    """Sentences grouped by padded width into batches of about ``data.eval_tokens`` positions;
    ``scheme``: the tags' own scheme (default: read off the sentences)."""
    arrays = encode(cfg, sentences, vocabs)
    widths = np.array([epochs.width_of(n) for n in arrays["lengths"]])
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
    scheme = scheme or file_scheme(s.ner for s in sentences)
    return EvalSplit(list(sentences), scheme, batches)


def make_predict(model, vocabs: Vocabs, train_scheme: str):
    """predict(params, state, split) -> (predicted tag sequences in the file's scheme, mean eval
    loss, POS tag sequences or None)."""
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
            _decode_rows(split, index, batch_tags, vocabs, train_scheme, tags)
            if multitask:
                for row, i in enumerate(index):
                    pos[i] = vocabs.pos.decode(batch_pos[row, : len(split.sentences[i].words)])
        return tags, loss_sum / max(weight_sum, 1.0), pos if multitask else None

    return predict


def _decode_rows(split: EvalSplit, index, batch_tags, vocabs: Vocabs, train_scheme, tags) -> None:
    """Write the tag names of a batch's rows into ``tags`` (indexed like ``split.sentences``),
    converted from the training scheme to the file's."""
    for row, i in enumerate(index):
        predicted = vocabs.tags.decode(batch_tags[row, : len(split.sentences[i].words)])
        tags[i] = convert(predicted, train_scheme, split.scheme)


def make_ensemble_predict(model_configs, vocabs: Vocabs, train_scheme: str):
    """predict(params_list, split) -> the tag sequences (the file's scheme) decoded from the
    average of the models' scores (``window_tagger.ner_scores``): an ensemble of taggers trained
    on the same vocabularies, e.g. the seeds of one config."""

    @jax.jit
    def run(params_list, batch):
        outs = [
            window_tagger.ner_scores(cfg, params, batch)
            for cfg, params in zip(model_configs, params_list, strict=True)
        ]
        scores = sum(s for s, _ in outs) / len(outs)
        transitions = outs[0][1]
        if transitions is not None:
            transitions = jax.tree.map(lambda *t: sum(t) / len(t), *(t for _, t in outs))
        return window_tagger.decode(scores, transitions, batch["mask"])

    def predict(params_list, split: EvalSplit):
        tags = [None] * len(split.sentences)
        for index, batch in split.batches:
            batch_tags = np.asarray(run(list(params_list), batch))
            _decode_rows(split, index, batch_tags, vocabs, train_scheme, tags)
        return tags

    return predict


def make_evaluate(model, vocabs: Vocabs, train_scheme: str, predict=None):
    """evaluate(params, state, split) -> {"f1", "precision", "recall", "accuracy", "loss"} (+
    "pos_accuracy"), percentages by conlleval's rules. ``predict``: a ``make_predict`` the
    caller also uses, so its compiled program is shared."""
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
    lines = []
    for sentence, predicted in zip(split.sentences, tags, strict=True):
        lines += [
            f"{w} {g} {p}\n"
            for w, g, p in zip(sentence.words, sentence.ner, predicted, strict=True)
        ]
        lines.append("\n")
    atomic_write_text(Path(path), "".join(lines))


# ---- the runner's entry point ------------------------------------------------------------------


def build(cfg) -> Setup:
    sentences = {s: read_split(cfg.data, s) for s in ("train", "val", "test")}
    for split in ("val", "test"):
        if not sentences[split]:
            raise UserError(f"{split_file(cfg.data, split)}: no sentences to evaluate on")
    vectors = vectors_path(cfg.data)
    vocabs = build_vocabs(cfg, sentences["train"], vectors)
    pretrained, stats = None, None
    if vectors is not None:
        pretrained, stats = pretrained_vectors(cfg, vocabs, vectors)
    model_cfg = fill_model(cfg.model, vocabs, pretrained)
    model = window_tagger.make(model_cfg)
    train_arrays = encode(cfg, sentences["train"], vocabs)
    held_out = {s: eval_split(cfg, sentences[s], vocabs) for s in ("val", "test")}
    predict = make_predict(model, vocabs, cfg.data.scheme)
    lengths = train_arrays["lengths"]
    widths = np.array([epochs.width_of(n) for n in lengths])
    steps = sum(-(-int(np.sum(widths == w)) // cfg.train.batch_size) for w in set(widths.tolist()))
    augment = None
    if cfg.data.word_dropout > 0:
        augment = word_dropout(cfg.data.word_dropout, vocabs.words.index[conll.UNK])

    def finalize(params, state, out_dir):
        for name, split in held_out.items():
            write_predictions(
                Path(out_dir) / f"predictions_{name}.txt", split, predict(params, state, split)[0]
            )
        extra = {
            "vocab_size": len(vocabs.words),
            "num_tags": len(vocabs.tags),
            "train_sentences": int(np.asarray(lengths).size),
        }
        if stats is not None:
            extra["glove_coverage"] = round(100.0 * stats.coverage, 2)
        return extra

    files = [split_file(cfg.data, s) for s in SPLIT_FIELDS]
    return Setup(
        model=model,
        model_config=model_cfg,
        train=loop.to_device(train_arrays),
        valid=held_out["val"],
        evaluate=make_evaluate(model, vocabs, cfg.data.scheme, predict=predict),
        splits=held_out,
        epoch="bucketed",
        lengths=lengths,
        augment=augment,
        finalize=finalize,
        steps_per_epoch=steps,
        vocabs=vocabs_to_json(vocabs, file_scheme(s.ner for s in sentences["train"])),
        data_files=files + ([vectors] if vectors is not None else []),
    )
