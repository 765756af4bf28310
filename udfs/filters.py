"""Segment quality filters from the paper (Li et al. 2023, section 2.3), as small pure functions.

Each filter takes ``(header, text, cfg)`` and returns ``None`` to keep the segment or a snake_case
reason to drop it (datatrove style). Filters carry versioned names so that a behaviour change ships
as ``_v2`` next to the old one instead of silently changing what an old run meant. ``text`` is the
segment body (without its own header line, see ``udfs.segment``).

This module is pure: no pyspark, no vllm.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # segment.py imports this module, so only type checkers may import it back
    from udfs.segment import SegmentConfig

Filter = Callable[[str, str, "SegmentConfig"], "str | None"]

# Punctuation and symbols (anything that is neither a word character nor whitespace), and "_",
# which \w counts as a word character.
_PUNCTUATION = re.compile(r"[^\w\s]|_")
# A sentence ends at . ! or ? followed by whitespace, or at a line break (list items, code lines).
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"\w+")
# The pairwise comparison is quadratic; a segment within the default 3,000-character limit has far
# fewer sentences than this, so the cap only bounds the cost when the filter runs on long text.
MAX_SENTENCES = 200


def normalize_for_dedup(text: str) -> str:
    """Lower-case, replace punctuation and symbols by spaces, collapse whitespace (idempotent)."""
    return " ".join(_PUNCTUATION.sub(" ", text.lower()).split())


def length_filter(header: str, text: str, cfg: SegmentConfig) -> str | None:
    """Keep bodies of ``cfg.min_chars`` to ``cfg.max_chars`` characters (paper: 600-3,000)."""
    if len(text) < cfg.min_chars:
        return "too_short"
    if len(text) > cfg.max_chars:
        return "too_long"
    return None


def header_filter(header: str, text: str, cfg: SegmentConfig) -> str | None:
    """Drop empty (no letter or digit), all-uppercase and navigation headers."""
    if not any(ch.isalnum() for ch in header):
        return "empty_header"
    if header.isupper():
        return "uppercase_header"
    # Whole-header match only: "Navigation:" is navigation, "Navigation in Vim" is content.
    if normalize_for_dedup(header) in {normalize_for_dedup(h) for h in cfg.navigation_headers}:
        return "navigation_header"
    return None


def repetition_filter(header: str, text: str, cfg: SegmentConfig) -> str | None:
    """Drop text where too many sentences repeat another one.

    Two sentences repeat each other when the Jaccard similarity of their word n-gram sets reaches
    ``cfg.repetition_threshold``; the text is dropped when more than ``cfg.max_repeated_fraction``
    of its sentences repeat some other sentence. Sentences end at . ! ? or a line break; only the
    first ``MAX_SENTENCES`` with at least ``cfg.repetition_ngram`` words are compared.
    """
    grams = [g for g in (_ngrams(s, cfg.repetition_ngram) for s in _SENTENCE_BREAK.split(text)) if g]
    grams = grams[:MAX_SENTENCES]
    repeated = [False] * len(grams)
    for i, a in enumerate(grams):
        for j in range(i + 1, len(grams)):
            b = grams[j]
            if len(a & b) / len(a | b) >= cfg.repetition_threshold:
                repeated[i] = repeated[j] = True
    if grams and sum(repeated) / len(grams) > cfg.max_repeated_fraction:
        return "repeated_sentences"
    return None


def _ngrams(sentence: str, n: int) -> frozenset[tuple[str, ...]]:
    words = _WORD.findall(sentence.lower())
    # Sentences shorter than one n-gram ("...", "2", "Note") are not compared: a match between them
    # says nothing, and code samples are full of them.
    return frozenset(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


# Applied in this order; the first failing filter's reason is the segment's reason. Cheap checks
# run first so the quadratic repetition check only sees segments that passed the others.
FILTERS: tuple[tuple[str, Filter], ...] = (
    ("length_v1", length_filter),
    ("header_v1", header_filter),
    ("repetition_v1", repetition_filter),
)


def first_failure(header: str, text: str, cfg: SegmentConfig) -> str | None:
    """The reason of the first filter in ``FILTERS`` that drops the segment, or None to keep it."""
    for _, check in FILTERS:
        reason = check(header, text, cfg)
        if reason:
            return reason
    return None
