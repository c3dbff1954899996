"""Word-vector loading: alignment to a vocabulary, formats, malformed lines, the real GloVe file."""

import gzip
import itertools
from pathlib import Path

import numpy as np
import pytest

from lecturenn.data.embeddings import load_word_vectors, read_vocab_words
from lecturenn.errors import UserError

WORDS = ["the", "Paris", "paris", "of", "naïve", "42"]


def _write(path: Path, words, vectors, *, header: bool = False, gz: bool = False) -> Path:
    lines = [f"{len(words)} {vectors.shape[1]}"] if header else []
    lines += [
        w + " " + " ".join(repr(float(x)) for x in v) for w, v in zip(words, vectors, strict=True)
    ]
    data = ("\n".join(lines) + "\n").encode()
    if gz:
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


@pytest.fixture
def vectors():
    return np.random.default_rng(0).normal(size=(len(WORDS), 4))


@pytest.mark.parametrize("header,gz", list(itertools.product([False, True], [False, True])))
def test_aligns_to_the_vocabulary_case_insensitively(tmp_path, vectors, header, gz):
    path = _write(tmp_path / "v.txt", WORDS, vectors, header=header, gz=gz)
    vocab = ["PARIS", "<unk>", "the", "Naïve", "missing", "the", "42"]
    matrix, found, stats = load_word_vectors(path, vocab, dtype=np.float64)
    np.testing.assert_array_equal(found, [True, False, True, True, False, True, True])
    # "Paris" comes before "paris" in the file: the first case-insensitive match wins.
    np.testing.assert_array_equal(matrix[0], vectors[1])
    np.testing.assert_array_equal(matrix[2], vectors[0])
    np.testing.assert_array_equal(matrix[5], vectors[0])
    np.testing.assert_array_equal(matrix[3], vectors[4])
    np.testing.assert_array_equal(matrix[6], vectors[5])
    assert not matrix[[1, 4]].any()
    assert stats.found == 5 and stats.total == 7 and stats.coverage == pytest.approx(5 / 7)
    assert stats.dim == 4 and stats.vectors == len(WORDS)


def test_exact_case_and_float32(tmp_path, vectors):
    path = _write(tmp_path / "v.txt.gz", WORDS, vectors, gz=True)
    matrix, found, _ = load_word_vectors(path, ["paris", "Paris", "THE"], lowercase=False)
    assert matrix.dtype == np.float32
    np.testing.assert_array_equal(found, [True, True, False])
    np.testing.assert_allclose(matrix[0], vectors[2].astype(np.float32), rtol=1e-7)
    np.testing.assert_allclose(matrix[1], vectors[1].astype(np.float32), rtol=1e-7)


def test_without_a_vocabulary_rows_follow_read_vocab_words(tmp_path, vectors):
    path = _write(tmp_path / "v.txt", WORDS, vectors, header=True)
    words = read_vocab_words(path)
    assert words == ["the", "paris", "of", "naïve", "42"]
    assert read_vocab_words(path, lowercase=False) == WORDS
    assert read_vocab_words(path, max_words=2) == ["the", "paris"]
    matrix, found, stats = load_word_vectors(path, dtype=np.float64)
    assert found.all() and stats.coverage == 1.0
    np.testing.assert_array_equal(matrix, vectors[[0, 1, 3, 4, 5]])


def _expect_error(tmp_path: Path, text: str, pattern: str, **kwargs) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(UserError, match=pattern.replace("FILE", str(path))):
        load_word_vectors(path, ["the", "of", "a"], **kwargs)


def test_malformed_lines_name_file_and_line(tmp_path):
    _expect_error(
        tmp_path, "the 1 2 3\nof 1 2\n", r"FILE:2: expected 3 numbers after 'of', found 2"
    )
    _expect_error(tmp_path, "the 1 2 3\nzz 1 2 3 4\n", r"FILE:2: expected 3 numbers .* found 4")
    _expect_error(tmp_path, "the 1 2 3\nof 1 x 3\n", r"FILE:2: 'x' is not a number")
    _expect_error(tmp_path, "the 1 2 3\nof 1  2\n", r"FILE:2: expected 3 numbers, found 2")
    _expect_error(tmp_path, "the 1 2 3\n", r"FILE:1: expected 5 numbers", dim=5)
    _expect_error(tmp_path, "3 2\nthe 1 2\nof 3 4\n", r"FILE:1: the header announces 3 vectors")
    _expect_error(tmp_path, "2 3\nthe 1 2\n", r"FILE:2: expected 3 numbers")
    _expect_error(tmp_path, "the\n", r"FILE:1: expected some numbers after 'the', found 0")
    _expect_error(tmp_path, "\n\n", r"FILE holds no word vectors")


def test_tolerates_blank_lines_tabs_and_trailing_spaces(tmp_path):
    path = tmp_path / "v.txt"
    path.write_bytes(b"the 1 2 3 \r\n\nof\t4  5 6\n")
    matrix, found, _ = load_word_vectors(path, ["of", "the"], dtype=np.float64)
    assert found.all()
    np.testing.assert_array_equal(matrix, [[4, 5, 6], [1, 2, 3]])


def test_truncated_gzip_is_a_user_error(tmp_path, vectors):
    path = _write(tmp_path / "v.txt.gz", WORDS * 50, np.tile(vectors, (50, 1)), gz=True)
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(UserError, match="truncated or not valid gzip"):
        load_word_vectors(path, ["the"])


def test_real_glove_subset(data_root):
    path = data_root / "glove" / "glove.6B.50d.subset.txt.gz"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    # An independent reading of the first lines, with str.split and float().
    expected = {}
    with gzip.open(path, "rt", encoding="utf-8") as stream:
        for line in itertools.islice(stream, 1000):
            word, *numbers = line.split(" ")
            expected.setdefault(word, [float(x) for x in numbers])
    assert "germany" in expected and "eu" in expected
    vocab = ["The", ",", "Germany", "eu", "qxqxqx-not-a-word", "of"]
    matrix, found, stats = load_word_vectors(path, vocab, dtype=np.float64)
    np.testing.assert_array_equal(found, [True, True, True, True, False, True])
    for row, word in enumerate(vocab):
        if found[row]:
            np.testing.assert_array_equal(matrix[row], expected[word.lower()])
    assert stats.dim == 50 and stats.vectors == 103_446 and stats.coverage == pytest.approx(5 / 6)
