"""Text corpora for language models: PTB words, tiny-shakespeare characters, and their batching.

Word corpora follow Mikolov's preprocessing as read by Zaremba et al. (2014): each line is split on
whitespace and ends with an ``<eos>`` token; the vocabulary comes from the training file. The
batching functions take a 1-D id array and produce the shapes the models train on:

* :func:`batchify` — B parallel streams, (B, N // B), for truncated BPTT (Zaremba's reader);
* :func:`bptt_windows` — consecutive (B, T) windows of the streams with next-token targets;
* :func:`ngram_windows` — fixed contexts of n previous tokens for Bengio et al.'s NPLM (2003).

The batching functions use only slicing, reshape, transpose and indexing, so they return numpy
arrays for numpy input and jax arrays for jax input.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from lecturenn.data.registry import data_root
from lecturenn.errors import UserError

EOS = "<eos>"
PTB_SPLITS = ("train", "valid", "test")


def _missing(path: Path, dataset: str) -> UserError:
    return UserError(
        f"{path}: no such file; run `lecturenn data fetch {dataset}` "
        "or set LECTURENN_DATA to the folder that holds it"
    )


def read_text(path: str | Path, dataset: str) -> str:
    """A corpus file's text; a file that is missing or not UTF-8 is a UserError naming it (and,
    for bad bytes, the line)."""
    path = Path(path)
    if not path.is_file():
        raise _missing(path, dataset)
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise UserError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[error.start]:02x}); is it the right file?"
        ) from None


def _lines(path: str | Path, dataset: str) -> list[str]:
    lines = read_text(path, dataset).split("\n")
    # A final newline ends the last line; it does not start an empty one.
    return lines[:-1] if lines[-1] == "" else lines


def read_words(path: str | Path) -> list[str]:
    """Tokens of a word corpus: each line split on whitespace, then ``<eos>`` (Mikolov/Zaremba)."""
    return [token for line in _lines(path, "ptb") for token in (*line.split(), EOS)]


def build_vocab(tokens: Iterable[str]) -> tuple[dict[str, int], list[str]]:
    """``(word_to_id, id_to_word)``, ids by decreasing frequency, ties broken alphabetically."""
    counts = Counter(tokens)
    id_to_word = sorted(counts, key=lambda word: (-counts[word], word))
    return {word: i for i, word in enumerate(id_to_word)}, id_to_word


def _encode_words(path: Path, word_to_id: dict[str, int]) -> np.ndarray:
    """Ids of a word file; a word outside the vocabulary is an error naming file and line."""
    ids = []
    for number, line in enumerate(_lines(path, "ptb"), start=1):
        for token in (*line.split(), EOS):
            if token not in word_to_id:
                raise UserError(
                    f"{path}:{number}: word {token!r} is not in the training vocabulary; "
                    "map it to <unk> as in Mikolov's preprocessing"
                )
            ids.append(word_to_id[token])
    return np.asarray(ids, dtype=np.int32)


def load_ptb(root: str | Path | None = None) -> dict[str, Any]:
    """Penn Treebank (Mikolov split) from ``ROOT/ptb/ptb.{train,valid,test}.txt``.

    ``root`` defaults to the data root ($LECTURENN_DATA or ~/.cache/lecturenn). Returns
    ``{"train", "valid", "test"}`` as int32 id arrays (929,589 / 73,760 / 82,430 tokens with
    ``<eos>``), ``"vocab"`` (id → word, 10,000 words from the training file) and
    ``"word_to_id"``.
    """
    folder = (Path(root) if root is not None else data_root()) / "ptb"
    paths = {split: folder / f"ptb.{split}.txt" for split in PTB_SPLITS}
    for path in paths.values():
        if not path.is_file():
            raise _missing(path, "ptb")
    corpus: dict[str, Any] = {}
    for split, path in paths.items():  # train first: its words are the vocabulary
        if split == "train":
            words = read_words(path)
            if len(words) < 2:
                raise UserError(f"{path}: empty; the training split of a word corpus needs text")
            word_to_id, id_to_word = build_vocab(words)
        corpus[split] = _encode_words(path, word_to_id)
        if corpus[split].size < 2:
            raise UserError(f"{path}: empty; the {split} split of a word corpus needs text")
    corpus["vocab"] = id_to_word
    corpus["word_to_id"] = word_to_id
    return corpus


def load_chars(path: str | Path, valid_fraction: float = 0.1) -> dict[str, Any]:
    """A character corpus (tiny-shakespeare: 1,115,394 characters, 65 symbols).

    The vocabulary is every character of the whole file, sorted by code point (as in char-rnn
    and nanoGPT, so that validation has no unknown symbols). The first
    ``int(len * (1 - valid_fraction))`` characters are ``"train"``, the rest ``"valid"``
    (int32 id arrays); ``"vocab"`` maps id → character.
    """
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"load_chars: valid_fraction must be in (0, 1), got {valid_fraction}")
    path = Path(path)
    text = read_text(path, "tinyshakespeare")
    if len(text) < 2:
        raise UserError(f"{path}: the file holds {len(text)} characters; a corpus needs text")
    # One code point per uint32 lets numpy map characters to ids without a Python loop.
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    symbols = np.unique(codes)
    ids = np.searchsorted(symbols, codes).astype(np.int32)
    split = int(len(ids) * (1.0 - valid_fraction))
    return {
        "train": ids[:split],
        "valid": ids[split:],
        "vocab": [chr(code) for code in symbols],
    }


def batchify(ids: Any, batch_size: int) -> Any:
    """(B, N // B): the corpus cut into B contiguous streams, row b = ids[b·L : (b+1)·L].

    Zaremba et al.'s reader: each stream is read left to right by one row of every batch, so the
    state carried between windows continues the same text. The last N mod B tokens are dropped.
    """
    length = len(ids) // batch_size
    if length == 0:
        raise ValueError(f"batchify: {len(ids)} tokens cannot fill {batch_size} streams")
    return ids[: batch_size * length].reshape(batch_size, length)


def bptt_windows(streams: Any, num_steps: int) -> tuple[Any, Any]:
    """Consecutive windows of the (B, L) streams: ``inputs``, ``targets`` each (W, B, T).

    Window w covers stream positions [wT, (w+1)T) and its targets are the next tokens,
    [wT + 1, (w+1)T + 1). W = (L − 1) // T, so a last partial window is dropped (as in Zaremba's
    ``ptb_iterator``). The windows of one epoch are meant to be run in order, carrying the state.
    """
    batch_size, length = streams.shape
    num_windows = (length - 1) // num_steps
    if num_windows == 0:
        raise ValueError(
            f"bptt_windows: streams of {length} tokens are too short for T={num_steps}"
        )
    span = num_windows * num_steps

    def windows(block):
        return block.reshape(batch_size, num_windows, num_steps).transpose(1, 0, 2)

    return windows(streams[:, :span]), windows(streams[:, 1 : span + 1])


def ngram_windows(ids: Any, context: int) -> tuple[Any, Any]:
    """Bengio et al. (2003) NPLM examples: ``contexts`` (N − n, n) and ``targets`` (N − n,).

    Example j predicts ids[j + n] from the n previous ids, ids[j : j + n].
    """
    count = len(ids) - context
    if context < 1 or count < 1:
        raise ValueError(f"ngram_windows: need context >= 1 and more than {context} tokens")
    positions = np.arange(count)[:, None] + np.arange(context)[None, :]
    return ids[positions], ids[context:]
