"""Segment filters, measure then select (dolma / datatrove style), as small pure functions.

Each filter takes a ``SegmentView`` (header, body text, link characters) and the ``SegmentConfig`` and
returns a ``Measured``: what it measured (JSON-able values) and, when the segment should be dropped, a
snake_case reason. ``measure`` runs them all in ``FILTERS`` order and keeps every measurement (stored
per segment in the ``measurements`` column) and the first reason, so a threshold can be re-tuned later
from the table without re-reading the crawl. Filter names are versioned: a behaviour change ships as
``_v2`` next to the old one instead of silently changing what an old run meant.

The filters, in order (the paper's and ours):

- ``length_v1``: body of ``min_chars``..``max_chars`` characters (paper: 600-3,000);
- ``header_v1``: drop empty, all-uppercase and navigation headers (paper);
- ``boilerplate_v1``: link density (from the HTML) and the share of boilerplate lines;
- ``language_v1``: py3langid (its model ships in the wheel); keep when the probability of one of
  ``languages`` reaches ``language_threshold`` (paper: English only);
- ``repetition_v1``: repeated sentences by word n-gram Jaccard between sentence pairs (paper; the
  threshold is ours);
- ``gopher_quality_v1``: Gopher's quality rules (Rae et al. 2021) with datatrove's defaults (one changed);
- ``decontamination_v1``: word n-gram overlap with configured evaluation sets (``udfs.decontam``).

A too-long text is only measured for length: the other filters never see text above ``max_chars``,
which bounds their work (and the sentence-pair comparison is capped besides).

This module is pure: no pyspark, no vllm.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from udfs.decontam import comparison_words, load_eval_index, overlap_reason
from udfs.text import normalize_for_dedup

if TYPE_CHECKING:  # segment.py imports this module, so only type checkers may import it back
    from udfs.segment import SegmentConfig

__all__ = [
    "FILTERS",
    "BoilerplateConfig",
    "GopherConfig",
    "Measured",
    "SegmentView",
    "load_resources",
    "measure",
    "normalize_for_dedup",
]


@dataclass(frozen=True)
class GopherConfig:
    """Gopher quality rules; defaults are datatrove's ``GopherQualityFilter`` but one. ``None`` turns a rule off."""

    min_words: int | None = 50
    max_words: int | None = 100_000
    min_mean_word_length: float | None = 3.0
    max_mean_word_length: float | None = 10.0
    max_symbol_word_ratio: float | None = 0.1  # "#" and "..." per word
    max_bullet_lines_ratio: float | None = 0.9
    max_ellipsis_lines_ratio: float | None = 0.3
    # words with at least one letter; datatrove: 0.8, which drops tutorial sections whose code examples
    # print numbers ("[1, 4, 9, 16]"): 0.7 (ours)
    min_alpha_words_ratio: float | None = 0.7
    min_stop_words: int | None = 2
    stop_words: tuple[str, ...] = ("the", "be", "to", "of", "and", "that", "have", "with")

    def __post_init__(self) -> None:
        for name in (
            "max_symbol_word_ratio",
            "max_bullet_lines_ratio",
            "max_ellipsis_lines_ratio",
            "min_alpha_words_ratio",
        ):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise ValueError(f"gopher.{name} must be in [0, 1] or null, got {value}")


@dataclass(frozen=True)
class BoilerplateConfig:
    """Navigation and boilerplate density (ours): link text share and boilerplate-line share."""

    max_link_density: float | None = 0.6  # share of the text's characters that were link anchors
    max_boilerplate_lines_ratio: float | None = 0.3  # share of lines holding a boilerplate phrase
    phrases: tuple[str, ...] = (
        "cookie policy",
        "accept cookies",
        "use of cookies",
        "privacy policy",
        "terms of use",
        "terms of service",
        "all rights reserved",
        "sign in",
        "log in",
        "sign up",
        "subscribe to",
        "newsletter",
        "share this",
        "follow us",
        "skip to content",
        "enable javascript",
        "click here",
        "read more",
        "back to top",
    )

    def __post_init__(self) -> None:
        for name in ("max_link_density", "max_boilerplate_lines_ratio"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise ValueError(f"boilerplate.{name} must be in [0, 1] or null, got {value}")


@dataclass(frozen=True)
class SegmentView:
    """What the filters judge: the header, the body text and how much of it was link text.

    The splits of the text that more than one filter (or one filter per evaluation set) needs are
    computed on first use and then shared, once per segment.
    """

    header: str
    text: str
    link_chars: int = 0  # non-space characters of ``text`` that were inside <a> elements

    @functools.cached_property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    @functools.cached_property
    def comparison_words(self) -> list[str]:
        """``udfs.decontam.comparison_words`` of the text."""
        return comparison_words(self.text)


@dataclass(frozen=True)
class Measured:
    values: dict[str, Any]
    reason: str | None = None  # snake_case; None keeps the segment


Filter = Callable[[SegmentView, "SegmentConfig"], Measured]

# A sentence ends at . ! or ? followed by whitespace, or at a line break (list items, code lines).
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"\w+")
# Gopher words: runs of word characters with inner apostrophes, dots and hyphens ("don't", "os.path",
# "e-mail"), as nltk's word_tokenize keeps them; punctuation and symbols are not words.
_GOPHER_WORD = re.compile(r"\w+(?:['’.\-]\w+)*")
_HASHTAG = re.compile(r"#\w")
_ELLIPSIS = re.compile(r"\.\.\.|…")
_PROMPT_ELLIPSIS = re.compile(r"^[ \t]*(?:\.\.\.|…)", re.MULTILINE)
_LETTER = re.compile(r"[^\W\d_]")
_SPACE = re.compile(r"\s")
_BULLETS = ("•", "●", "▪", "‣", "◦", "-", "*")
# The pairwise comparison is quadratic; a segment within the default 3,000-character limit has far
# fewer sentences than this, so the cap only bounds the cost when the filter runs on long text.
MAX_SENTENCES = 200
LANGUAGE_SAMPLE_CHARS = 1000


def length_filter(seg: SegmentView, cfg: SegmentConfig) -> Measured:
    """Keep bodies of ``cfg.min_chars`` to ``cfg.max_chars`` characters (paper: 600-3,000)."""
    n = len(seg.text)
    return Measured({"n_chars": n}, "too_short" if n < cfg.min_chars else "too_long" if n > cfg.max_chars else None)


def header_filter(seg: SegmentView, cfg: SegmentConfig) -> Measured:
    """Drop empty (no letter or digit), all-uppercase and navigation headers."""
    header = seg.header
    if not any(ch.isalnum() for ch in header):
        return Measured({}, "empty_header")
    if header.isupper():
        return Measured({}, "uppercase_header")
    # Whole-header match only: "Navigation:" is navigation, "Navigation in Vim" is content.
    if normalize_for_dedup(header) in _navigation_headers(cfg.navigation_headers):
        return Measured({}, "navigation_header")
    return Measured({})


@functools.lru_cache(maxsize=8)
def _navigation_headers(headers: tuple[str, ...]) -> frozenset[str]:
    return frozenset(normalize_for_dedup(h) for h in headers)


def language_filter(seg: SegmentView, cfg: SegmentConfig) -> Measured:
    """Language by py3langid; drop when no language of ``cfg.languages`` reaches ``cfg.language_threshold``.

    The probabilities are py3langid's normalised ones, for the first ``LANGUAGE_SAMPLE_CHARS``
    characters (py3langid walks text byte by byte in Python: the cap bounds its cost). An empty
    ``cfg.languages`` keeps every language (the language is still measured).
    """
    ranked = _language_identifier().rank(seg.text[:LANGUAGE_SAMPLE_CHARS])
    lang, score = ranked[0]
    values = {"lang": lang, "score": round(float(score), 4)}
    if not cfg.languages:
        return Measured(values)
    target = max(float(p) for code, p in ranked if code in cfg.languages)
    values["target_score"] = round(target, 4)
    return Measured(values, None if target >= cfg.language_threshold else "wrong_language")


@functools.lru_cache(maxsize=1)
def _language_identifier():
    """py3langid's bundled model, loaded once per Python process (Spark reuses workers)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def language_codes() -> frozenset[str]:
    """The ISO 639-1 codes py3langid knows (config validation)."""
    return frozenset(_language_identifier().labels)


def repetition_filter(seg: SegmentView, cfg: SegmentConfig) -> Measured:
    """Drop text where too many sentences repeat another one.

    Two sentences repeat each other when the Jaccard similarity of their word n-gram sets reaches
    ``cfg.repetition_threshold``; the text is dropped when more than ``cfg.max_repeated_fraction``
    of its sentences repeat some other sentence. Sentences end at . ! ? or a line break; only the
    first ``MAX_SENTENCES`` with at least ``cfg.repetition_ngram`` words are compared.
    """
    grams = [g for g in (_ngrams(s, cfg.repetition_ngram) for s in _SENTENCE_BREAK.split(seg.text)) if g]
    grams = grams[:MAX_SENTENCES]
    repeated = _repeated(grams, cfg.repetition_threshold)
    fraction = sum(repeated) / len(grams) if grams else 0.0
    values = {"sentences": len(grams), "repeated_fraction": round(fraction, 4)}
    return Measured(values, "repeated_sentences" if fraction > cfg.max_repeated_fraction else None)


def _repeated(grams: list[frozenset], threshold: float) -> list[bool]:
    """For each set, whether its Jaccard similarity with some other set reaches ``threshold``.

    Jaccard is at most the smaller size over the larger, so with the sets in order of size each one is
    compared only with the following ones until that ratio falls below the threshold. Division rounds
    monotonically, so the float ratio bounds the float Jaccard too: the skipped pairs are exactly those
    the full comparison would reject. Pairs already both known to repeat are not compared again.
    """
    repeated = [False] * len(grams)
    sizes = [len(g) for g in grams]
    order = sorted(range(len(grams)), key=sizes.__getitem__)
    for p, i in enumerate(order):
        a, size_a = grams[i], sizes[i]
        for j in order[p + 1 :]:
            size_b = sizes[j]
            if size_a / size_b < threshold:
                break
            if repeated[i] and repeated[j]:
                continue
            common = len(a & grams[j])
            if common / (size_a + size_b - common) >= threshold:
                repeated[i] = repeated[j] = True
    return repeated


def _ngrams(sentence: str, n: int) -> frozenset[tuple[str, ...]]:
    words = _WORD.findall(sentence.lower())
    # Sentences shorter than one n-gram ("...", "2", "Note") are not compared: a match between them
    # says nothing, and code samples are full of them. zip of the shifted lists builds the windows in C.
    return frozenset(zip(*(words[i:] for i in range(n))))


def gopher_quality_filter(seg: SegmentView, cfg: SegmentConfig) -> Measured:
    """Gopher's quality rules, in datatrove's order and with its reason codes (``gopher_*``).

    Punctuation and symbols are not words (datatrove drops them from the counts too), so code's
    brackets and operators do not push code-heavy documentation out; its numbers can. Two choices of
    ours keep code examples in: the symbol ratio counts "#" only when it starts a tag ("#python", not a
    "# comment"), and "..." only past a line's indentation (not the REPL's continuation prompt).
    """
    g = cfg.gopher
    text = seg.text
    words = _GOPHER_WORD.findall(text)
    n = len(words)
    lines = seg.lines or [""]
    values = {
        "words": n,
        "mean_word_length": round(sum(map(len, words)) / n, 3) if n else 0.0,
        "hash_ratio": round(len(_HASHTAG.findall(text)) / n, 4) if n else 0.0,
        "ellipsis_ratio": round((len(_ELLIPSIS.findall(text)) - len(_PROMPT_ELLIPSIS.findall(text))) / n, 4)
        if n
        else 0.0,
        "bullet_lines_ratio": round(sum(line.lstrip().startswith(_BULLETS) for line in lines) / len(lines), 4),
        "ellipsis_lines_ratio": round(sum(line.rstrip().endswith(("...", "…")) for line in lines) / len(lines), 4),
        "alpha_words_ratio": round(sum(map(bool, map(_LETTER.search, words))) / n, 4) if n else 0.0,
        "stop_words": sum(map(_stop_words(g.stop_words).__contains__, map(str.lower, words))),
    }
    rules = (
        (g.min_words is not None and n < g.min_words, "gopher_short_doc"),
        (g.max_words is not None and n > g.max_words, "gopher_long_doc"),
        (
            g.min_mean_word_length is not None and values["mean_word_length"] < g.min_mean_word_length,
            "gopher_below_avg_threshold",
        ),
        (
            g.max_mean_word_length is not None and values["mean_word_length"] > g.max_mean_word_length,
            "gopher_above_avg_threshold",
        ),
        (
            g.max_symbol_word_ratio is not None and values["hash_ratio"] > g.max_symbol_word_ratio,
            "gopher_too_many_hashes",
        ),
        (
            g.max_symbol_word_ratio is not None and values["ellipsis_ratio"] > g.max_symbol_word_ratio,
            "gopher_too_many_ellipsis",
        ),
        (
            g.max_bullet_lines_ratio is not None and values["bullet_lines_ratio"] > g.max_bullet_lines_ratio,
            "gopher_too_many_bullets",
        ),
        (
            g.max_ellipsis_lines_ratio is not None and values["ellipsis_lines_ratio"] > g.max_ellipsis_lines_ratio,
            "gopher_too_many_end_ellipsis",
        ),
        (
            g.min_alpha_words_ratio is not None and values["alpha_words_ratio"] < g.min_alpha_words_ratio,
            "gopher_below_alpha_threshold",
        ),
        (g.min_stop_words is not None and values["stop_words"] < g.min_stop_words, "gopher_enough_stop_words"),
    )
    return Measured(values, next((reason for failed, reason in rules if failed), None))


@functools.lru_cache(maxsize=8)
def _stop_words(words: tuple[str, ...]) -> frozenset[str]:
    return frozenset(words)


def boilerplate_filter(seg: SegmentView, cfg: SegmentConfig) -> Measured:
    """Drop navigation-like text: mostly link anchors, or many lines of boilerplate phrases."""
    b = cfg.boilerplate
    visible = len(seg.text) - len(_SPACE.findall(seg.text))
    link_density = min(1.0, seg.link_chars / visible) if visible else 0.0
    lines = [line.lower() for line in seg.lines if line.strip()]
    phrase = _any_phrase(b.phrases)
    boilerplate = sum(1 for line in lines if phrase.search(line)) if b.phrases else 0
    ratio = boilerplate / len(lines) if lines else 0.0
    values = {"link_density": round(link_density, 4), "boilerplate_lines_ratio": round(ratio, 4)}
    if b.max_link_density is not None and link_density > b.max_link_density:
        return Measured(values, "high_link_density")
    if b.max_boilerplate_lines_ratio is not None and ratio > b.max_boilerplate_lines_ratio:
        return Measured(values, "boilerplate_lines")
    return Measured(values)


@functools.lru_cache(maxsize=8)
def _any_phrase(phrases: tuple[str, ...]) -> re.Pattern:
    """One pattern finding any of the phrases: a line contains one exactly when it matches."""
    return re.compile("|".join(map(re.escape, phrases)))


def decontamination_filter(seg: SegmentView, cfg: SegmentConfig) -> Measured:
    """Drop text sharing word n-grams with an evaluation set: reason ``eval_overlap:<set name>``."""
    values = cfg.eval_check.overlaps(seg.comparison_words)
    return Measured(values, overlap_reason(values))


# Applied in this order; the first failing filter's reason is the segment's reason. Cheap checks
# run first; a too-long text stops after length_v1.
FILTERS: tuple[tuple[str, Filter], ...] = (
    ("length_v1", length_filter),
    ("header_v1", header_filter),
    ("boilerplate_v1", boilerplate_filter),  # before the text rules: a link list is navigation, whatever its words
    ("language_v1", language_filter),
    ("repetition_v1", repetition_filter),
    ("gopher_quality_v1", gopher_quality_filter),
    ("decontamination_v1", decontamination_filter),
)


def load_resources(cfg: SegmentConfig) -> None:
    """Load the language model and the evaluation indexes (cached per process).

    The segmenter calls this outside its per-document error handling: a missing evaluation file or model
    is a broken environment that must fail the stage, not turn every document into an error row.
    """
    _language_identifier()
    for eval_set in cfg.decontamination:
        load_eval_index(eval_set.path, eval_set.field, cfg.decontamination_ngram, cfg.decontamination_min_words)


def measure(seg: SegmentView, cfg: SegmentConfig) -> tuple[str | None, dict[str, dict[str, Any]]]:
    """(first failing reason or None, every filter's measurements by filter name)."""
    reason, measurements = None, {}
    for name, check in FILTERS:
        result = check(seg, cfg)
        measurements[name] = result.values
        reason = reason or result.reason
        if result.reason == "too_long":
            break
    return reason, measurements
