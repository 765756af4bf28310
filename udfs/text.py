"""Normalise extracted text before it is kept: mojibake fixed, Unicode NFC, invisible characters removed.

``clean_text`` is applied to every block the HTML walker (``udfs.segment``) extracts, so every kept
segment, header and measurement sees the same text. It:

1. repairs mojibake and other encoding damage with ftfy (``"doesnÃ¢â‚¬â„¢t"`` -> ``"doesn’t"``), without
   ftfy's cosmetic rewrites (quotes, ligatures and full-width characters are left as written, and HTML
   entities are not decoded a second time: the parser already did);
2. removes characters a reader cannot see but a model would learn: C0/C1 control characters (tab and
   newline are kept; a carriage return becomes a newline), zero-width characters, bidirectional
   override/isolate/mark characters, the byte-order mark, lone surrogates and U+FFFD (the decoder's
   "I could not read this" mark: stripped here, and a document with too many of them is dropped
   by the segmenter as ``too_many_replacement_chars``);
3. normalises to Unicode NFC, last, so removing a character never leaves a decomposed sequence behind.

Kept text therefore never contains NUL or U+FFFD. ``normalize_for_dedup`` is the comparison form used
by exact dedup and decontamination. This module is pure: no pyspark, no vllm.
"""

from __future__ import annotations

import re
import unicodedata

import ftfy

REPLACEMENT_CHAR = "\ufffd"

_FIXER = ftfy.TextFixerConfig(
    unescape_html=False,  # the HTML parser decoded entities; "&amp;" left in text is literal text
    uncurl_quotes=False,
    fix_latin_ligatures=False,
    fix_character_width=False,
    normalization=None,  # NFC last, after removals (see the module docstring)
    explain=False,
)
# C0 controls except \t and \n, DEL and C1 controls; Arabic letter mark; zero-width space/joiners and the
# LRM/RLM marks (U+200B-U+200F); bidi embeddings/overrides (U+202A-U+202E); word joiner and invisible
# operators (U+2060-U+2064); bidi isolates (U+2066-U+2069); deprecated format characters (U+206A-U+206F);
# Mongolian vowel separator; BOM / zero-width no-break space; interlinear annotation and object
# replacement characters (U+FFF9-U+FFFC); U+FFFD; lone surrogates (they cannot even be encoded to UTF-8).
_INVISIBLE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f"
    "\ufeff\ufff9-\ufffd\ud800-\udfff]"
)
_MAX_ROUNDS = 4
_CARRIAGE_RETURN = re.compile(r"\r\n?")
# Punctuation and symbols (anything that is neither a word character nor whitespace), and "_",
# which \w counts as a word character.
_PUNCTUATION = re.compile(r"[^\w\s]|_")


def clean_text(text: str) -> str:
    """``text`` with encoding damage repaired and invisible characters removed, in NFC (see module docs)."""
    text = _CARRIAGE_RETURN.sub("\n", text)
    if text.isascii() and "\x1b" not in text:  # plain ASCII has no mojibake and no terminal escapes
        return _INVISIBLE.sub("", text)
    # A removed control character or a composed pair can reveal mojibake ftfy could not see before
    # ("\x81×¤"): repeat until nothing changes, so that cleaning clean text changes nothing. Each round
    # removes characters or repairs mojibake, so few are ever needed; the bound is a safeguard.
    for _ in range(_MAX_ROUNDS):
        fixed = unicodedata.normalize("NFC", _INVISIBLE.sub("", ftfy.fix_text(text, _FIXER)))
        if fixed == text:
            break
        text = fixed
    return fixed


def normalize_for_dedup(text: str) -> str:
    """Lower-case, replace punctuation and symbols by spaces, collapse whitespace (idempotent).

    The comparison form of text for exact dedup and decontamination: formatting differences vanish.
    """
    return " ".join(_PUNCTUATION.sub(" ", text.lower()).split())
