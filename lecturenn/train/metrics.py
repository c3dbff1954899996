"""Evaluation metrics: perplexity, confusion matrix, and entity-level P/R/F1.

Entity scores follow conlleval (the CoNLL-2000/2003 shared-task script, as used by Collobert et al.
2011 and the CS224n NER assignment): a predicted entity counts as correct only when its type, first
token and last token all match a gold entity. Chunks are decoded with conlleval's start/end rules,
extended for IOBES the way seqeval extends them (seqeval's default mode reproduces conlleval).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from lecturenn.data.schemes import extract_entities


def perplexity(mean_nll: float | jax.Array) -> jax.Array:
    """Perplexity = exp(mean negative log-likelihood per token, in nats) (CS224n lecture 6)."""
    return jnp.exp(mean_nll)


def confusion_matrix(
    pred: jax.Array, gold: jax.Array, num_classes: int, mask: jax.Array | None = None
) -> jax.Array:
    """Counts ``C[i, j]`` of positions with gold class i predicted as j (rows gold, as sklearn)."""
    pred = jnp.asarray(pred).reshape(-1)
    gold = jnp.asarray(gold).reshape(-1)
    weight = jnp.ones(pred.shape, jnp.int32) if mask is None else jnp.asarray(mask).reshape(-1)
    counts = jnp.zeros((num_classes, num_classes), jnp.int32)
    return counts.at[gold, pred].add(weight.astype(jnp.int32))


def _prf(correct: int, predicted: int, gold: int) -> dict[str, float]:
    # conlleval: precision is 0 when nothing was predicted, recall 0 when nothing was gold.
    precision = 100.0 * correct / predicted if predicted else 0.0
    recall = 100.0 * correct / gold if gold else 0.0
    total = precision + recall
    f1 = 2.0 * precision * recall / total if total else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def entity_f1(
    gold_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]], scheme: str = "iob1"
) -> dict:
    """Entity-level precision, recall and F1 in percent, overall and per type, as conlleval.

    ``gold_tags`` and ``pred_tags`` are lists of sentences of tag strings, aligned token by token.
    Returns ``{"precision", "recall", "f1", "accuracy", "tokens", "gold", "predicted", "correct",
    "per_type": {type: {"precision", "recall", "f1", "gold", "predicted", "correct"}}}`` where
    ``gold``/``predicted``/``correct`` count entities and ``accuracy`` is token accuracy (percent).
    """
    if len(gold_tags) != len(pred_tags):
        raise ValueError(f"{len(gold_tags)} gold sentences but {len(pred_tags)} predicted")
    counts: dict[str, list[int]] = {}
    tokens = correct_tags = 0
    for index, (gold, pred) in enumerate(zip(gold_tags, pred_tags, strict=True)):
        if len(gold) != len(pred):
            raise ValueError(f"sentence {index}: {len(gold)} gold tags but {len(pred)} predicted")
        tokens += len(gold)
        correct_tags += sum(g == p for g, p in zip(gold, pred, strict=True))
        gold_entities = extract_entities(gold, scheme)
        pred_entities = extract_entities(pred, scheme)
        for entities, slot in (
            (gold_entities, 0),
            (pred_entities, 1),
            (gold_entities & pred_entities, 2),
        ):
            for entity_type, _, _ in entities:
                counts.setdefault(entity_type, [0, 0, 0])[slot] += 1
    totals = [sum(c[slot] for c in counts.values()) for slot in range(3)]
    result = {
        **_prf(totals[2], totals[1], totals[0]),
        "accuracy": 100.0 * correct_tags / tokens if tokens else 0.0,
        "tokens": tokens,
        "gold": totals[0],
        "predicted": totals[1],
        "correct": totals[2],
        "per_type": {},
    }
    for entity_type in sorted(counts):
        gold, predicted, correct = counts[entity_type]
        result["per_type"][entity_type] = {
            **_prf(correct, predicted, gold),
            "gold": gold,
            "predicted": predicted,
            "correct": correct,
        }
    return result


def format_conlleval_table(result: dict) -> str:
    """The report conlleval prints, from the dict of :func:`entity_f1`."""
    lines = [
        f"processed {result['tokens']} tokens with {result['gold']} phrases; "
        f"found: {result['predicted']} phrases; correct: {result['correct']}.",
        f"accuracy: {result['accuracy']:6.2f}%; precision: {result['precision']:6.2f}%; "
        f"recall: {result['recall']:6.2f}%; FB1: {result['f1']:6.2f}",
    ]
    for entity_type, row in result["per_type"].items():
        lines.append(
            f"{entity_type:>17}: precision: {row['precision']:6.2f}%; "
            f"recall: {row['recall']:6.2f}%; FB1: {row['f1']:6.2f}  {row['predicted']}"
        )
    return "\n".join(lines) + "\n"
