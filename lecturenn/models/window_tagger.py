"""Window tagger for NER / POS (CS224n notes 3 §1, "Museums in Paris are amazing"; Collobert et
al. 2011 "NLP (almost) from scratch", the window approach of §3.3.1).

Every token t of a padded sentence batch gets the window of ``window_size`` tokens centred on it.
Each token of the window is described by its word vector, its capitalization vector (C&W's caps
feature) and optionally a suffix vector; the window vector is their concatenation

    x_t = [e(w_{t-h}); c(w_{t-h}); …; e(w_{t+h}); c(w_{t+h})]
    z_t = x_t W + b,   a_t = f(z_t)   (hard tanh as in C&W, or tanh),   s_t = a_t U + u  (K scores)

Three ways to train the scores s (the emissions f of C&W §3.4):
- ``"softmax"``: word-level log-likelihood (C&W's WLL), the mean over tokens of −log softmax(s_t)_y.
- ``"max_margin"``: the notes' J = max(0, 1 − s + s_c) (notes 3 §1.5). The score of a labelled
  window is its gold tag's score, s = s_t[y_t]. Each labelled window gets two negatives, each one
  term of J: (1) the corrupt window of the notes — the centre word replaced by a word drawn
  uniformly from the vocabulary (from the step's key), its caps and suffix kept — scored for the
  same tag, s_c = s̃_t[y_t]; (2) the same window with the best-scoring wrong tag,
  s_c = max_{k≠y} s_t[k], without which nothing would teach the tagger to tell tags apart. J is
  averaged over both terms of every token (``corrupt_negatives = False`` keeps term 2 only).
- ``"sll"``: C&W's sentence-level log-likelihood (nn/sequence.py): transition scores A, initial
  scores A0, log-partition by the forward algorithm, Viterbi decoding.

Multitask (slides "multi-task learning"; C&W §4.5): with ``num_pos_tags`` > 0 a POS head
(word-level softmax) shares the embeddings and the hidden layer; the loss is the NER loss plus
``pos_weight`` times the POS loss. The hand-written backward chains the layer pairs of
nn/layers.py in reverse, down to the scatter-add of the embedding gradients.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lecturenn.errors import UserError
from lecturenn.models.base import Model
from lecturenn.nn import layers, losses, sequence
from lecturenn.nn.activations import ACTIVATIONS
from lecturenn.nn.init import get_initializer

SCORINGS = ("softmax", "max_margin", "sll")
# the embedding tables of the window's tokens, in the order their vectors are concatenated
_FEATURES = ("words", "caps", "suffix")


def table(feature: str) -> str:
    """The params key of a feature's lookup table: "E_words", "E_caps", "E_suffix" (the "E*"
    naming lets optim's fan-in scaling treat them as lookup tables, fan-in 1, as C&W do)."""
    return f"E_{feature}"


@dataclass(frozen=True)
class WindowTaggerConfig:
    vocab_size: int
    num_tags: int
    word_dim: int = 50
    caps_dim: int = 5
    num_caps: int = 6  # C&W's capitalization classes, 0 = padding (data/conll.py)
    suffix_vocab_size: int = 0
    suffix_dim: int = 0  # 0: no suffix feature
    window_size: int = 5
    hidden: int = 300
    activation: str = "hardtanh"
    dropout: float = 0.0  # on the hidden activations
    input_dropout: float = 0.0  # on the concatenated window vector
    scoring: str = "sll"
    corrupt_negatives: bool = True  # max_margin: add the notes' corrupt-centre-word negatives
    num_pos_tags: int = 0  # > 0: multitask POS head
    pos_weight: float = 1.0
    embedding_scale: float = 0.1  # random word/caps/suffix vectors ~ N(0, scale²)
    init: str = "glorot_uniform"
    dtype: str = "float32"
    # (vocab_size, word_dim) initial word vectors (pretrained rows + the caller's random rows)
    pretrained: np.ndarray | None = field(default=None, compare=False, repr=False)

    def feature_dims(self) -> dict[str, int]:
        dims = {"words": self.word_dim, "caps": self.caps_dim}
        if self.suffix_dim > 0:
            dims["suffix"] = self.suffix_dim
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
        if self.activation not in ACTIVATIONS or self.activation == "softmax":
            raise UserError(f"model.activation: unknown hidden activation {self.activation!r}")
        for name in ("dropout", "input_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise UserError(f"model.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.suffix_dim > 0 and self.suffix_vocab_size < 2:
            raise UserError("model.suffix_dim > 0 needs the suffix vocabulary (data.suffix = true)")
        if self.pretrained is not None and self.pretrained.shape != (
            self.vocab_size,
            self.word_dim,
        ):
            raise UserError(
                f"pretrained word vectors have shape {self.pretrained.shape}, the model expects "
                f"({self.vocab_size}, {self.word_dim}): set model.word_dim to the vectors' size"
            )


def make(cfg: WindowTaggerConfig) -> Model:
    """The window tagger's pure functions, closed over its static config."""
    cfg.check()
    dims = cfg.feature_dims()
    dtype = jnp.dtype(cfg.dtype)
    half = cfg.window_size // 2
    window_dim = cfg.window_size * sum(dims.values())
    initializer = get_initializer(cfg.init)
    rows = {"words": cfg.vocab_size, "caps": cfg.num_caps, "suffix": cfg.suffix_vocab_size}
    sll = cfg.scoring == "sll"
    margin = cfg.scoring == "max_margin"
    corrupt = margin and cfg.corrupt_negatives
    multitask = cfg.num_pos_tags > 0

    def init(key):
        names = ("hidden", "out", "pos_out", *_FEATURES)
        keys = dict(zip(names, jax.random.split(key, len(names)), strict=True))
        params = {
            table(name): cfg.embedding_scale * jax.random.normal(keys[name], (rows[name], d), dtype)
            for name, d in dims.items()
        }
        if cfg.pretrained is not None:
            params[table("words")] = jnp.asarray(cfg.pretrained, dtype)

        def affine(k, m, n):
            return {"W": initializer(k, (m, n), dtype), "b": jnp.zeros((n,), dtype)}

        params["hidden"] = affine(keys["hidden"], window_dim, cfg.hidden)
        params["out"] = affine(keys["out"], cfg.hidden, cfg.num_tags)
        if sll:
            params["transitions"] = {
                "A": jnp.zeros((cfg.num_tags, cfg.num_tags), dtype),
                "A0": jnp.zeros((cfg.num_tags,), dtype),
            }
        if multitask:
            params["pos_out"] = affine(keys["pos_out"], cfg.hidden, cfg.num_pos_tags)
        return params, {}

    def _corrupt_words(word_windows, key):
        """Stack (true, corrupt) windows: the corrupt one's centre word is uniform over the
        vocabulary (ids 2.., not <pad>/<unk>). One key per sentence, so the draw at a position
        does not depend on how much padding follows it."""
        num_sentences, length = word_windows.shape[:2]
        draw = jax.vmap(lambda k: jax.random.randint(k, (length,), 2, max(cfg.vocab_size, 3)))
        centre = draw(jax.random.split(key, num_sentences)).astype(word_windows.dtype)
        return jnp.stack([word_windows, word_windows.at[:, :, half].set(centre)])

    def _forward(params, batch, key, train, negatives=corrupt):
        """Embeddings → window → hidden → scores; with ``negatives`` (the max-margin loss with
        corrupt windows) a leading axis holds (true, corrupt) windows. ``train``: dropout on."""
        k_corrupt, k_in, k_hidden = jax.random.split(key, 3)
        ids = {name: layers.sentence_windows(batch[name], cfg.window_size, 0) for name in dims}
        if negatives:
            ids["words"] = _corrupt_words(ids["words"], k_corrupt)
            ids = {n: v if n == "words" else jnp.stack([v, v]) for n, v in ids.items()}
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
        if multitask:
            true_a = a[0] if negatives else a
            out["pos_scores"], caches["pos_out"] = layers.affine_forward(params["pos_out"], true_a)
        return out

    def _margin_terms(scores, tags):
        """(s, s_c, where the wrong tag came from) for the two negatives of every token."""
        true = scores[0] if corrupt else scores
        gold = jax.nn.one_hot(tags, cfg.num_tags, dtype=true.dtype)
        s = jnp.sum(true * gold, axis=-1)
        wrong = jnp.where(gold > 0, -jnp.inf, true)
        s_tag = jnp.max(wrong, axis=-1)
        if not corrupt:
            return s, s_tag
        s_corrupt = jnp.sum(scores[1] * gold, axis=-1)
        return jnp.stack([s, s]), jnp.stack([s_corrupt, s_tag])

    def _ner_loss(params, scores, batch):
        tags, mask = batch["tags"], batch["mask"]
        if sll:
            t = params["transitions"]
            return sequence.sll_loss(scores, t["A"], t["A0"], tags, mask)
        if margin:
            s, s_c = _margin_terms(scores, tags)
            return losses.max_margin(s, s_c, jnp.broadcast_to(mask, s.shape))
        return losses.softmax_cross_entropy(scores, tags, mask)

    def _ner_value_and_grad(params, scores, batch):
        """(loss, ∂loss/∂scores, gradient of the transition params or None)."""
        tags, mask = batch["tags"], batch["mask"]
        if sll:
            t = params["transitions"]
            value, (df, dA, dA0) = sequence.sll_value_and_grad(scores, t["A"], t["A0"], tags, mask)
            return value, df, {"A": dA, "A0": dA0}
        if not margin:
            value, df = losses.softmax_cross_entropy_value_and_grad(scores, tags, mask)
            return value, df, None
        s, s_c = _margin_terms(scores, tags)
        value, (ds, ds_c) = losses.max_margin_value_and_grad(
            s, s_c, jnp.broadcast_to(mask, s.shape)
        )
        true = scores[0] if corrupt else scores
        gold = jax.nn.one_hot(tags, cfg.num_tags, dtype=true.dtype)
        # ∂ max_{k≠y} s[k] is the one-hot of the arg max over the wrong tags
        wrong = jax.nn.one_hot(
            jnp.argmax(jnp.where(gold > 0, -jnp.inf, true), axis=-1), cfg.num_tags, dtype=true.dtype
        )
        if not corrupt:
            return value, gold * ds[..., None] + wrong * ds_c[..., None], None
        d_true = gold * (ds[0] + ds[1])[..., None] + wrong * ds_c[1][..., None]
        return value, jnp.stack([d_true, gold * ds_c[0][..., None]]), None

    def loss(params, state, batch, key, train=True):
        out = _forward(params, batch, key, train)
        value = _ner_loss(params, out["scores"], batch)
        aux = {}
        if multitask:
            pos = losses.softmax_cross_entropy(out["pos_scores"], batch["pos"], batch["mask"])
            aux = {"ner_loss": value, "pos_loss": pos}
            value = value + cfg.pos_weight * pos
        return value, (state, aux)

    def manual_value_and_grad(params, state, batch, key):
        out = _forward(params, batch, key, True)
        caches = out["caches"]
        value, df, transition_grads = _ner_value_and_grad(params, out["scores"], batch)
        grads: dict[str, Any] = {}
        if transition_grads is not None:
            grads["transitions"] = transition_grads
        grads["out"], da = layers.affine_backward(params["out"], caches["out"], df)
        aux = {}
        if multitask:
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

    def predict(params, state, inputs, head="ner"):
        """Tag ids (B, L): Viterbi paths under SLL, per-token arg max otherwise; padded
        positions get 0. ``head="pos"`` gives the POS head's arg max (multitask models)."""
        del state
        out = _forward(params, inputs, jax.random.PRNGKey(0), False, negatives=False)
        mask = jnp.asarray(inputs["mask"])
        if head == "pos":
            if not multitask:
                raise UserError("this model has no POS head (model.num_pos_tags = 0)")
            tags = jnp.argmax(out["pos_scores"], axis=-1)
        elif sll:
            t = params["transitions"]
            tags = sequence.viterbi(out["scores"], t["A"], t["A0"], mask)[0]
        else:
            tags = jnp.argmax(out["scores"], axis=-1)
        return jnp.where(mask > 0, tags, 0).astype(jnp.int32)

    return Model("window_tagger", init, loss, manual_value_and_grad, predict)
