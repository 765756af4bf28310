"""Every reason code a row can carry, with the table it lands in and what it means: the one list the docs'
reason reference is generated from and keyed writes are checked against.

A row that is not ``ok`` has a reason: a snake_case code (``too_short``), a qualified code
(``eval_overlap:<set>``) or, for errors, ``"code: message"``; ``udfs.tables.status_key`` counts it as
``status:code``. ``jobs.stages.base.append`` looks every counted key up here: a code missing from this list is a
programming error (a reason nobody can look up), logged as a warning in a run and raised where
``HUMPBACK_STRICT_REASONS`` is set, as the test suite sets it. Adding a reason is one line here.

The ``runs`` table is not listed: its reason is a failed run's error message, not a code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Literal

STRICT_ENV = "HUMPBACK_STRICT_REASONS"


@dataclass(frozen=True)
class Reason:
    code: str
    status: Literal["dropped", "error"]
    tables: tuple[str, ...]
    meaning: str


_LLM = ("candidates", "scores", "calibration", "likelihoods", "rewrites")
_JUDGED = ("scores", "calibration")

REASONS: tuple[Reason, ...] = (
    # ingest: one documents row per input record
    Reason("redirect", "dropped", ("documents",), "HTTP 3xx response; its body is never read"),
    Reason("http_status_not_200", "dropped", ("documents",), "any other HTTP status than 200"),
    Reason("not_html", "dropped", ("documents",), "Content-Type (or, when missing, the sniffed type) is not HTML"),
    Reason("bad_content_encoding", "dropped", ("documents",), "a gzip/deflate body that does not inflate"),
    Reason("too_large", "dropped", ("documents",), "body over ingest.max_record_bytes, gzip bombs included"),
    Reason("binary_payload", "dropped", ("documents",), "the body is binary (NUL bytes) whatever its label"),
    Reason("empty_body", "dropped", ("documents",), "nothing after the HTTP headers"),
    Reason("missing_text", "dropped", ("documents",), "a JSONL/Parquet record with neither html nor text"),
    Reason("unreadable_record", "error", ("documents", "segments"), "a record that cannot be parsed at its offset"),
    Reason("invalid_json", "error", ("documents",), "a JSONL line that is not a JSON object"),
    Reason("invalid_utf8", "error", ("documents",), "a JSONL line that is not UTF-8 (the message names the byte)"),
    Reason("missing_columns", "error", ("documents",), "a Parquet file without the configured columns"),
    # segment: reading the record back
    Reason("source_missing", "error", ("segments",), "the document's file is gone or cannot be read back"),
    Reason("source_changed", "error", ("segments",), "the record at the stored offset no longer hashes the same"),
    Reason("segment_error", "error", ("segments",), "segmentation raised; the message names the exception"),
    # segment: the page as a whole
    Reason("too_deep", "dropped", ("segments",), "element nesting deeper than segment.max_depth"),
    Reason("parse_timeout", "dropped", ("segments",), "the page took longer than segment.parse_timeout_s"),
    Reason(
        "too_many_replacement_chars",
        "dropped",
        ("segments",),
        "more than segment.max_replacement_fraction of the text is U+FFFD (undecodable bytes)",
    ),
    Reason("no_header", "dropped", ("segments",), "text under no header (a page without headers: its one row)"),
    # segment: outside the main content (udfs.main_content; a section mostly made of such blocks, with the
    # matched class/id word or block rule in measurements.main_content_v1)
    Reason("comments", "dropped", ("segments",), "a comment thread"),
    Reason("related_links", "dropped", ("segments",), "related or recommended links, or a block mostly of link text"),
    Reason("share_bar", "dropped", ("segments",), "social sharing buttons"),
    Reason("page_footer", "dropped", ("segments",), "the page's footer"),
    Reason("sidebar", "dropped", ("segments",), "a sidebar or widget area"),
    Reason("signup_or_consent", "dropped", ("segments",), "newsletter, registration, cookie or call-to-action box"),
    Reason("page_metadata", "dropped", ("segments",), "byline, author box, dates, tags"),
    Reason("advertising", "dropped", ("segments",), "advertisements, sponsored or affiliate blocks"),
    Reason("caption", "dropped", ("segments",), "figure captions, photo credits, player overlays"),
    Reason("not_main_content", "dropped", ("segments",), "outside the page's one <main> (or role=main) element"),
    # segment: the filters (udfs.filters), in the order they run
    Reason("too_short", "dropped", ("segments",), "fewer than segment.min_chars characters"),
    Reason("too_long", "dropped", ("segments",), "more than segment.max_chars and nothing left to split off"),
    Reason("empty_header", "dropped", ("segments",), "the section's header has no text"),
    Reason("uppercase_header", "dropped", ("segments",), "the header is all upper case"),
    Reason("navigation_header", "dropped", ("segments",), "the header is one of segment.navigation_headers"),
    Reason("high_link_density", "dropped", ("segments",), "link text share over segment.boilerplate.max_link_density"),
    Reason(
        "boilerplate_lines",
        "dropped",
        ("segments",),
        "share of lines with a boilerplate phrase over segment.boilerplate.max_boilerplate_lines_ratio",
    ),
    Reason("wrong_language", "dropped", ("segments",), "no kept language at segment.language_threshold"),
    Reason("repeated_sentences", "dropped", ("segments",), "over segment.max_repeated_fraction of sentences repeat"),
    Reason("gopher_short_doc", "dropped", ("segments",), "fewer words than segment.gopher.min_words"),
    Reason("gopher_long_doc", "dropped", ("segments",), "more words than segment.gopher.max_words"),
    Reason("gopher_below_avg_threshold", "dropped", ("segments",), "mean word length under the minimum"),
    Reason("gopher_above_avg_threshold", "dropped", ("segments",), "mean word length over the maximum"),
    Reason("gopher_too_many_hashes", "dropped", ("segments",), "too many '#' and '...' per word"),
    Reason("gopher_too_many_ellipsis", "dropped", ("segments",), "too many '...' per word"),
    Reason("gopher_too_many_bullets", "dropped", ("segments",), "too many lines start with a bullet"),
    Reason("gopher_too_many_end_ellipsis", "dropped", ("segments",), "too many lines end in an ellipsis"),
    Reason("gopher_below_alpha_threshold", "dropped", ("segments",), "too few words with a letter"),
    Reason("gopher_enough_stop_words", "dropped", ("segments",), "fewer stop words than segment.gopher.min_stop_words"),
    Reason(
        "eval_overlap",
        "dropped",
        ("segments", "candidates"),
        "shares an n-gram with an evaluation set of segment.decontamination (qualified by the set's name)",
    ),
    # segment: dedup
    Reason("exact_duplicate", "dropped", ("segments",), "same normalised text as the segment in duplicate_of"),
    Reason("near_duplicate", "dropped", ("segments",), "MinHash near-duplicate of the segment in duplicate_of"),
    # LLM stages
    Reason("prompt_too_long", "dropped", _LLM, "the prompt does not fit max_model_len (engine.overflow: drop)"),
    Reason("empty_instruction", "dropped", ("candidates",), "M_yx wrote no instruction"),
    Reason("instruction_truncated", "dropped", ("candidates",), "generation hit max_tokens mid-instruction"),
    Reason("instruction_too_long", "dropped", ("candidates",), "longer than augment.max_instruction_chars"),
    Reason(
        "endpoint_http",
        "error",
        _LLM,
        "a remote endpoint (engine.name: openai) answered this HTTP status after every retry (qualified by it)",
    ),
    Reason("endpoint_timeout", "error", _LLM, "a remote endpoint did not answer in time, after every retry"),
    Reason("endpoint_connection_error", "error", _LLM, "a remote endpoint's connection failed after every retry"),
    Reason("endpoint_bad_response", "error", _LLM, "a remote endpoint's answer was not the JSON expected"),
    Reason("no_logprobs_from_endpoint", "error", ("likelihoods",), "the endpoint returns no prompt log-probabilities"),
    Reason("cascade_rejected", "dropped", _JUDGED, "the judge cascade's classifier ruled the pair out"),
    Reason("empty_answer", "dropped", ("likelihoods", "rewrites"), "no answer text to score or keep"),
    Reason("non_finite_logprob", "error", ("likelihoods",), "the scorer returned a NaN or infinite log-probability"),
    Reason("truncated", "dropped", ("rewrites",), "generation hit max_tokens before the answer closed"),
    Reason("no_answer_markers", "dropped", ("rewrites",), "no closing marker where rewrite.require_end_marker"),
    Reason("unfaithful_rewrite", "dropped", ("rewrites",), "faithfulness under rewrite.min_faithfulness"),
)

_BY_KEY = {(r.status, r.code, t): r for r in REASONS for t in r.tables}


class UnregisteredReason(ValueError):
    """A row carries a reason code that is not in ``udfs.reasons.REASONS``."""


def lookup(table: str, status_key: str) -> Reason | None:
    """The registered reason of a counted key (``status`` or ``status:code[:qualifier]``), None for ``ok``."""
    status, _, code = status_key.partition(":")
    if not code:
        return None
    return _BY_KEY.get((status, code.split(":", 1)[0], table))


def unregistered(table: str, status_keys: Iterable[str]) -> list[str]:
    """The counted keys of ``table`` whose code is not registered (``ok`` and the runs table never are)."""
    if table == "runs":
        return []
    return sorted(k for k in status_keys if ":" in k and lookup(table, k) is None)


def check(table: str, status_keys: Iterable[str]) -> list[str]:
    """``unregistered``; raises ``UnregisteredReason`` instead of returning them where ``STRICT_ENV`` is set."""
    missing = unregistered(table, status_keys)
    if missing and os.environ.get(STRICT_ENV):
        raise UnregisteredReason(f"{table}: reason codes not in udfs/reasons.py: {missing}")
    return missing
