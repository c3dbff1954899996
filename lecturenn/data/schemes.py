"""Tag schemes for chunks and named entities: IOB1, IOB2, IOBES, and the entities they spell.

IOB1 (as the CoNLL-2003 shared task described it) puts B- only where a chunk directly follows one
of the same type; IOB2 puts B- on every chunk start; IOBES (Collobert et al. 2011's choice) adds
S- for single-token chunks and E- for the last token. Entities are decoded with conlleval's
start/end rules (the CoNLL-2000/2003 shared-task script), extended for IOBES the way seqeval
extends them, so conversions go through the entities: they round-trip exactly on well-formed
sequences and repair ill-formed ones the way conlleval reads them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

SCHEMES = ("iob1", "iob2", "iobes")
_PREFIXES = {"iob1": "BI", "iob2": "BI", "iobes": "BIES"}

Entity = tuple[str, int, int]


def _split_tag(tag: str, scheme: str) -> tuple[str, str]:
    if tag == "O":
        return "O", ""
    prefix, sep, entity_type = tag.partition("-")
    if not sep or not entity_type or prefix not in _PREFIXES[scheme]:
        raise ValueError(f"tag {tag!r} is not a valid {scheme} tag (expected O or X-TYPE)")
    return prefix, entity_type


def _chunk_ends(prev_tag: str, tag: str, prev_type: str, entity_type: str) -> bool:
    # conlleval's endOfChunk, plus seqeval's E/S rules for IOBES.
    if prev_tag in "ES":
        return True
    if prev_tag in "BI" and tag in "BSO":
        return True
    return prev_tag != "O" and prev_type != entity_type


def _chunk_starts(prev_tag: str, tag: str, prev_type: str, entity_type: str) -> bool:
    # conlleval's startOfChunk: a stray I- (after O, or after another type) opens a chunk.
    if tag in "BS":
        return True
    if prev_tag in "ESO" and tag in "EI":
        return True
    return tag != "O" and prev_type != entity_type


def extract_entities(tags: Sequence[str], scheme: str = "iob1") -> set[Entity]:
    """Entities ``(type, start, end)`` of one sentence, ``end`` exclusive, by conlleval's rules.

    The rules do not depend on whether the input is IOB1 or IOB2 (conlleval makes no difference),
    so any mix of B-/I- tags decodes; ``scheme`` only says which prefixes are allowed (E-/S- only
    in "iobes"). Ill-formed sequences decode leniently, as in conlleval: ``O I-PER`` opens a PER
    chunk and ``B-PER I-LOC`` is two chunks.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; expected one of {SCHEMES}")
    entities = set()
    prev_tag, prev_type, start = "O", "", 0
    for position, tag in enumerate([*tags, "O"]):
        prefix, entity_type = _split_tag(tag, scheme)
        if _chunk_ends(prev_tag, prefix, prev_type, entity_type):
            entities.add((prev_type, start, position))
        if _chunk_starts(prev_tag, prefix, prev_type, entity_type):
            start = position
        prev_tag, prev_type = prefix, entity_type
    return entities


def entities_to_tags(entities: Iterable[Entity], length: int, scheme: str) -> tuple[str, ...]:
    """Tags of a sentence of ``length`` tokens holding ``entities`` (type, start, end exclusive)."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; expected one of {SCHEMES}")
    tags = ["O"] * length
    previous_end, previous_type = -1, None
    for entity_type, start, end in sorted(entities, key=lambda e: e[1]):
        if scheme == "iobes" and end - start == 1:
            tags[start] = f"S-{entity_type}"
            continue
        tags[start:end] = [f"I-{entity_type}"] * (end - start)
        if scheme == "iobes":
            tags[start], tags[end - 1] = f"B-{entity_type}", f"E-{entity_type}"
        elif scheme == "iob2" or (previous_end == start and previous_type == entity_type):
            tags[start] = f"B-{entity_type}"
        previous_end, previous_type = end, entity_type
    return tuple(tags)


def convert(tags: Sequence[str], src: str, dst: str) -> tuple[str, ...]:
    """Re-tag a sentence from scheme ``src`` to ``dst`` ("iob1", "iob2" or "iobes")."""
    return entities_to_tags(extract_entities(tags, src), len(tags), dst)


def iob1_to_iob2(tags: Sequence[str]) -> tuple[str, ...]:
    return convert(tags, "iob1", "iob2")


def iob2_to_iob1(tags: Sequence[str]) -> tuple[str, ...]:
    return convert(tags, "iob2", "iob1")


def iob2_to_iobes(tags: Sequence[str]) -> tuple[str, ...]:
    return convert(tags, "iob2", "iobes")


def iobes_to_iob2(tags: Sequence[str]) -> tuple[str, ...]:
    return convert(tags, "iobes", "iob2")


def is_valid(tags: Sequence[str], scheme: str) -> bool:
    """Whether ``tags`` is the well-formed ``scheme`` spelling of its own entities."""
    return tuple(tags) == convert(tags, scheme, scheme)


def file_scheme(tag_sequences: Iterable[Sequence[str]]) -> str:
    """The scheme a file spells its tags in, by majority: an entity that starts after O (or after
    another type) with B- is IOB2 spelling, with I- IOB1 spelling."""
    starts = {"B": 0, "I": 0}
    for tags in tag_sequences:
        previous = "O"
        for tag in tags:
            if tag != "O" and (previous == "O" or previous[2:] != tag[2:]):
                starts[tag[0]] += 1
            previous = tag
    return "iob2" if starts["B"] >= starts["I"] else "iob1"
