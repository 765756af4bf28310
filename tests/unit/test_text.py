"""Unit tests for udfs.text: mojibake repair, NFC, and the characters kept text may never hold."""

import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from udfs.text import clean_text, normalize_for_dedup

# What kept text never contains: C0/C1 controls but tab and newline, zero-width and bidi controls, BOM,
# U+FFFD and lone surrogates.
FORBIDDEN = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff\ufffd\ud800-\udfff]"
)


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("The Mona Lisa doesnÃ¢â‚¬â„¢t have eyebrows.", "The Mona Lisa doesn’t have eyebrows."),  # double mojibake
        ("CafÃ©", "Café"),
        ("Cafe\u0301", "Café"),  # NFC
        ("a\x00b\x07c\x1bd\x7fe", "abcde"),
        ("C1 \x85 and \x9d gone", "C1 … and  gone"),  # Windows-1252 read as Latin-1 (ftfy); undefined C1 goes
        ("zero\u200bwidth\u200c join\u200d\u2060\ufeff", "zerowidth join"),
        ("bidi \u202eevil\u202c \u2066iso\u2069 \u200fmark", "bidi evil iso mark"),
        ("lost \ufffd byte", "lost  byte"),
        ("line\r\nbreaks\rhere", "line\nbreaks\nhere"),
        ("“curly” quotes, ﬁ ligature, ＷＩＤＥ and &amp; stay", "“curly” quotes, ﬁ ligature, ＷＩＤＥ and &amp; stay"),
        ("tab\tand\nnewline stay", "tab\tand\nnewline stay"),
    ],
)
def test_clean_text(raw, clean):
    assert clean_text(raw) == clean


@settings(deadline=None)
@given(st.text())
def test_clean_text_leaves_no_forbidden_character_is_nfc_and_idempotent(text):
    clean = clean_text(text)
    assert not FORBIDDEN.search(clean)
    assert unicodedata.is_normalized("NFC", clean)
    assert clean_text(clean) == clean
    clean.encode("utf-8")  # no lone surrogate survives


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E)))
def test_printable_ascii_is_unchanged(text):
    assert clean_text(text) == text


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
