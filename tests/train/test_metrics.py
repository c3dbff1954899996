"""Metrics against independent implementations: numpy, scikit-learn, seqeval (conlleval rules)."""

import math
import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from lecturenn.data.conll import read_conll
from lecturenn.data.schemes import extract_entities
from lecturenn.nn.losses import accuracy
from lecturenn.train.metrics import (
    confusion_matrix,
    entity_f1,
    format_conlleval_table,
    perplexity,
)

TYPES = ("PER", "LOC", "ORG")


def _seqeval_entities(tags):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {(t, start, end + 1) for t, start, end in get_entities(list(tags))}


def _any_tags(prefixes):
    tag = st.one_of(
        st.just("O"),
        st.builds(lambda p, t: f"{p}-{t}", st.sampled_from(prefixes), st.sampled_from(TYPES)),
    )
    return st.lists(tag, max_size=12)


@settings(max_examples=300, deadline=None)
@given(_any_tags("BI"))
def test_extract_entities_matches_seqeval_on_any_iob_sequence(tags):
    assert extract_entities(tags, "iob1") == _seqeval_entities(tags)
    assert extract_entities(tags, "iob2") == _seqeval_entities(tags)


@settings(max_examples=300, deadline=None)
@given(_any_tags("BIES"))
def test_extract_entities_matches_seqeval_on_any_iobes_sequence(tags):
    assert extract_entities(tags, "iobes") == _seqeval_entities(tags)


@pytest.mark.parametrize(
    "tags, scheme, expected",
    [
        (["O", "I-PER", "I-PER", "O"], "iob2", {("PER", 1, 3)}),  # stray I- opens a chunk
        (["B-PER", "I-LOC"], "iob2", {("PER", 0, 1), ("LOC", 1, 2)}),  # type change mid-chunk
        (["I-PER", "I-PER", "B-PER", "O"], "iob1", {("PER", 0, 2), ("PER", 2, 3)}),
        (["I-PER", "I-LOC"], "iob1", {("PER", 0, 1), ("LOC", 1, 2)}),
        (["O", "B-LOC", "I-LOC"], "iob2", {("LOC", 1, 3)}),  # entity at sentence end
        (["I-ORG"], "iob1", {("ORG", 0, 1)}),
        (["O", "O"], "iob1", set()),
        ([], "iob1", set()),
        (["S-PER", "S-PER"], "iobes", {("PER", 0, 1), ("PER", 1, 2)}),
        (["B-PER", "E-PER", "I-PER"], "iobes", {("PER", 0, 2), ("PER", 2, 3)}),
        (["B-LOC", "I-LOC", "E-LOC", "O", "S-ORG"], "iobes", {("LOC", 0, 3), ("ORG", 4, 5)}),
    ],
)
def test_extract_entities_edge_cases(tags, scheme, expected):
    assert extract_entities(tags, scheme) == expected


@pytest.mark.parametrize(
    "tags, scheme", [(["S-PER"], "iob1"), (["E-PER"], "iob2"), (["PER"], "iob1")]
)
def test_extract_entities_rejects_tags_outside_the_scheme(tags, scheme):
    with pytest.raises(ValueError, match="not a valid"):
        extract_entities(tags, scheme)


def _assert_matches_seqeval(gold, pred, scheme="iob1"):
    result = entity_f1(gold, pred, scheme)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert result["precision"] == pytest.approx(100 * precision_score(gold, pred), abs=1e-9)
        assert result["recall"] == pytest.approx(100 * recall_score(gold, pred), abs=1e-9)
        assert result["f1"] == pytest.approx(100 * f1_score(gold, pred), abs=1e-9)
        report = classification_report(gold, pred, output_dict=True)
    types = {k for k in report if not k.endswith(" avg")}
    assert set(result["per_type"]) == types
    for entity_type, row in result["per_type"].items():
        assert row["precision"] == pytest.approx(100 * report[entity_type]["precision"], abs=1e-9)
        assert row["recall"] == pytest.approx(100 * report[entity_type]["recall"], abs=1e-9)
        assert row["f1"] == pytest.approx(100 * report[entity_type]["f1-score"], abs=1e-9)
        assert row["gold"] == report[entity_type]["support"]
    return result


def _corrupt(sentences, rate, rng, labels):
    return [[str(rng.choice(labels)) if rng.random() < rate else t for t in s] for s in sentences]


@settings(max_examples=60, deadline=None)
@given(st.lists(_any_tags("BI"), min_size=1, max_size=6), st.integers(0, 2**31 - 1))
def test_entity_f1_matches_seqeval_on_random_predictions(gold, seed):
    rng = np.random.default_rng(seed)
    labels = ["O"] + [f"{p}-{t}" for p in "BI" for t in TYPES]
    _assert_matches_seqeval(gold, _corrupt(gold, 0.3, rng, labels))


def test_entity_f1_matches_seqeval_on_corrupted_conll_dev_set(data_root):
    gold = [list(s.ner) for s in read_conll(data_root / "conll2003" / "eng.testa")]
    labels = sorted({t for s in gold for t in s})
    rng = np.random.default_rng(0)
    pred = _corrupt(gold, 0.05, rng, labels)
    result = _assert_matches_seqeval(gold, pred)
    assert result["tokens"] == sum(map(len, gold))
    perfect = entity_f1(gold, gold)
    assert perfect["f1"] == 100.0 and perfect["gold"] == perfect["correct"]


def test_entity_f1_with_empty_predictions_and_counts():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG"]]
    result = _assert_matches_seqeval(gold, [["O"] * 4, ["O"] * 2])
    assert (result["gold"], result["predicted"], result["correct"]) == (3, 0, 0)
    assert result["precision"] == result["recall"] == result["f1"] == 0.0
    assert result["accuracy"] == pytest.approx(100 * 2 / 6)
    # right span with the wrong type, and a right entity: precision 1/2, recall 1/3
    result = _assert_matches_seqeval(gold, [["B-ORG", "I-ORG", "O", "B-LOC"], ["O", "O"]])
    assert result["precision"] == pytest.approx(50.0) and result["recall"] == pytest.approx(100 / 3)


def test_entity_f1_rejects_misaligned_input():
    with pytest.raises(ValueError, match="sentence 0"):
        entity_f1([["O", "O"]], [["O"]])


def test_conlleval_table_reports_the_numbers_of_the_result():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "B-LOC"]]
    result = entity_f1(gold, pred)
    lines = format_conlleval_table(result).splitlines()
    assert lines[0] == "processed 6 tokens with 3 phrases; found: 3 phrases; correct: 2."
    numbers = [float(x) for x in re.findall(r"-?\d+\.\d+", lines[1])]
    expected = [result[k] for k in ("accuracy", "precision", "recall", "f1")]
    assert numbers == pytest.approx(expected, abs=0.005)
    assert [line.split(":")[0].strip() for line in lines[2:]] == ["LOC", "ORG", "PER"]
    assert lines[2].endswith("  1") and "precision:   0.00%" in lines[2]


def test_accuracy_perplexity_and_confusion_against_numpy_and_sklearn():
    rng = np.random.default_rng(1)
    pred, gold = rng.integers(0, 4, (5, 7)), rng.integers(0, 4, (5, 7))
    mask = (rng.random((5, 7)) < 0.6).astype(np.float64)
    scores = np.eye(4)[pred] + rng.normal(scale=0.1, size=(5, 7, 4))  # arg max = pred
    assert float(accuracy(scores, gold)) == pytest.approx((pred == gold).mean())
    masked = ((pred == gold) * mask).sum() / mask.sum()
    assert float(accuracy(scores, gold, mask)) == pytest.approx(masked)
    assert float(perplexity(2.5)) == pytest.approx(math.exp(2.5))
    np.testing.assert_array_equal(
        confusion_matrix(pred, gold, 4),
        sk_confusion_matrix(gold.ravel(), pred.ravel(), labels=range(4)),
    )
    keep = mask.ravel() > 0
    np.testing.assert_array_equal(
        confusion_matrix(pred, gold, 4, mask),
        sk_confusion_matrix(gold.ravel()[keep], pred.ravel()[keep], labels=range(4)),
    )
