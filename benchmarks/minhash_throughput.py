"""MinHash throughput on one core: text -> signature (+ band keys) for real segments, per implementation.

    python benchmarks/minhash_throughput.py [--warc data/sample/python-docs-sample.warc.gz] \
        [--segments 3000] [--repeat 5]

Segments are the ok segments (600-3,000 characters) that ``udfs.segment`` cuts from the WARC, repeated up to
``--segments``. Every candidate starts from the same text and the same normalisation, so the figures compare
whole paths, and prints the best of ``--repeat`` runs (the least disturbed by other processes):

- ``udfs.minhash`` (what the pipeline runs): CRC-32 word hashes, polynomial 5-gram hashes, numpy
  multiply-add-shift permutations, band keys;
- ``rensa`` (Rust) fed the 5-gram strings, one ``RMinHash`` per segment, and fed our 5-gram hashes in one
  ``digest_matrix_from_flat_token_hashes`` call per batch;
- ``datasketch`` fed the 5-gram strings (``MinHash.update_batch``, SHA-1 per shingle).

Target (issue 3): >= 2,000 segments/s per core.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "RAYON_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # one core: no library threads
    os.environ[var] = "1"

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from udfs.text import normalize_for_dedup  # noqa: E402
from udfs.minhash import DedupConfig, minhash, shingle_hashes  # noqa: E402
from udfs.readers import read_records  # noqa: E402
from udfs.segment import SegmentConfig, segment_document  # noqa: E402

TARGET = 2000


def real_segments(warc: str, n: int) -> list[str]:
    texts = [
        c.text
        for r in read_records(warc)
        if r.status == "ok"
        for c in segment_document(r.html, SegmentConfig())
        if c.status == "ok"
    ]
    if not texts:
        sys.exit(f"no ok segments in {warc}")
    return (texts * (n // len(texts) + 1))[:n]


def shingle_strings(text: str, n: int) -> list[str]:
    words = normalize_for_dedup(text).split()
    return list({" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))})


def candidates(cfg: DedupConfig) -> dict:
    """name -> function(list of texts) computing one signature per text; optional libraries when installed."""
    found = {"udfs.minhash (numpy, chosen)": lambda texts: [minhash(t, cfg) for t in texts]}
    try:
        from rensa import RMinHash
    except ImportError:
        print("rensa not installed: skipped (pip install rensa)")
    else:

        def rensa_strings(texts):
            out = []
            for t in texts:
                m = RMinHash(cfg.num_perm, cfg.seed)
                m.update(shingle_strings(t, cfg.ngram))
                out.append(m.digest())
            return out

        def rensa_hashes(texts):
            hashes = [shingle_hashes(t, cfg.ngram) for t in texts]
            offsets = np.cumsum([0] + [len(h) for h in hashes]).astype(np.uint64)
            return RMinHash.digest_matrix_from_flat_token_hashes(
                np.concatenate(hashes), offsets, cfg.num_perm, cfg.seed
            )

        found["rensa RMinHash (5-gram strings)"] = rensa_strings
        found["rensa digest matrix (our 5-gram hashes)"] = rensa_hashes
    try:
        from datasketch import MinHash
    except ImportError:
        print("datasketch not installed: skipped (pip install datasketch)")
    else:

        def datasketch(texts):
            out = []
            for t in texts:
                m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed)
                m.update_batch([s.encode("utf-8") for s in shingle_strings(t, cfg.ngram)])
                out.append(m.hashvalues)
            return out

        found["datasketch MinHash (5-gram strings)"] = datasketch
    return found


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warc", default=str(ROOT / "data/sample/python-docs-sample.warc.gz"))
    parser.add_argument("--segments", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    texts = real_segments(args.warc, args.segments)
    cfg = DedupConfig()
    print(
        f"{len(texts)} segments, mean {np.mean([len(t) for t in texts]):.0f} chars; {cfg.scheme}; "
        f"one core, best of {args.repeat}"
    )
    rates = {}
    for name, fn in candidates(cfg).items():
        best = min(_seconds(fn, texts) for _ in range(args.repeat))
        rates[name] = len(texts) / best
    base = rates["udfs.minhash (numpy, chosen)"]
    for name, rate in rates.items():
        print(
            f"  {name:<42} {rate:>8,.0f} segments/s  {rate / base:4.2f}x numpy  "
            f"target >= {TARGET:,}: {'met' if rate >= TARGET else 'MISSED'}"
        )
    return rates


def _seconds(fn, texts) -> float:
    start = time.perf_counter()
    fn(texts)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
