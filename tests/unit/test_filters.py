"""Unit tests for udfs.filters: each reason code, its boundaries, the filter order, and dedup normalisation."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from udfs.filters import (
    FILTERS,
    MAX_SENTENCES,
    first_failure,
    header_filter,
    length_filter,
    normalize_for_dedup,
    repetition_filter,
)
from udfs.segment import SegmentConfig

CFG = SegmentConfig(min_chars=10, max_chars=20)
DEFAULT = SegmentConfig()


def distinct(count):
    return [f"Sentence number {i} talks about topic {i * 7}." for i in range(count)]


@pytest.mark.parametrize(
    "length, reason", [(9, "too_short"), (10, None), (20, None), (21, "too_long")]
)
def test_length_boundaries(length, reason):
    assert length_filter("H", "x" * length, CFG) == reason


@pytest.mark.parametrize(
    "header, reason",
    [
        ("", "empty_header"),
        ("   ", "empty_header"),
        ("— ¶", "empty_header"),
        ("FAQ", "uppercase_header"),
        ("1. INTRODUCTION", "uppercase_header"),
        ("QUICK LINKS", "uppercase_header"),  # uppercase is checked before navigation
        ("Quick links", "navigation_header"),
        ("Table of Contents:", "navigation_header"),
        ("  related   TOPICS ", "navigation_header"),
        ("Free-Newsletter!", "navigation_header"),
        ("Navigation in Vim", None),
        ("Faq", None),
        ("3.11", None),
        ("Installing Python", None),
    ],
)
def test_header_reasons(header, reason):
    assert header_filter(header, "", DEFAULT) == reason


def test_navigation_headers_come_from_config():
    cfg = SegmentConfig(navigation_headers=("sponsored",))
    assert header_filter("Sponsored", "", cfg) == "navigation_header"
    assert header_filter("Advertisement", "", cfg) is None


def test_repetition_drops_repeated_and_near_repeated_sentences():
    assert repetition_filter("H", " ".join(distinct(10)), DEFAULT) is None
    assert repetition_filter("H", "Buy cheap shoes online today. " * 5, DEFAULT) == "repeated_sentences"
    # 3 of 4 sentences are near-copies (Jaccard of 3-grams >= 0.8), one word added at the end.
    near = [
        "the quick brown fox jumps over the lazy dog near the river bank today",
        "the quick brown fox jumps over the lazy dog near the river bank today again",
        "the quick brown fox jumps over the lazy dog near the river bank today",
        "an entirely different sentence about something else",
    ]
    assert repetition_filter("H", "\n".join(near), DEFAULT) == "repeated_sentences"


def test_repetition_fraction_boundary():
    text = " ".join(distinct(7) + ["This one sentence repeats."] * 3)  # 3 of 10 repeat: 0.3, not > 0.3
    assert repetition_filter("H", text, DEFAULT) is None
    assert repetition_filter("H", text, SegmentConfig(max_repeated_fraction=0.29)) == "repeated_sentences"


def test_repetition_ignores_sentences_shorter_than_one_ngram():
    code = "\n".join(["...", "print(x)", "2"] * 10 + distinct(3))
    assert repetition_filter("H", code, DEFAULT) is None
    assert repetition_filter("H", code, SegmentConfig(repetition_ngram=1)) == "repeated_sentences"


def test_repetition_compares_only_the_first_max_sentences():
    text = " ".join(distinct(MAX_SENTENCES) + ["Spam spam spam spam."] * 50)
    assert repetition_filter("H", text, DEFAULT) is None
    short = " ".join(distinct(10) + ["Spam spam spam spam."] * 50)
    assert repetition_filter("H", short, DEFAULT) == "repeated_sentences"


def test_first_failure_follows_filter_order():
    assert first_failure("FAQ", "short", CFG) == "too_short"
    assert first_failure("FAQ", "x" * 15, CFG) == "uppercase_header"
    assert first_failure("Fine", "x" * 15, CFG) is None
    repeated = "Same words here. Same words here."
    assert first_failure("Fine", repeated, SegmentConfig(min_chars=10, max_chars=100)) == "repeated_sentences"


def test_filter_names_are_versioned_and_unique():
    names = [name for name, _ in FILTERS]
    assert len(set(names)) == len(names) == 3
    assert all(re.fullmatch(r"[a-z_]+_v\d+", name) for name in names)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Hello,   World!", "hello world"),
        ("  Quick-Links:\n\tHOME  ", "quick links home"),
        ("snake_case and ¶ signs", "snake case and signs"),
        ("Ünïcode Straße", "ünïcode straße"),
        ("", ""),
    ],
)
def test_normalize_for_dedup(text, expected):
    assert normalize_for_dedup(text) == expected


@given(st.text())
def test_normalize_for_dedup_is_idempotent_and_clean(text):
    once = normalize_for_dedup(text)
    assert normalize_for_dedup(once) == once
    assert once == once.strip() and "  " not in once and "\x00" not in once


@given(st.text(max_size=400))
def test_filters_return_a_known_reason_or_none(text):
    reasons = {
        None, "too_short", "too_long", "empty_header", "uppercase_header", "navigation_header", "repeated_sentences"
    }
    assert first_failure(text[:30], text, SegmentConfig(min_chars=5, max_chars=300)) in reasons
