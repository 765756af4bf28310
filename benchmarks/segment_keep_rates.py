"""Segment-stage keep rates per reason on a WARC: the pure segmenter and filters in a plain Python loop.

    python benchmarks/segment_keep_rates.py data/sample/python-docs-sample.warc.gz [more.warc.gz ...] \
        [--set split_long=off --set languages=[] ...]

``--set`` takes ``SegmentConfig`` keys (as under ``segment:`` in conf/*.yaml). Prints one line per
status/reason with its count and share of all segment rows, the kept segments' characters, and the
documents and segments per second. Exact dedup runs in Spark over the whole table and is not counted here.
"""

from __future__ import annotations

import argparse
import collections
import time

from udfs.config import apply_override, build
from udfs.readers import read_records
from udfs.segment import SegmentConfig, segment_document


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("warcs", nargs="+")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    args = parser.parse_args()
    raw: dict = {}
    for item in args.overrides:
        apply_override(raw, item)
    cfg = build(SegmentConfig, raw)
    docs = [r.html for path in args.warcs for r in read_records(path) if r.status == "ok"]
    reasons: collections.Counter = collections.Counter()
    kept_chars = 0
    start = time.perf_counter()
    for html in docs:
        for c in segment_document(html, cfg):
            reasons[c.reason or "ok"] += 1
            kept_chars += len(c.text) if c.status == "ok" else 0
    seconds = time.perf_counter() - start
    total = sum(reasons.values())
    print(
        f"{len(docs)} documents, {total} segment rows, {reasons['ok']} kept ({reasons['ok'] / total:.1%}), "
        f"{kept_chars:,} kept characters"
    )
    print(f"{'reason':<32}{'rows':>8}{'share':>9}")
    for reason, count in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"{reason:<32}{count:>8}{count / total:>9.1%}")
    print(f"{len(docs) / seconds:.1f} documents/s, {total / seconds:.1f} segment rows/s (one core, plain loop)")


if __name__ == "__main__":
    main()
