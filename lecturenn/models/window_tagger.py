"""Window tagger for NER / POS (CS224n notes §1.4, "Museums in Paris are amazing"; Collobert et
al. 2011 "NLP (almost) from scratch", the window approach of §3.3.1).

Every token t of a padded sentence batch gets the window of ``window_size`` tokens centred on it.
Each token of the window is described by its word vector, its capitalization vector (C&W's caps
feature) and optionally a suffix vector; the window vector is their concatenation

    x_t = [e(w_{t-h}); c(w_{t-h}); …; e(w_{t+h}); c(w_{t+h})]
    z_t = x_t W + b,   a_t = f(z_t)   (hard tanh as in C&W, or tanh),   s_t = a_t U + u  (K scores)

Three ways to train the scores s (the emissions f of C&W §3.4):
- ``"softmax"``: word-level log-likelihood (C&W's WLL), the mean over tokens of −log softmax(s_t)_y.
- ``"max_margin"``: the notes' J = max(0, 1 − s + s_c) (notes §1.4), ``nn.losses.tag_max_margin``.
  The score of a labelled window is its gold tag's score, s = s_t[y_t]. Each labelled window gets
  two negatives, each one term of J: (1) the corrupt window of the notes — the centre word
  replaced by a word drawn uniformly from the vocabulary (``nn.losses.corrupt_centre_words``, from
  the step's key), its caps and suffix kept — scored for the same tag, s_c = s̃_t[y_t]; (2) the same
  window with the best-scoring wrong tag, s_c = max_{k≠y} s_t[k], without which nothing would
  teach the tagger to tell tags apart. J is averaged over both terms of every token
  (``corrupt_negatives = False`` keeps term 2 only).
- ``"sll"``: C&W's sentence-level log-likelihood (nn/sequence.py): transition scores A, initial
  scores A0, log-partition by the forward algorithm, Viterbi decoding.

Multitask (slides "multi-task learning"; C&W §4.5): with ``num_pos_tags`` > 0 a POS head
(word-level softmax) shares the embeddings and the hidden layer; the loss is the NER loss plus
``pos_weight`` times the POS loss. The hand-written backward chains the layer pairs of
nn/layers.py in reverse, down to the scatter-add of the embedding gradients.

Batch: ``{"words", "caps", ("suffix"), "tags", ("pos"), "mask"}``, each (S, L): S padded
sentences of L tokens, ids 0 (and mask 0) past each sentence's end.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lecturenn.errors import UserError
from lecturenn.models.base import (
    Model,
    bind,
    check_positive,
    check_rate,
    label_by_name,
    setting,
)
from lecturenn.nn import layers, losses, sequence
from lecturenn.nn.activations import ACTIVATIONS
from lecturenn.nn.init import get_initializer

KIND = "window_tagger"
SCORINGS = ("softmax", "max_margin", "sll")
# the embedding tables of the window's tokens, in the order their vectors are concatenated
_FEATURES = ("words", "caps", "suffix")
_MORE_FEATURES = ("prefix", "shape")  # their keys are folded in, so the first three keep theirs


def table(feature: str) -> str:
    """The params key of a feature's lookup table: "E_words", "E_caps", "E_suffix"."""
    return f"E_{feature}"


@dataclass(frozen=True)
class WindowTaggerConfig:
    vocab_size: int | None = setting(
        None, "word vocabulary size (ids 0 = <pad>, 1 = <unk>)", data=True
    )
    num_tags: int | None = setting(None, "number of NER tags in the training scheme", data=True)
    num_caps: int = setting(6, "capitalization classes, 0 = padding", data=True)
    suffix_vocab_size: int = setting(0, "suffix vocabulary size (0: no suffix feature)", data=True)
    prefix_vocab_size: int = setting(0, "prefix vocabulary size (0: no prefix feature)", data=True)
    shape_vocab_size: int = setting(
        0, "word-shape vocabulary size (0: no shape feature)", data=True
    )
    num_pos_tags: int = setting(0, "POS tags of the multitask head", data=True)
    # (vocab_size, word_dim) initial word vectors (pretrained rows + the task's random rows)
    pretrained: np.ndarray | None = setting(
        None, "initial word vectors", data=True, compare=False, repr=False
    )
    scoring: str = setting("sll", "softmax (word-level), max_margin, or sll (sentence-level)")
    word_dim: int = setting(50, "word vector size")
    caps_dim: int = setting(5, "capitalization feature vector size")
    suffix_dim: int = setting(0, "suffix feature vector size (0: no suffix feature)")
    prefix_dim: int = setting(0, "prefix feature vector size (0: no prefix feature)")
    shape_dim: int = setting(
        0, 'word-shape feature vector size, e.g. "Xxxx", "d-d" (0: no shape feature)'
    )
    window_size: int = setting(5, "tokens per window, odd (the centre word and h each side)")
    hidden: int = setting(300, "hidden units")
    activation: str = setting("hardtanh", "hidden activation")
    dropout: float = setting(0.0, "inverted dropout on the hidden activations", traced=True)
    input_dropout: float = setting(0.0, "inverted dropout on the window vector", traced=True)
    corrupt_negatives: bool = setting(
        True, "max_margin: add the notes' corrupt-centre-word negatives"
    )
    multitask_pos: bool = setting(False, "a POS head (word-level softmax) on the hidden layer")
    pos_weight: float = setting(1.0, "weight of the POS loss in the multitask loss", traced=True)
    embedding_scale: float = setting(0.1, "random word/caps/suffix vectors ~ N(0, scale²)")
    init: str = setting("glorot_uniform", "initializer of the hidden and output layers")
    dtype: str = setting("float32", "parameter and computation dtype")

    def feature_dims(self) -> dict[str, int]:
        dims = {"words": self.word_dim, "caps": self.caps_dim}
        for name in ("suffix", *_MORE_FEATURES):
            if getattr(self, f"{name}_dim") > 0:
                dims[name] = getattr(self, f"{name}_dim")
        return dims

    def check(self) -> None:
        if self.scoring not in SCORINGS:
            raise UserError(
                f"model.scoring must be one of {', '.join(SCORINGS)}, got {self.scoring!r}"
            )
        if self.window_size < 1 or self.window_size % 2 == 0:
            raise UserError(
                f"model.window_size must be a positive odd number, got {self.window_size}"
            )
        check_positive(self, "word_dim", "caps_dim", "hidden")
        for name in ("suffix", *_MORE_FEATURES):
            if getattr(self, f"{name}_dim") < 0:
                raise UserError(
                    f"model.{name}_dim must be >= 0, got {getattr(self, f'{name}_dim')}"
                )
        if self.activation not in ACTIVATIONS or self.activation == "softmax":
            raise UserError(f"model.activation: unknown hidden activation {self.activation!r}")
        check_rate(self, "dropout", "input_dropout")
        get_initializer(self.init)
        if self.vocab_size is None:
            return  # a config not yet filled with the data's sizes
        for name in ("suffix", *_MORE_FEATURES):
            if getattr(self, f"{name}_dim") > 0 and getattr(self, f"{name}_vocab_size") < 2:
                raise UserError(f"model.{name}_dim > 0 needs the {name} vocabulary")
        if self.multitask_pos and self.num_pos_tags < 1:
            raise UserError("model.multitask_pos needs the POS tags of the training data")
        if self.pretrained is not None and self.pretrained.shape != (
            self.vocab_size,
            self.word_dim,
        ):
            raise UserError(
                f"pretrained word vectors have shape {self.pretrained.shape}, the model expects "
                f"({self.vocab_size}, {self.word_dim}): set model.word_dim to the vectors' size"
            )


def _window_dim(cfg: WindowTaggerConfig) -> int:
    return cfg.window_size * sum(cfg.feature_dims().values())


def _rows(cfg: WindowTaggerConfig) -> dict[str, int]:
    return {
        "words": cfg.vocab_size,
        "caps": cfg.num_caps,
        **{name: getattr(cfg, f"{name}_vocab_size") for name in ("suffix", *_MORE_FEATURES)},
    }


def _corrupt(cfg: WindowTaggerConfig) -> bool:
    return cfg.scoring == "max_margin" and cfg.corrupt_negatives


def init(cfg: WindowTaggerConfig, key: jax.Array) -> tuple[dict, dict]:
    """Lookup tables ~ N(0, embedding_scale²) (the word table from ``pretrained`` when given),
    hidden and output layers from the initializer, biases 0, SLL transitions 0."""
    dtype = jnp.dtype(cfg.dtype)
    initializer = get_initializer(cfg.init)
    dims, rows = cfg.feature_dims(), _rows(cfg)
    names = ("hidden", "out", "pos_out", *_FEATURES)
    keys = dict(zip(names, jax.random.split(key, len(names)), strict=True))
    keys.update({name: jax.random.fold_in(key, 100 + i) for i, name in enumerate(_MORE_FEATURES)})
    params = {
        table(name): cfg.embedding_scale * jax.random.normal(keys[name], (rows[name], d), dtype)
        for name, d in dims.items()
    }
    if cfg.pretrained is not None:
        params[table("words")] = jnp.asarray(cfg.pretrained, dtype)

    def affine(k, m, n):
        return {"W": initializer(k, (m, n), dtype), "b": jnp.zeros((n,), dtype)}

    params["hidden"] = affine(keys["hidden"], _window_dim(cfg), cfg.hidden)
    params["out"] = affine(keys["out"], cfg.hidden, cfg.num_tags)
    if cfg.scoring == "sll":
        params["transitions"] = {
            "A": jnp.zeros((cfg.num_tags, cfg.num_tags), dtype),
            "A0": jnp.zeros((cfg.num_tags,), dtype),
        }
    if cfg.multitask_pos:
        params["pos_out"] = affine(keys["pos_out"], cfg.hidden, cfg.num_pos_tags)
    return params, {}


def _forward(cfg: WindowTaggerConfig, params, batch, key, train, negatives):
    """Embeddings → window → hidden → scores; with ``negatives`` (the max-margin loss with
    corrupt windows) a leading axis holds (true, corrupt) windows. ``train``: dropout on."""
    dims = cfg.feature_dims()
    k_corrupt, k_in, k_hidden = jax.random.split(key, 3)
    ids = {name: layers.sentence_windows(batch[name], cfg.window_size, 0) for name in dims}
    if negatives:
        corrupt = losses.corrupt_centre_words(ids["words"], k_corrupt, cfg.vocab_size)
        ids = {n: jnp.stack([v, corrupt if n == "words" else v]) for n, v in ids.items()}
    vectors, caches = [], {}
    for name in dims:
        vector, caches[name] = layers.embedding_forward(params[table(name)], ids[name])
        vectors.append(vector)
    x, caches["window"] = layers.window_forward(jnp.concatenate(vectors, axis=-1))
    x, caches["input_dropout"] = layers.dropout_forward(x, cfg.input_dropout, k_in, train)
    z, caches["hidden"] = layers.affine_forward(params["hidden"], x)
    a, caches["activation"] = layers.activation_forward(cfg.activation, z)
    a, caches["dropout"] = layers.dropout_forward(a, cfg.dropout, k_hidden, train)
    scores, caches["out"] = layers.affine_forward(params["out"], a)
    out = {"scores": scores, "caches": caches}
    if cfg.multitask_pos:
        true_a = a[0] if negatives else a
        out["pos_scores"], caches["pos_out"] = layers.affine_forward(params["pos_out"], true_a)
    return out


def _ner_loss(cfg: WindowTaggerConfig, params, scores, batch):
    tags, mask = batch["tags"], batch["mask"]
    if cfg.scoring == "sll":
        t = params["transitions"]
        return sequence.sll_loss(scores, t["A"], t["A0"], tags, mask)
    if cfg.scoring == "max_margin":
        if _corrupt(cfg):
            return losses.tag_max_margin(scores[0], tags, mask, corrupt=scores[1])
        return losses.tag_max_margin(scores, tags, mask)
    return losses.softmax_cross_entropy(scores, tags, mask)


def _ner_value_and_grad(cfg: WindowTaggerConfig, params, scores, batch):
    """(loss, ∂loss/∂scores, gradient of the transition params or None)."""
    tags, mask = batch["tags"], batch["mask"]
    if cfg.scoring == "sll":
        t = params["transitions"]
        value, (df, dA, dA0) = sequence.sll_value_and_grad(scores, t["A"], t["A0"], tags, mask)
        return value, df, {"A": dA, "A0": dA0}
    if cfg.scoring == "softmax":
        value, df = losses.softmax_cross_entropy_value_and_grad(scores, tags, mask)
        return value, df, None
    if not _corrupt(cfg):
        value, (df, _) = losses.tag_max_margin_value_and_grad(scores, tags, mask)
        return value, df, None
    value, (d_true, d_corrupt) = losses.tag_max_margin_value_and_grad(
        scores[0], tags, mask, corrupt=scores[1]
    )
    return value, jnp.stack([d_true, d_corrupt]), None


def loss(cfg: WindowTaggerConfig, params, state, batch, key, train=True):
    out = _forward(cfg, params, batch, key, train, _corrupt(cfg))
    value = _ner_loss(cfg, params, out["scores"], batch)
    aux = {}
    if cfg.multitask_pos:
        pos = losses.softmax_cross_entropy(out["pos_scores"], batch["pos"], batch["mask"])
        aux = {"ner_loss": value, "pos_loss": pos}
        value = value + cfg.pos_weight * pos
    return value, (state, aux)


def manual_value_and_grad(cfg: WindowTaggerConfig, params, state, batch, key):
    """The loss's gradient (SLL forward–backward, softmax or max-margin), then the output,
    hidden, dropout, window and embedding layers' backward passes in reverse."""
    dims, rows = cfg.feature_dims(), _rows(cfg)
    corrupt = _corrupt(cfg)
    out = _forward(cfg, params, batch, key, True, corrupt)
    caches = out["caches"]
    value, df, transition_grads = _ner_value_and_grad(cfg, params, out["scores"], batch)
    grads: dict[str, Any] = {}
    if transition_grads is not None:
        grads["transitions"] = transition_grads
    grads["out"], da = layers.affine_backward(params["out"], caches["out"], df)
    aux = {}
    if cfg.multitask_pos:
        pos, dg = losses.softmax_cross_entropy_value_and_grad(
            out["pos_scores"], batch["pos"], batch["mask"]
        )
        aux = {"ner_loss": value, "pos_loss": pos}
        value = value + cfg.pos_weight * pos
        grads["pos_out"], da_pos = layers.affine_backward(
            params["pos_out"], caches["pos_out"], cfg.pos_weight * dg
        )
        da = da.at[0].add(da_pos) if corrupt else da + da_pos
    da = layers.dropout_backward(caches["dropout"], da)
    dz = layers.activation_backward(cfg.activation, caches["activation"], da)
    grads["hidden"], dx = layers.affine_backward(params["hidden"], caches["hidden"], dz)
    dx = layers.dropout_backward(caches["input_dropout"], dx)
    dx = layers.window_backward(caches["window"], dx)
    offsets = np.cumsum([0, *dims.values()])
    for (name, _), start, stop in zip(dims.items(), offsets[:-1], offsets[1:], strict=True):
        grads[table(name)] = layers.embedding_backward(
            rows[name], caches[name], dx[..., start:stop]
        )
    return (value, (state, aux)), {name: grads[name] for name in params}


def ner_scores(cfg: WindowTaggerConfig, params, inputs):
    """What the NER tags are decoded from, in eval mode: the (S, L, K) scores and, under SLL,
    the transition scores ``{"A", "A0"}`` (else None).

    Several models' outputs can be averaged before ``decode`` (an ensemble of seeds). Under
    softmax scoring the scores are log-probabilities, so the average is the log of the geometric
    mean of the models' per-token distributions. Under SLL a path's score is linear in both, so
    the average is the mean of the models' path scores (each model's log-partition is the same
    for every path of a sentence, so arg max mean log p = arg max mean score)."""
    scores = _forward(cfg, params, inputs, jax.random.PRNGKey(0), False, False)["scores"]
    if cfg.scoring == "sll":
        return scores, params["transitions"]
    if cfg.scoring == "softmax":
        return jax.nn.log_softmax(scores, axis=-1), None
    return scores, None


def decode(scores, transitions, mask):
    """Tag ids (S, L) from ``ner_scores``: the Viterbi path under SLL (``transitions`` given),
    the per-token arg max otherwise; padded positions get 0."""
    mask = jnp.asarray(mask)
    if transitions is not None:
        tags = sequence.viterbi(scores, transitions["A"], transitions["A0"], mask)[0]
    else:
        tags = jnp.argmax(scores, axis=-1)
    return jnp.where(mask > 0, tags, 0).astype(jnp.int32)


def predict(cfg: WindowTaggerConfig, params, state, inputs, head="ner"):
    """Tag ids (S, L): Viterbi paths under SLL, per-token arg max otherwise; padded positions
    get 0. ``head="pos"`` gives the POS head's arg max (multitask models)."""
    del state
    if head != "pos":
        return decode(*ner_scores(cfg, params, inputs), inputs["mask"])
    if not cfg.multitask_pos:
        raise UserError("this model has no POS head (model.multitask_pos = false)")
    out = _forward(cfg, params, inputs, jax.random.PRNGKey(0), False, False)
    mask = jnp.asarray(inputs["mask"])
    return jnp.where(mask > 0, jnp.argmax(out["pos_scores"], axis=-1), 0).astype(jnp.int32)


def labels(params) -> Any:
    """The lookup tables are embeddings (fan-in 1, as C&W treat them), the rest by name."""
    return label_by_name(params, embeddings=tuple(table(f) for f in (*_FEATURES, *_MORE_FEATURES)))


def make(cfg: WindowTaggerConfig) -> Model:
    """The window tagger's pure functions, bound to its config."""
    cfg.check()
    return bind(KIND, cfg, init, loss, manual_value_and_grad, predict, labels=labels)


def toy(cfg: WindowTaggerConfig) -> WindowTaggerConfig:
    """A small float64 instance with the same features and scoring, for gradient checks."""
    return replace(
        cfg,
        vocab_size=11,
        num_tags=5,
        suffix_vocab_size=7 if cfg.suffix_dim > 0 else 0,
        prefix_vocab_size=6 if cfg.prefix_dim > 0 else 0,
        shape_vocab_size=5 if cfg.shape_dim > 0 else 0,
        num_pos_tags=4 if cfg.multitask_pos else 0,
        pretrained=None,
        word_dim=min(cfg.word_dim, 4),
        caps_dim=min(cfg.caps_dim, 3),
        suffix_dim=min(cfg.suffix_dim, 2),
        prefix_dim=min(cfg.prefix_dim, 2),
        shape_dim=min(cfg.shape_dim, 2),
        window_size=min(cfg.window_size, 3),
        hidden=min(cfg.hidden, 6),
        dtype="float64",
    )


def example_batch(cfg: WindowTaggerConfig, key: jax.Array, size: int = 3, length: int = 5) -> dict:
    """Random padded sentences of lengths length, length − 1, ... (at least 1)."""
    keys = jax.random.split(key, 5)
    lengths = jnp.maximum(length - jnp.arange(size), 1)
    mask = (jnp.arange(length)[None] < lengths[:, None]).astype(jnp.dtype(cfg.dtype))
    ids = mask.astype(jnp.int32)

    def draw(k, low, high):
        return jax.random.randint(k, (size, length), low, high) * ids

    batch = {
        "words": draw(keys[0], 1, cfg.vocab_size),
        "caps": draw(keys[1], 1, cfg.num_caps),
        "tags": draw(keys[2], 0, cfg.num_tags),
        "mask": mask,
    }
    for i, name in enumerate(("suffix", *_MORE_FEATURES)):
        if getattr(cfg, f"{name}_dim") > 0:
            batch[name] = draw(
                jax.random.fold_in(keys[3], i), 1, getattr(cfg, f"{name}_vocab_size")
            )
    if cfg.multitask_pos:
        batch["pos"] = draw(keys[4], 0, cfg.num_pos_tags)
    return batch
