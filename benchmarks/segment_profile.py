"""Pages per second of ``segment_document`` on one core, and where the time goes.

    python benchmarks/segment_profile.py                                          # the sample crawl (27 pages)
    python benchmarks/segment_profile.py /work/shared/data/python-3.11-docs.warc.gz --repeat 1
    python benchmarks/segment_profile.py --digest                                 # also a digest of every output

Records are read (``udfs.readers``) before the clock starts; the timed loop is ``segment_document`` alone, with
``conf/local.yaml``'s segment settings (defaults plus the sample evaluation set), best of ``--repeat`` passes,
as wall-clock and as CPU time of this process.
A second pass under cProfile prints the cost centres: the share of the total spent in (below) each stage of
the segmenter and each filter, then the functions with the most own time. ``--digest`` prints one sha256 over
all outputs (status, reason, text, measurements) to compare two versions of the code on a bigger crawl than
the one ``tests/unit/test_segment_digest.py`` pins.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import hashlib
import json
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from udfs.decontam import EvalSet  # noqa: E402
from udfs.readers import read_records  # noqa: E402
from udfs.segment import SegmentConfig, segment_document  # noqa: E402

SAMPLE = ROOT / "data/sample/python-docs-sample.warc.gz"
# Cost centres: function names (as cProfile reports them) whose cumulative time is one stage of the work.
CENTRES = (
    ("HTML -> blocks (parse, walk, clean, mask)", "_blocks"),
    ("  text cleaning (ftfy, invisibles)", "clean_text"),
    ("  PII masking", "mask_pii"),
    ("filters (all)", "measure"),
    ("  length_v1", "length_filter"),
    ("  header_v1", "header_filter"),
    ("  boilerplate_v1", "boilerplate_filter"),
    ("  language_v1", "language_filter"),
    ("  repetition_v1", "repetition_filter"),
    ("  gopher_quality_v1", "gopher_quality_filter"),
    ("  decontamination_v1", "decontamination_filter"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("warc", nargs="?", default=str(SAMPLE))
    parser.add_argument("--repeat", type=int, default=3, help="timed passes; the best is reported")
    parser.add_argument("--top", type=int, default=15, help="functions listed by own time")
    parser.add_argument("--digest", action="store_true")
    args = parser.parse_args()

    cfg = SegmentConfig(decontamination=(EvalSet("sample_eval", str(ROOT / "data/sample/eval-prompts.jsonl")),))
    pages = [rec.html for rec in read_records(args.warc) if rec.status == "ok"]
    segment_document(pages[0], cfg)  # load the language model and the evaluation index outside the clock
    wall, cpu = min(_timed(pages, cfg) for _ in range(args.repeat))
    print(
        f"{len(pages)} pages in {wall:.2f} s wall, {cpu:.2f} s CPU: {len(pages) / wall:.1f} pages/s wall, "
        f"{len(pages) / cpu:.1f} pages/s CPU on one core ({args.warc})"
    )

    profile = cProfile.Profile()
    profile.runcall(lambda: [segment_document(p, cfg) for p in pages])
    stats = pstats.Stats(profile)
    total = sum(tt for _, _, tt, _, _ in stats.stats.values())
    cumulative = {}
    for (_, _, name), (_, _, _, ct, _) in stats.stats.items():
        cumulative[name] = max(cumulative.get(name, 0.0), ct)
    print(f"\ncost centres (cProfile, {total:.2f} s profiled):")
    for label, name in CENTRES:
        print(f"  {label:<44} {100 * cumulative.get(name, 0.0) / total:5.1f} %")
    print(f"\ntop {args.top} functions by own time:")
    ranked = sorted(stats.stats.items(), key=lambda item: -item[1][2])[: args.top]
    for (file, line, name), (_, calls, tt, _, _) in ranked:
        print(f"  {100 * tt / total:5.1f} %  {calls:>9} calls  {name}  ({Path(file).name}:{line})")

    if args.digest:
        digest = hashlib.sha256()
        for page in pages:
            digest.update(
                json.dumps([dataclasses.asdict(c) for c in segment_document(page, cfg)], sort_keys=True).encode()
            )
        print(f"\noutput digest: {digest.hexdigest()}")


def _timed(pages: list[str], cfg: SegmentConfig) -> tuple[float, float]:
    """(wall, CPU) seconds of one pass; CPU time is the fairer figure when other work shares the cores."""
    start, start_cpu = time.perf_counter(), time.process_time()
    for page in pages:
        segment_document(page, cfg)
    return time.perf_counter() - start, time.process_time() - start_cpu


if __name__ == "__main__":
    main()
