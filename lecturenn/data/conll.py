"""CoNLL-2003 for window taggers (Collobert et al. 2011; CS224n lecture 3 / assignment 3).

Reading: one token per line ``word POS chunk NER``, a blank line between sentences, and
``-DOCSTART- -X- -X- O`` lines between documents (skipped). Sentences are re-tagged between
schemes with data/schemes.py. Features: lower-cased words with digits mapped to 0, C&W's
capitalization feature, a suffix; ``encode`` pads sentences into arrays where id 0 always means
padding (the windows around each token are built on device by ``nn.layers.sentence_windows``).
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lecturenn.data.schemes import SCHEMES, convert
from lecturenn.errors import UserError

PAD, UNK = "<pad>", "<unk>"
_IOB_TAG = re.compile(r"O|[BI]-\S+")
_DIGIT = re.compile(r"\d")


class Sentence(NamedTuple):
    words: tuple[str, ...]
    pos: tuple[str, ...]
    chunk: tuple[str, ...]
    ner: tuple[str, ...]


def read_conll(path: str | Path) -> list[Sentence]:
    """Sentences of a CoNLL-2003 file; errors name ``FILE:LINE`` and what was expected."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"{path}: no such file; run `lecturenn data fetch conll2003` "
            "or point LECTURENN_DATA at the folder that holds conll2003/"
        )
    sentences, rows = [], []

    def close_sentence() -> None:
        if rows:
            sentences.append(Sentence(*(tuple(column) for column in zip(*rows, strict=True))))
            rows.clear()

    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise UserError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[error.start]:02x}); "
            "is it a CoNLL-2003 file?"
        ) from None
    for number, line in enumerate(text.split("\n"), start=1):
        columns = line.split()
        if not columns:
            close_sentence()
            continue
        expected = f"{path}:{number}: expected 4 space-separated columns (word POS chunk NER)"
        if len(columns) != 4:
            raise UserError(f"{expected}, got {len(columns)}: {line.rstrip()!r}")
        if columns[0] == "-DOCSTART-":
            close_sentence()
            continue
        for name, tag in (("chunk", columns[2]), ("NER", columns[3])):
            if not _IOB_TAG.fullmatch(tag):
                raise UserError(
                    f"{expected}, got {name} tag {tag!r}, which is not O, B-TYPE or I-TYPE"
                )
        rows.append(columns)
    close_sentence()
    return sentences


def convert_sentences(
    sentences: Sequence[Sentence], src: str, dst: str, field: str = "ner"
) -> list[Sentence]:
    """Sentences with column ``field`` ("ner" or "chunk") re-tagged from ``src`` to ``dst``."""
    return [s._replace(**{field: convert(getattr(s, field), src, dst)}) for s in sentences]


# ---- vocabularies --------------------------------------------------------------------------


def normalize_word(word: str, lowercase: bool = True, normalize_digits: bool = True) -> str:
    """C&W-style word normalization: lower-case, and every digit becomes 0 ("1996" -> "0000")."""
    if lowercase:
        word = word.lower()
    return _DIGIT.sub("0", word) if normalize_digits else word


@dataclasses.dataclass(frozen=True)
class Vocab:
    """Token <-> id. Word and suffix vocabularies start with ``<pad>`` = 0 and ``<unk>`` = 1 and
    normalize tokens before lookup; tag vocabularies have neither (padding is masked instead)."""

    tokens: tuple[str, ...]
    unk: str | None = None
    lowercase: bool = False
    normalize_digits: bool = False
    index: dict[str, int] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {token: i for i, token in enumerate(self.tokens)}
        if len(index) != len(self.tokens):
            raise ValueError("vocabulary tokens must be distinct")
        object.__setattr__(self, "index", index)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return self.normalize(token) in self.index

    def normalize(self, token: str) -> str:
        return normalize_word(token, self.lowercase, self.normalize_digits)

    def id(self, token: str) -> int:
        """Id of ``token``; unknown tokens map to ``<unk>``, or raise KeyError without one."""
        token = self.normalize(token)
        if self.unk is None:
            return self.index[token]
        return self.index.get(token, self.index[self.unk])

    def ids(self, tokens: Iterable[str]) -> np.ndarray:
        return np.array([self.id(t) for t in tokens], dtype=np.int32)

    def decode(self, ids: Iterable[int]) -> tuple[str, ...]:
        return tuple(self.tokens[int(i)] for i in ids)


def _counted_vocab(counts, min_count, max_size, extra=(), **normalization) -> Vocab:
    kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
    tokens = [PAD, UNK, *kept[:max_size]]
    seen = set(tokens)
    for token in extra:
        if token not in seen:
            seen.add(token)
            tokens.append(token)
    return Vocab(tuple(tokens), UNK, **normalization)


def build_word_vocab(
    sentences: Sequence[Sentence],
    min_count: int = 1,
    lowercase: bool = True,
    max_size: int | None = None,
    extra_words: Iterable[str] = (),
    normalize_digits: bool = True,
) -> Vocab:
    """Words seen ``min_count`` times (the ``max_size`` most frequent), then ``extra_words``.

    ``extra_words`` (say, the words of pretrained vectors) enter regardless of count and size, so
    their vectors can be used for words never seen in training (C&W's 100k-word dictionary).
    """
    counts = Counter(
        normalize_word(w, lowercase, normalize_digits) for s in sentences for w in s.words
    )
    extra = (normalize_word(w, lowercase, normalize_digits) for w in extra_words)
    return _counted_vocab(
        counts, min_count, max_size, extra, lowercase=lowercase, normalize_digits=normalize_digits
    )


def suffix(word: str, n: int = 3) -> str:
    """The last ``n`` characters, lower-cased (the whole word when shorter)."""
    return word.lower()[-n:]


def build_suffix_vocab(sentences: Sequence[Sentence], n: int = 3, min_count: int = 1) -> Vocab:
    counts = Counter(suffix(w, n) for s in sentences for w in s.words)
    return _counted_vocab(counts, min_count, None)


def prefix(word: str, n: int = 3) -> str:
    """The first ``n`` characters, lower-cased (the whole word when shorter)."""
    return word.lower()[:n]


def build_prefix_vocab(sentences: Sequence[Sentence], n: int = 3, min_count: int = 1) -> Vocab:
    counts = Counter(prefix(w, n) for s in sentences for w in s.words)
    return _counted_vocab(counts, min_count, None)


def build_shape_vocab(sentences: Sequence[Sentence], min_count: int = 1) -> Vocab:
    """The collapsed word shapes of the training words (``word_shape``)."""
    counts = Counter(word_shape(w) for s in sentences for w in s.words)
    return _counted_vocab(counts, min_count, None)


def tag_vocab(
    sentences: Sequence[Sentence], field: str = "ner", scheme: str | None = None
) -> Vocab:
    """Tags of column ``field``; with ``scheme``, every prefix of that scheme for every entity type
    seen (so a tag absent from training, like IOB1's rare B-MISC, still has an id). "O" is id 0.
    Convert the sentences to ``scheme`` first (:func:`convert_sentences`)."""
    seen = {t for s in sentences for t in getattr(s, field)}
    if scheme is None:
        tokens = sorted(seen, key=lambda t: (t != "O", t))
    else:
        if scheme not in SCHEMES:
            raise ValueError(f"unknown tag scheme {scheme!r}; expected one of {SCHEMES}")
        types = sorted({t.partition("-")[2] for t in seen if t != "O"})
        prefixes = "BIES" if scheme == "iobes" else "BI"
        tokens = ["O", *(f"{p}-{t}" for t in types for p in prefixes)]
        stray = seen - set(tokens)
        if stray:
            raise ValueError(f"tags {sorted(stray)} are not {scheme} tags; convert first")
    return Vocab(tuple(tokens))


# ---- features ------------------------------------------------------------------------------

CAPS_PAD, CAPS_LOWER, CAPS_UPPER, CAPS_INITIAL, CAPS_MIXED, CAPS_NO_LETTERS = range(6)
NUM_CAPS = 6


def caps_feature(word: str) -> int:
    """C&W's capitalization feature: all lower, all caps, initial cap, has a cap (not initial),
    no letters. 0 is reserved for padding."""
    letters = [c for c in word if c.isalpha()]
    if not letters:
        return CAPS_NO_LETTERS
    if all(c.islower() for c in letters):
        return CAPS_LOWER
    if all(c.isupper() for c in letters):
        return CAPS_UPPER
    return CAPS_INITIAL if word[0].isupper() else CAPS_MIXED


def word_shape(word: str) -> str:
    """Collapsed word shape: upper -> X, lower -> x, digit -> d, runs merged ("McDonald's" ->
    "XxXx'x", "1996-08-22" -> "d-d-d")."""
    shape = []
    for c in word:
        s = "X" if c.isupper() else "x" if c.isalpha() else "d" if c.isdigit() else c
        if not shape or shape[-1] != s:
            shape.append(s)
    return "".join(shape)


def encode(
    sentences: Sequence[Sentence],
    word_vocab: Vocab,
    tag_vocab: Vocab,
    *,
    field: str = "ner",
    suffix_vocab: Vocab | None = None,
    suffix_length: int = 3,
    prefix_vocab: Vocab | None = None,
    prefix_length: int = 3,
    shape_vocab: Vocab | None = None,
) -> dict[str, np.ndarray]:
    """Pad sentences into ``(S, Lmax)`` int32 arrays ``words``, ``caps``, ``tags`` (and ``suffix``,
    ``prefix``, ``shape`` with their vocabularies), a float32 0/1 ``mask`` and int32 ``lengths``
    (S,). Padding is id 0 everywhere; padded tags are 0 too, so use ``mask``."""
    lengths = np.array([len(s.words) for s in sentences], dtype=np.int32)
    shape = (len(sentences), max(int(lengths.max(initial=0)), 1))
    arrays = {name: np.zeros(shape, np.int32) for name in ("words", "caps", "tags")}
    lookups = {
        name: (vocab, fn)
        for name, vocab, fn in (
            ("suffix", suffix_vocab, lambda w: suffix(w, suffix_length)),
            ("prefix", prefix_vocab, lambda w: prefix(w, prefix_length)),
            ("shape", shape_vocab, word_shape),
        )
        if vocab is not None
    }
    for name in lookups:
        arrays[name] = np.zeros(shape, np.int32)
    for i, sentence in enumerate(sentences):
        n = len(sentence.words)
        arrays["words"][i, :n] = word_vocab.ids(sentence.words)
        arrays["caps"][i, :n] = [caps_feature(w) for w in sentence.words]
        for name, (vocab, fn) in lookups.items():
            arrays[name][i, :n] = vocab.ids(fn(w) for w in sentence.words)
        try:
            arrays["tags"][i, :n] = tag_vocab.ids(getattr(sentence, field))
        except KeyError as error:
            raise UserError(
                f"sentence {i} has {field} tag {error.args[0]!r}, which the tag vocabulary lacks; "
                "build the tag vocabulary with a scheme or from every split"
            ) from None
    arrays["mask"] = (np.arange(shape[1]) < lengths[:, None]).astype(np.float32)
    arrays["lengths"] = lengths
    return arrays


def bucket_by_length(
    arrays: dict[str, np.ndarray], num_buckets: int
) -> list[dict[str, np.ndarray]]:
    """Split encoded arrays into ``num_buckets`` groups of sentences of similar length.

    Sentences are sorted by length (stably) and cut into groups of nearly equal count; each group
    keeps only as many columns as its longest sentence. ``"index"`` holds each row's position in
    the input, to put predictions back in order.
    """
    order = np.argsort(arrays["lengths"], kind="stable")
    buckets = []
    for index in np.array_split(order, num_buckets):
        if index.size == 0:
            continue
        width = max(int(arrays["lengths"][index].max()), 1)
        bucket = {k: v[index][:, :width] if v.ndim == 2 else v[index] for k, v in arrays.items()}
        bucket["index"] = index
        buckets.append(bucket)
    return buckets
