"""Every output of ``segment_document`` on the sample crawl, pinned: speed-ups must not change a row.

The digest of each page's candidates (status, reason, header, text, measurements, in order) is stored in
``tests/data/segment_digest.json`` under two configurations: the defaults with the sample evaluation set
(what ``conf/local.yaml`` runs), and small segments split by paragraphs, so that many more sections reach
every filter. A deliberate change of behaviour rewrites the file:

    PYTHONPATH=$PWD python tests/unit/test_segment_digest.py --write
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from udfs.decontam import EvalSet  # noqa: E402
from udfs.readers import read_records  # noqa: E402
from udfs.segment import SegmentConfig, segment_document  # noqa: E402

SAMPLE_WARC = ROOT / "data/sample/python-docs-sample.warc.gz"
DIGESTS = ROOT / "tests/data/segment_digest.json"
_EVAL = (EvalSet("sample_eval", str(ROOT / "data/sample/eval-prompts.jsonl")),)
CONFIGS = {
    "default": SegmentConfig(decontamination=_EVAL),
    "small_paragraphs": SegmentConfig(
        min_chars=150,
        max_chars=800,
        split_long="paragraphs",
        decontamination=_EVAL,
        decontamination_ngram=5,
        decontamination_min_words=3,
    ),
}


def page_digests(cfg: SegmentConfig) -> dict[str, str]:
    """url -> sha256 of every candidate of that page, in order."""
    digests = {}
    for rec in read_records(str(SAMPLE_WARC)):
        if rec.status != "ok":
            continue
        rows = [dataclasses.asdict(c) for c in segment_document(rec.html, cfg)]
        digests[rec.url] = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
    return digests


def test_segment_document_outputs_match_the_stored_digest():
    stored = json.loads(DIGESTS.read_text())
    for name, cfg in CONFIGS.items():
        now = page_digests(cfg)
        assert sorted(now) == sorted(stored[name]), f"{name}: different pages"
        changed = [url for url in now if now[url] != stored[name][url]]
        assert not changed, f"{name}: segment_document output changed for {changed}"


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    DIGESTS.write_text(
        json.dumps({name: page_digests(cfg) for name, cfg in CONFIGS.items()}, indent=1, sort_keys=True) + "\n"
    )
    print(f"wrote {DIGESTS}")
