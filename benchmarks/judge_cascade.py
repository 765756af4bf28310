"""LLM judge calls per curated pair with and without the judge cascade, on the same pool, and the cascade's
recall of the full judge's kept set.

    python benchmarks/judge_cascade.py [--pages 60] [--corpus ../shared/data/python-3.11-docs.warc.gz] \
        [--config conf/local.yaml] [--root /tmp/judge-cascade] [--set curate.cascade.sample_fraction=0.1 ...]

Builds one pool with the real job (ingest, segment, augment) from the first ``--pages`` HTML pages of the
corpus, with SmolLM2-135M-Instruct (``--model``) as both the instruction writer and the judge (no fine-tuning:
the figure is about routing the judge's decisions, not their quality), then runs iteration 1's curate stage
twice on copies of that pool: once judging every pair, once with ``curate.cascade.enabled``. Both runs use the
same judge, prompt, sampling and seed, so their score ids and the judge's decisions on the pairs both judge
agree; recall = |kept by both| / |kept by the full judge|.

``--pool work/tables --judge work/models/m0 --full-scores`` takes the pool and the full judge's rows of a finished
run (e.g. ``make demo``) instead, and runs only the cascade's judge.

Meaningful size: the classifier learns from the sample's kept pairs, so the pool must give the sample a few
hundred of them: at ~10 % yield and ``sample_fraction`` 0.1 that is >= ~20,000 pairs. Smaller pools measure the
mechanics only (the cascade turns itself off below ``curate.cascade.min_sample_kept`` kept pairs).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import time
from pathlib import Path

from deltalake import DeltaTable
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from jobs.augment import main as run_job
from jobs.config import load_pipeline_config
from training.pretrained import ensure_smollm2
from udfs.curation import passes

ROOT = Path(__file__).resolve().parent.parent
POOL_TABLES = ("files", "documents", "segments", "candidates")


def subset_warc(corpus: str, pages: int, out: Path) -> int:
    """The first ``pages`` HTML responses of ``corpus`` as a WARC.gz at ``out``; how many were written."""
    written = 0
    with open(corpus, "rb") as src, open(out, "wb") as dst:
        writer = WARCWriter(dst, gzip=True)
        for record in ArchiveIterator(src):
            if written >= pages:
                break
            content_type = record.http_headers.get_header("Content-Type") if record.http_headers else None
            if record.rec_type != "response" or "html" not in (content_type or ""):
                continue
            url, body = record.rec_headers.get_header("WARC-Target-URI"), record.content_stream().read()
            http = StatusAndHeaders("200 OK", [("Content-Type", content_type)], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http))
            written += 1
    return written


def figures(tables: Path, cfg) -> dict:
    scores = DeltaTable(str(tables / "scores")).to_pandas()
    scores = scores[scores["iteration"] == 1]
    kept = scores[passes(scores.__getitem__, cfg.iterations.judge_rule, cfg.iterations.k(1)).fillna(False)]
    calls = int((scores["reason"] != "cascade_rejected").sum())
    return {
        "pairs": len(scores),
        "judge_calls": calls,
        "curated": len(kept),
        "calls_per_curated_pair": round(calls / len(kept), 2) if len(kept) else None,
        "kept_ids": set(kept["generation_id"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=str(ROOT.parent.parent / "shared/data/python-3.11-docs.warc.gz"))
    parser.add_argument("--pages", type=int, default=60)
    parser.add_argument("--config", default=str(ROOT / "conf/local.yaml"))
    parser.add_argument("--model", help="a Hugging Face model directory (default: the built-in SmolLM2)")
    parser.add_argument("--root", default="/tmp/judge-cascade")
    parser.add_argument("--pool", help="a storage.root whose segments and candidates are the pool (no ingest/augment)")
    parser.add_argument("--judge", help="the judge's model directory (default: --model)")
    parser.add_argument(
        "--full-scores",
        action="store_true",
        help="take the full judge's rows from --pool's scores table (same judge, prompt, sampling, seed: same ids)",
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    args.model = args.model or str(ensure_smollm2(ROOT / "work/models"))  # converted once, as by the demo
    root = Path(args.root)
    shutil.rmtree(root, ignore_errors=True)
    (root / "corpus").mkdir(parents=True)
    # written with --pool too: the job checks that input.corpus has pages before it runs any stage
    pages = subset_warc(args.corpus, args.pages, root / "corpus" / "pool.warc.gz")
    common = [
        f"input.corpus={root / 'corpus'}",
        f"models.dir={root / 'models'}",
        f"models.base={args.model}",
        f"models.backward={args.model}",
        f"models.seed_model={args.judge or args.model}",
        "iterations.count=1",
        "report.after_run=false",
        "report.judge_labels=null",
        *args.overrides,
    ]

    def job(name: str, stages: str, *extra: str) -> float:
        sets = [*common, f"storage.root={root / name}", *extra]
        argv = ["--config", args.config, "--stages", stages] + [a for s in sets for a in ("--set", s)]
        started = time.perf_counter()
        run_job(argv)
        return time.perf_counter() - started

    if args.pool:
        pool_seconds = 0.0
        for table in POOL_TABLES:
            shutil.copytree(Path(args.pool) / table, root / "full" / table)
        if args.full_scores:  # the curate run below then finds every pair of its judge done and judges nothing
            shutil.copytree(Path(args.pool) / "scores", root / "full" / "scores")
    else:
        pool_seconds = job("full", "ingest,segment,augment")
    for table in POOL_TABLES:
        shutil.copytree(root / "full" / table, root / "cascade" / table)
    full_seconds = job("full", "curate")
    cascade_seconds = job("cascade", "curate", "curate.cascade.enabled=true")
    cfg = load_pipeline_config(args.config, [*common, f"storage.root={root / 'full'}"])
    full, cascaded = figures(root / "full", cfg), figures(root / "cascade", cfg)
    both = len(full["kept_ids"] & cascaded["kept_ids"])
    result = {
        "pages": None if args.pool else pages,
        "pool": args.pool,
        "full_scores_from_pool": bool(args.full_scores),
        "pool_seconds": round(pool_seconds, 1),
        "full": {k: v for k, v in full.items() if k != "kept_ids"} | {"seconds": round(full_seconds, 1)},
        "cascade": {k: v for k, v in cascaded.items() if k != "kept_ids"} | {"seconds": round(cascade_seconds, 1)},
        "judge_calls_saved": full["judge_calls"] - cascaded["judge_calls"],
        "fewer_judge_calls": round(full["judge_calls"] / max(cascaded["judge_calls"], 1), 2),
        "recall_of_full_kept_set": round(both / len(full["kept_ids"]), 4) if full["kept_ids"] else None,
    }
    print(json.dumps(result, indent=2), flush=True)


if __name__ == "__main__":
    main()
