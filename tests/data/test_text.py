"""Word and character corpora, and the batching of id streams for language models."""

from collections import Counter

import jax.numpy as jnp
import numpy as np
import pytest

from lecturenn.data.text import (
    batchify,
    bptt_windows,
    build_vocab,
    load_chars,
    load_ptb,
    ngram_windows,
    read_words,
)
from lecturenn.errors import UserError


def write_ptb(root, train="a b\nb c\n", valid="c a\n", test="b\n"):
    folder = root / "ptb"
    folder.mkdir()
    for split, text in {"train": train, "valid": valid, "test": test}.items():
        (folder / f"ptb.{split}.txt").write_text(text)
    return folder


# --- real corpora ------------------------------------------------------------------------------


def test_ptb_has_the_published_token_counts_and_vocabulary(data_root):
    corpus = load_ptb(data_root)
    assert len(corpus["train"]) == 929_589
    assert len(corpus["valid"]) == 73_760
    assert len(corpus["test"]) == 82_430
    assert len(corpus["vocab"]) == 10_000
    for split in ("train", "valid", "test"):
        assert corpus[split].dtype == np.int32
        assert corpus[split].min() >= 0 and corpus[split].max() < 10_000
    vocab, word_to_id = corpus["vocab"], corpus["word_to_id"]
    assert all(word_to_id[word] == i for i, word in enumerate(vocab))
    # The ids decode back to the file: first line of valid, then its <eos>.
    first_line = (data_root / "ptb" / "ptb.valid.txt").read_text().split("\n")[0].split()
    decoded = [vocab[i] for i in corpus["valid"][: len(first_line) + 1]]
    assert decoded == [*first_line, "<eos>"]
    # Frequency order, checked against an independent count of the training ids.
    counts = np.bincount(corpus["train"], minlength=10_000)
    assert np.all(np.diff(counts) <= 0)
    assert np.sum(corpus["train"] == word_to_id["<eos>"]) == 42_068


def test_tinyshakespeare_has_65_symbols_and_a_90_10_split(data_root):
    path = data_root / "tinyshakespeare" / "input.txt"
    corpus = load_chars(path)
    text = path.read_text()
    assert len(text) == 1_115_394
    assert len(corpus["vocab"]) == 65 and corpus["vocab"] == sorted(set(text))
    assert len(corpus["train"]) == int(1_115_394 * 0.9)
    assert len(corpus["train"]) + len(corpus["valid"]) == 1_115_394
    vocab = corpus["vocab"]
    assert "".join(vocab[i] for i in corpus["train"][:200]) == text[:200]
    assert "".join(vocab[i] for i in corpus["valid"][-200:]) == text[-200:]


# --- small files -------------------------------------------------------------------------------


def test_read_words_appends_eos_per_line_including_an_unterminated_last_line(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text(" the cat  sat \n\n on\tmat")
    assert read_words(path) == ["the", "cat", "sat", "<eos>", "<eos>", "on", "mat", "<eos>"]


def test_build_vocab_orders_by_frequency_then_alphabetically():
    tokens = ["b", "c", "a", "c", "b", "d", "c"]
    word_to_id, id_to_word = build_vocab(tokens)
    assert id_to_word == ["c", "b", "a", "d"]
    assert word_to_id == {"c": 0, "b": 1, "a": 2, "d": 3}
    counts = Counter(tokens)
    assert [counts[w] for w in id_to_word] == sorted(counts.values(), reverse=True)


def test_load_ptb_encodes_every_split_with_the_training_vocabulary(tmp_path):
    write_ptb(tmp_path)
    corpus = load_ptb(tmp_path)
    # train tokens: a b <eos> b c <eos> -> b and <eos> twice; then a, c alphabetically.
    assert corpus["vocab"] == ["<eos>", "b", "a", "c"]
    np.testing.assert_array_equal(corpus["train"], [2, 1, 0, 1, 3, 0])
    np.testing.assert_array_equal(corpus["valid"], [3, 2, 0])
    np.testing.assert_array_equal(corpus["test"], [1, 0])


def test_load_ptb_missing_file_names_the_path_and_the_fetch_command(tmp_path):
    folder = write_ptb(tmp_path)
    (folder / "ptb.test.txt").unlink()
    with pytest.raises(UserError, match=r"ptb\.test\.txt.*lecturenn data fetch ptb"):
        load_ptb(tmp_path)


def test_load_ptb_out_of_vocabulary_word_names_file_and_line(tmp_path):
    write_ptb(tmp_path, valid="a b\nb zebra\n")
    with pytest.raises(UserError, match=r"ptb\.valid\.txt:2: word 'zebra'"):
        load_ptb(tmp_path)


def test_load_chars_split_and_missing_file(tmp_path):
    path = tmp_path / "chars.txt"
    path.write_text("hello world!")
    corpus = load_chars(path, valid_fraction=0.25)
    assert corpus["vocab"] == sorted(set("hello world!"))
    assert len(corpus["train"]) == 9 and len(corpus["valid"]) == 3
    decode = lambda ids: "".join(corpus["vocab"][i] for i in ids)
    assert decode(corpus["train"]) == "hello wor" and decode(corpus["valid"]) == "ld!"
    with pytest.raises(UserError, match="absent.txt.*lecturenn data fetch tinyshakespeare"):
        load_chars(tmp_path / "absent.txt")


# --- batching ----------------------------------------------------------------------------------


@pytest.mark.parametrize("as_array", [np.asarray, jnp.asarray])
def test_batchify_makes_contiguous_streams_and_drops_the_remainder(as_array):
    streams = batchify(as_array(np.arange(23)), 4)
    assert streams.shape == (4, 5)
    for b in range(4):
        np.testing.assert_array_equal(streams[b], np.arange(5 * b, 5 * b + 5))
    with pytest.raises(ValueError):
        batchify(np.arange(3), 4)


@pytest.mark.parametrize("as_array", [np.asarray, jnp.asarray])
def test_bptt_windows_shift_targets_by_one_and_drop_the_partial_window(as_array):
    streams = as_array(np.arange(3 * 11).reshape(3, 11))  # L = 11
    inputs, targets = bptt_windows(streams, 3)
    assert inputs.shape == targets.shape == (3, 3, 3)  # W = (11 - 1) // 3
    for w in range(3):
        np.testing.assert_array_equal(inputs[w], np.asarray(streams)[:, 3 * w : 3 * w + 3])
        np.testing.assert_array_equal(targets[w], np.asarray(streams)[:, 3 * w + 1 : 3 * w + 4])
    # Exactly divisible: L = 10, T = 3 leaves the targets one token for a full third window.
    inputs, _ = bptt_windows(np.arange(20).reshape(2, 10), 3)
    assert inputs.shape == (3, 2, 3)
    inputs, _ = bptt_windows(np.arange(18).reshape(2, 9), 3)
    assert inputs.shape == (2, 2, 3)  # 9 tokens: the third window would need a 10th target


def test_ngram_windows_context_precedes_target():
    ids = np.arange(10, 17)
    contexts, targets = ngram_windows(ids, 3)
    assert contexts.shape == (4, 3) and targets.shape == (4,)
    for j in range(4):
        np.testing.assert_array_equal(contexts[j], ids[j : j + 3])
        assert targets[j] == ids[j + 3]
    with pytest.raises(ValueError):
        ngram_windows(ids, 7)
