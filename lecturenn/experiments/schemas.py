"""What a config may say: the model kinds and the data sets, each with its keys and defaults.

``[model] kind = "mlp"`` selects a model module (models/*.py); its config dataclass is what the
``[model]`` table fills, declared once, in the model's own module. ``[data] name = "digits"``
selects one of the data-set dataclasses below. Each model kind serves one task (classify, tag,
lm, adding) and each data set lists the tasks it serves, so that mismatched pairs (a language
model on digits) are refused before any work is done. Every field carries a one-line meaning
(``models.base.setting``), which ``lecturenn config show`` prints.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from lecturenn.errors import UserError
from lecturenn.models import cnn, mlp, nplm, rnn_lm, sequence_regressor, window_tagger
from lecturenn.models.base import setting


class ModelKind(NamedTuple):
    task: str
    config: type  # the model's config dataclass
    module: Any  # the model module: make(cfg), toy(cfg), example_batch(cfg, key)


MODELS: dict[str, ModelKind] = {
    mlp.KIND: ModelKind("classify", mlp.MLPConfig, mlp),
    cnn.KIND: ModelKind("classify", cnn.CNNConfig, cnn),
    window_tagger.KIND: ModelKind("tag", window_tagger.WindowTaggerConfig, window_tagger),
    nplm.KIND: ModelKind("lm", nplm.NPLMConfig, nplm),
    rnn_lm.KIND: ModelKind("lm", rnn_lm.RNNLMConfig, rnn_lm),
    sequence_regressor.KIND: ModelKind(
        "adding", sequence_regressor.SequenceRegressorConfig, sequence_regressor
    ),
}


def kind_of(model_cfg) -> str:
    """The ``[model] kind`` of a model config instance."""
    for kind, entry in MODELS.items():
        if type(model_cfg) is entry.config:
            return kind
    raise TypeError(f"{type(model_cfg).__name__} is not a registered model config")


def task_of(cfg) -> str:
    return MODELS[kind_of(cfg.model)].task


def model_module(cfg):
    return MODELS[kind_of(cfg.model)].module


# --- data sets --------------------------------------------------------------------------------


@dataclass
class FashionMNISTData:
    """Zalando's Fashion-MNIST (60k/10k 28×28 grey images) from $LECTURENN_DATA/fashion-mnist/."""

    TASKS: ClassVar[tuple[str, ...]] = ("classify",)
    name: str = setting("fashion-mnist", "data set")
    val_fraction: float = setting(0.1, "share of the training images held out for validation")
    preprocess: str = setting("none", "none, mean, standardize, pca or whiten (data/preprocess)")
    augment_flip: bool = setting(False, "random horizontal flips while training")
    augment_max_shift: int = setting(0, "random translations by up to this many pixels")
    test_time_flip: bool = setting(
        False, "evaluate on each image and its mirror image, averaging the class probabilities"
    )
    limit_train: int = setting(0, "use only the first N training images (0: all)")
    limit_eval: int = setting(0, "use only the first N test images (0: all)")


@dataclass
class DigitsData:
    """scikit-learn's bundled 8×8 digits (1,797 images), split train/valid/test."""

    TASKS: ClassVar[tuple[str, ...]] = ("classify",)
    name: str = setting("digits", "data set")
    test_fraction: float = setting(0.2, "share of the images held out for testing (stratified)")
    val_fraction: float = setting(0.1, "share of the training images held out for validation")
    preprocess: str = setting(
        "standardize", "none, mean, standardize, pca or whiten (data/preprocess)"
    )
    augment_flip: bool = setting(False, "random horizontal flips while training")
    augment_max_shift: int = setting(0, "random translations by up to this many pixels")
    test_time_flip: bool = setting(
        False, "evaluate on each image and its mirror image, averaging the class probabilities"
    )


@dataclass
class SpiralsData:
    """CS231n's interleaved spirals."""

    TASKS: ClassVar[tuple[str, ...]] = ("classify",)
    name: str = setting("spirals", "data set")
    num_per_class: int = setting(300, "points per spiral arm")
    num_classes: int = setting(3, "spiral arms")
    noise: float = setting(0.2, "std of the angle noise")
    test_fraction: float = setting(0.2, "share of the points held out for testing")
    val_fraction: float = setting(0.1, "share of the training points held out for validation")
    preprocess: str = setting("none", "none, mean, standardize, pca or whiten")


@dataclass
class XorData:
    """6.036's XOR clouds."""

    TASKS: ClassVar[tuple[str, ...]] = ("classify",)
    name: str = setting("xor", "data set")
    num_examples: int = setting(800, "points in all")
    noise: float = setting(0.25, "std of each cloud")
    test_fraction: float = setting(0.2, "share of the points held out for testing")
    val_fraction: float = setting(0.1, "share of the training points held out for validation")
    preprocess: str = setting("none", "none, mean, standardize, pca or whiten")


@dataclass
class Conll2003Data:
    """CoNLL-2003 English NER from $LECTURENN_DATA/conll2003 (data/registry.py)."""

    TASKS: ClassVar[tuple[str, ...]] = ("tag",)
    name: str = setting("conll2003", "data set")
    train_file: str = setting("eng.train", "training file in $LECTURENN_DATA/conll2003")
    valid_file: str = setting("eng.testa", "validation (dev) file")
    test_file: str = setting("eng.testb", "test file")
    scheme: str = setting(
        "iobes", "tags the model is trained on (iob1, iob2, iobes); scores use the file's own"
    )
    min_count: int = setting(1, "words seen fewer times in training map to <unk>")
    max_vocab: int = setting(0, "keep the N most frequent training words (0: all)")
    lowercase: bool = setting(True, "lower-case words before lookup")
    normalize_digits: bool = setting(True, "map every digit to 0 before lookup")
    suffix_length: int = setting(3, "letters of the suffix feature (model.suffix_dim > 0)")
    prefix_length: int = setting(3, "letters of the prefix feature (model.prefix_dim > 0)")
    word_dropout: float = setting(0.0, "training words replaced by <unk> with this probability")
    glove: bool = setting(False, "initialise the word vectors from GloVe and add its words")
    glove_file: str = setting(
        "glove.6B.50d.txt", "vector file in $LECTURENN_DATA/glove (or its shipped subset)"
    )
    glove_path: str = setting("", "a vector file anywhere; overrides glove_file")
    glove_max_words: int = setting(0, "read only the first N vectors (0: every word)")
    glove_scale: float = setting(1.0, "multiply the pretrained vectors by this")
    eval_tokens: int = setting(8192, "padded positions per evaluation batch")
    limit_train: int = setting(0, "use only the first N training sentences (0: all)")
    limit_eval: int = setting(0, "use only the first N sentences of dev and test (0: all)")


@dataclass
class PTBData:
    """Penn Treebank, Mikolov's split: $LECTURENN_DATA/ptb/ptb.{train,valid,test}.txt."""

    TASKS: ClassVar[tuple[str, ...]] = ("lm",)
    name: str = setting("ptb", "data set")
    num_steps: int = setting(20, "T, the unrolled steps of a training window (truncated BPTT)")
    eval_batch_size: int = setting(1, "parallel streams when evaluating (1: the text in order)")
    eval_num_steps: int = setting(50, "steps per evaluation window")
    limit_train: int = setting(0, "use only the first N training tokens (0: all)")
    limit_eval: int = setting(0, "use only the first N tokens of valid and test (0: all)")


@dataclass
class ShakespeareData:
    """Characters of tiny-shakespeare (path "" = $LECTURENN_DATA/tinyshakespeare/input.txt)."""

    TASKS: ClassVar[tuple[str, ...]] = ("lm",)
    name: str = setting("tinyshakespeare", "data set")
    path: str = setting("", "a text file anywhere; overrides the shipped corpus")
    valid_fraction: float = setting(0.1, "the last share of the text is the validation split")
    num_steps: int = setting(100, "T, the unrolled steps of a training window")
    eval_batch_size: int = setting(1, "parallel streams when evaluating")
    eval_num_steps: int = setting(100, "steps per evaluation window")
    limit_train: int = setting(0, "use only the first N training characters (0: all)")
    limit_eval: int = setting(0, "use only the first N validation characters (0: all)")


@dataclass
class AddingData:
    """The adding problem (data/synthetic.py): validation and test drawn once with their own
    seeds; training drawn once, or afresh every step with ``fresh``."""

    TASKS: ClassVar[tuple[str, ...]] = ("adding",)
    name: str = setting("adding", "data set")
    length: int = setting(200, "T, steps per sequence")
    num_train: int = setting(20000, "training sequences")
    num_valid: int = setting(1000, "validation sequences")
    num_test: int = setting(10000, "test sequences")
    fresh: bool = setting(
        False, "train on newly drawn sequences every step (num_train sets the epoch's size)"
    )


DATASETS: dict[str, type] = {
    "fashion-mnist": FashionMNISTData,
    "digits": DigitsData,
    "spirals": SpiralsData,
    "xor": XorData,
    "conll2003": Conll2003Data,
    "ptb": PTBData,
    "tinyshakespeare": ShakespeareData,
    "adding": AddingData,
}


# the metrics each task reports on its validation split: what train.monitor may name
TASK_METRICS = {
    "classify": ("accuracy", "loss"),
    "tag": ("f1", "precision", "recall", "accuracy", "loss"),
    "lm": ("perplexity", "loss"),
    "adding": ("mse", "loss"),
}


def check_compatible(cfg, source: str) -> None:
    task, tasks = task_of(cfg), type(cfg.data).TASKS
    if task not in tasks:
        raise UserError(
            f"{source}: model.kind {kind_of(cfg.model)!r} is a {task} model but data.name "
            f"{cfg.data.name!r} serves {', '.join(tasks)}"
        )
    metrics = TASK_METRICS[task]
    if cfg.train.monitor not in metrics:
        where = source("train.monitor") if callable(source) else source
        raise UserError(
            f"{where}: key 'train.monitor' is {cfg.train.monitor!r}, but a {task} model reports "
            f"{', '.join(metrics)}; set train.monitor = {metrics[0]!r}"
        )


# --- what `lecturenn config show` prints ------------------------------------------------------


def _type_text(tp) -> str:
    text = str(tp).replace("typing.", "")
    return text.replace("<class '", "").replace("'>", "")


def describe(cls) -> list[tuple[str, str, str, str]]:
    """(key, type, default, meaning) of every key a user may set in a section."""
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("data"):
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = "(required)"
        rows.append((f.name, _type_text(hints[f.name]), repr(default), f.metadata.get("help", "")))
    return rows


def filled_from_data(cls) -> list[tuple[str, str]]:
    """(key, meaning) of the fields the task fills from the data."""
    return [
        (f.name, f.metadata.get("help", ""))
        for f in dataclasses.fields(cls)
        if f.metadata.get("data")
    ]
