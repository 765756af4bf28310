"""The reason registry: lookups as rows are counted, the strict check, and the codes the pure code writes."""

from __future__ import annotations

import re
import typing

import pytest

from tests.conftest import ROOT
from udfs import reasons
from udfs.tables import status_key


def test_counted_keys_are_looked_up_by_code_whatever_the_qualifier_or_message():
    assert reasons.lookup("segments", status_key("dropped", "too_short")).code == "too_short"
    assert reasons.lookup("segments", status_key("dropped", "eval_overlap:alpaca_eval")).code == "eval_overlap"
    assert reasons.lookup("segments", status_key("error", "source_missing: No such file: /x")).code == "source_missing"
    assert reasons.lookup("segments", "ok") is None
    # a code belongs to the tables it is registered for, with its status
    assert reasons.lookup("candidates", "dropped:too_short") is None
    assert reasons.lookup("segments", "error:too_short") is None


def test_unregistered_codes_are_named_and_raise_only_when_strict(monkeypatch):
    keys = ["ok", "dropped:too_short", "dropped:made_up_reason", "error:also_made_up"]
    assert reasons.unregistered("segments", keys) == ["dropped:made_up_reason", "error:also_made_up"]
    assert reasons.unregistered("runs", ["failed:anything"]) == []
    monkeypatch.delenv(reasons.STRICT_ENV, raising=False)
    assert reasons.check("segments", keys) == ["dropped:made_up_reason", "error:also_made_up"]
    monkeypatch.setenv(reasons.STRICT_ENV, "1")
    with pytest.raises(reasons.UnregisteredReason, match="made_up_reason"):
        reasons.check("segments", keys)


def test_codes_are_snake_case_and_listed_once_per_table_and_status():
    seen = set()
    for r in reasons.REASONS:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", r.code), r.code
        assert r.meaning and r.tables
        for table in r.tables:
            assert (r.status, r.code, table) not in seen
            seen.add((r.status, r.code, table))


def _literals(path: str, pattern: str) -> set[str]:
    return set(re.findall(pattern, (ROOT / path).read_text()))


def test_every_code_the_filters_and_segmenter_write_is_registered():
    written = _literals("udfs/filters.py", r'Measured\([^()]*?,\s*"([a-z_]+)"\)') | _literals(
        "udfs/filters.py", r'"(gopher_[a-z_]+)"'
    )
    written |= _literals("udfs/segment.py", r'(?:DocumentTooComplex|_document_dropped)\("([a-z_]+)"\)')
    from udfs.main_content import MAIN_CONTENT_REASONS

    written |= set(MAIN_CONTENT_REASONS)
    assert {"too_deep", "parse_timeout", "gopher_enough_stop_words", "high_link_density"} <= written
    missing = sorted(c for c in written if reasons.lookup("segments", f"dropped:{c}") is None)
    assert not missing, missing


def test_every_code_the_readers_and_llm_rows_write_is_registered():
    documents = _literals("udfs/readers.py", r'reason\s*=\s*f?"([a-z_0-9]+)')
    assert {"redirect", "not_html", "too_large"} <= documents
    errors = {"unreadable_record", "invalid_json", "invalid_utf8", "missing_columns", "source_missing"}
    errors.add("source_changed")
    for code in documents:
        status = "error" if code in errors else "dropped"
        table = "segments" if code.startswith("source_") else "documents"
        assert reasons.lookup(table, f"{status}:{code}"), code
    from udfs.rewrite import RewriteFailure

    for code in typing.get_args(RewriteFailure):
        assert reasons.lookup("rewrites", f"dropped:{code}"), code
    for code in _literals("udfs/augment.py", r'"dropped", "([a-z_]+)"'):
        assert reasons.lookup("candidates", f"dropped:{code}"), code
