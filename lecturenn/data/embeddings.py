"""Pre-trained word vectors (GloVe / word2vec text format) aligned to a vocabulary.

CS224n lecture 2 / Collobert et al. 2011 §4: initialising the lookup table with vectors trained
on unlabeled text is what lifts window-NER F1 from ~81 to ~88. The file format is one word per
line followed by its numbers, separated by spaces; word2vec's text format adds a first line
``"<count> <dim>"``, which is detected. Files may be gzipped (recognised by their magic bytes).

Only lines whose word is in the requested vocabulary are converted to numbers, so aligning a 20k
vocabulary to a 400k-line file costs little more than decompressing it; the selected numbers are
converted in one ``np.loadtxt`` pass. Every line's number count
is still checked; a non-numeric field on a line that is never converted goes unnoticed.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from lecturenn.errors import UserError


class VectorStats(NamedTuple):
    """How well the file covers the vocabulary."""

    found: int  # vocabulary entries that received a vector
    total: int  # vocabulary entries
    coverage: float  # found / total
    dim: int  # numbers per vector
    vectors: int  # vector lines in the file


def _open(path: Path) -> BinaryIO:
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    if gzipped:
        return io.BufferedReader(gzip.open(path, "rb"), buffer_size=1 << 20)
    return open(path, "rb", buffering=1 << 20)


def _is_header(fields: list[bytes]) -> bool:
    return len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit()


def _records(path: Path, dim: int | None, counts: list[int]) -> Iterator[tuple[int, bytes, bytes]]:
    """Yield ``(line_number, word, numbers)`` for every vector line, numbers left unparsed.

    Checks that each line has ``dim`` numbers (inferred from the header or the first vector
    when ``dim`` is None) and, at the end, the header's count. ``counts`` receives
    ``[dim, vectors]`` once the file has been read to its end.
    """
    header_count = None
    vectors = 0
    try:
        with _open(path) as stream:
            for number, line in enumerate(stream, 1):
                word, _, rest = line.partition(b" ")
                if b"\t" in word:
                    word, _, rest = line.strip().replace(b"\t", b" ").partition(b" ")
                rest = rest.strip()
                if not word.strip():
                    if line.strip():
                        raise UserError(f"{path}:{number}: the line starts with a space, no word")
                    continue
                if number == 1 and _is_header(line.split()):
                    header_count, header_dim = (int(x) for x in line.split())
                    if dim is not None and header_dim != dim:
                        raise UserError(
                            f"{path}:1: the header says dimension {header_dim}, expected {dim}"
                        )
                    dim = header_dim
                    continue
                # Numbers are usually single-space separated; fall back to a full split otherwise.
                width = rest.count(b" ") + 1 if rest else 0
                if width != dim:
                    fields = rest.split()
                    width, rest = len(fields), b" ".join(fields)
                if dim is None and width > 0:
                    dim = width
                if width != dim:
                    raise UserError(
                        f"{path}:{number}: expected {dim or 'some'} numbers after "
                        f"{_text(word.strip())!r}, found {width}"
                    )
                vectors += 1
                yield number, word, rest
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise UserError(
            f"{path} is truncated or not valid gzip ({error}): fetch it again"
        ) from error
    if dim is None or vectors == 0:
        raise UserError(f"{path} holds no word vectors")
    if header_count is not None and header_count != vectors:
        raise UserError(
            f"{path}:1: the header announces {header_count} vectors but the file has {vectors} "
            "(truncated?)"
        )
    counts[:] = [dim, vectors]


def _text(word: bytes) -> str:
    return word.decode("utf-8", errors="replace")


def _parse(path: Path, numbers: list[int], rests: list[bytes], dim: int, dtype) -> np.ndarray:
    """Convert the selected numbers in one C-level pass; look for the bad line only on failure."""
    if not rests:
        return np.zeros((0, dim), dtype)
    try:
        block = np.loadtxt(
            io.BytesIO(b"\n".join(rests)), dtype=dtype, delimiter=" ", comments=None, ndmin=2
        )
    except ValueError as error:
        for number, rest in zip(numbers, rests, strict=True):
            fields = rest.split()
            if len(fields) != dim:
                raise UserError(
                    f"{path}:{number}: expected {dim} numbers, found {len(fields)}"
                ) from None
            for field in fields:
                if not _is_number(field):
                    raise UserError(f"{path}:{number}: {_text(field)!r} is not a number") from None
        raise UserError(f"{path}: could not read the vectors ({error})") from error
    if block.shape != (len(rests), dim):
        raise UserError(
            f"{path}: expected {len(rests)} vectors of {dim} numbers, read {block.shape}"
        )
    bad = np.flatnonzero(~np.isfinite(block).all(axis=1))
    if bad.size:
        raise UserError(f"{path}:{numbers[bad[0]]}: the vector holds a NaN or infinite number")
    return block


def _is_number(field: bytes) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def read_vocab_words(
    path: str | Path, *, lowercase: bool = True, max_words: int | None = None
) -> list[str]:
    """The distinct words of a vector file in file order (first occurrence wins).

    GloVe and word2vec files are sorted by frequency, so ``max_words=N`` gives the N most frequent.
    """
    path = Path(path)
    words: dict[str, None] = {}
    for _, word, _ in _records(path, None, []):
        key = _text(word)
        words.setdefault(key.lower() if lowercase else key)
        if max_words is not None and len(words) >= max_words:
            break
    return list(words)


def load_word_vectors(
    path: str | Path,
    vocab_words: list[str] | None = None,
    *,
    lowercase: bool = True,
    dim: int | None = None,
    dtype: np.dtype | type = np.float32,
) -> tuple[np.ndarray, np.ndarray, VectorStats]:
    """Vectors for ``vocab_words`` (row i for word i) from a GloVe/word2vec text file.

    With ``lowercase`` a vocabulary word matches the file's first word equal to it ignoring
    case. Rows of words the file lacks are zeros and ``found_mask`` is False there: initialise
    them as the model prefers. ``vocab_words=None`` means ``read_vocab_words(path, lowercase=...)``.
    Returns ``(matrix [len(vocab), dim], found_mask [len(vocab)], stats)``.
    """
    path = Path(path)
    rows_of: dict[str, list[int]] | None = None
    if vocab_words is not None:
        rows_of = {}
        for row, word in enumerate(vocab_words):
            rows_of.setdefault(word.lower() if lowercase else word, []).append(row)

    # First occurrence of each wanted key: its line number and its unparsed numbers.
    selected: dict[str, int] = {}
    numbers, rests = [], []
    counts: list[int] = []
    for number, word, rest in _records(path, dim, counts):
        key = _text(word)
        if lowercase:
            key = key.lower()
        if key in selected or (rows_of is not None and key not in rows_of):
            continue
        selected[key] = len(rests)
        numbers.append(number)
        rests.append(rest)
    dim, total_vectors = counts
    block = _parse(path, numbers, rests, dim, np.dtype(dtype))

    if rows_of is None:
        matrix, found_mask = block, np.ones(len(block), bool)
    else:
        matrix = np.zeros((len(vocab_words), dim), block.dtype)
        found_mask = np.zeros(len(vocab_words), bool)
        for key, index in selected.items():
            matrix[rows_of[key]] = block[index]
            found_mask[rows_of[key]] = True
    found, total = int(found_mask.sum()), len(found_mask)
    return matrix, found_mask, VectorStats(found, total, found / max(total, 1), dim, total_vectors)
