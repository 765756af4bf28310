"""Corpus throughput of the ingest and segment stages: Spark local[1] and local[2] vs a plain Python loop, and scaling.

    python benchmarks/corpus_throughput.py [--pages 20000] [--files 16] [--work work/bench]    # the issue's size
    python benchmarks/corpus_throughput.py --pages 400                                         # smoke check

The corpus is the 27 HTML pages of ``data/sample/python-docs-sample.warc.gz`` copied until there are ``--pages``
pages, written as ``--files`` WARC.gz files (kept under ``--work`` and reused). Every copy has its own URLs;
its text is perturbed so that dedup sees what a crawl holds: copy 0 is the original, every 10th copy is an exact
copy (exact duplicates), copies 1, 11, 21, ... change 1 % of the words of 4+ letters in text nodes (near
duplicates), all other copies change 25 % of them (about 15 % of all words: new segments, J ~ 0.3 with the
original). The first quarter of the files sits in ``q1/``, the rest in ``rest/``.

Measured, each from the same input (pages: ok documents; segments: every section, whatever its status):
- Spark: ``jobs.augment.main`` with ``--stages ingest,segment`` (the real job: Delta writes, exact and near dedup)
  in a fresh process and fresh tables per run, with ``spark.master`` local[1] and local[2]; seconds are the two
  stages' own (the job's JVM start and summary excluded);
- plain loop: on one core, the very batch functions Spark's Python workers run (``udfs.spark_udfs.read_units``
  -> ``segment_documents`` -> ``minhash_signatures``, which call ``read_records``, ``read_back``,
  ``segment_document`` and ``minhash``), one work unit at a time, with no Spark, Arrow or Delta (and no dedup,
  which is Spark SQL over the table: its ok count is before dedup);
- scaling: local[2] on ``q1/`` (a quarter of the pages) vs on all of it.

Targets (issue 3): local[2] >= 1.6x local[1]; Spark per core >= 0.7x the plain loop; 4x the input <= 4.4x the time.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jobs.config import load_pipeline_config  # noqa: E402
from udfs import spark_udfs  # noqa: E402
from udfs.ids import unit_id  # noqa: E402
from udfs.readers import plan_units  # noqa: E402

SAMPLE = ROOT / "data/sample/python-docs-sample.warc.gz"
_TEXT_NODE = re.compile(r">([^<>]+)<")
_LONG_WORD = re.compile(r"[A-Za-z]{4,}")


# --- corpus ----------------------------------------------------------------------------------------------


def sample_pages() -> list[tuple[str, bytes]]:
    """(url, html bytes) of the HTML responses of the sample WARC."""
    pages = []
    with open(SAMPLE, "rb") as f:
        for record in ArchiveIterator(f):
            if record.rec_type == "response" and (record.http_headers.get_header("Content-Type") or "").startswith(
                "text/html"
            ):
                pages.append((record.rec_headers.get_header("WARC-Target-URI"), record.content_stream().read()))
    return pages


def perturb(html: str, rate: float, rng: random.Random, vocab: list[str]) -> str:
    """Replace a ``rate`` share of the words of 4+ letters in text nodes by words of ``vocab``."""
    if not rate:
        return html
    swap = lambda m: rng.choice(vocab) if rng.random() < rate else m.group(0)  # noqa: E731
    return _TEXT_NODE.sub(lambda node: _LONG_WORD.sub(swap, node.group(0)), html)


def copy_rate(copy: int) -> float:
    return 0.0 if copy % 10 == 0 else 0.01 if copy % 10 == 1 else 0.25


def build_corpus(pages: int, files: int, work: Path) -> tuple[Path, int, int]:
    """The replicated corpus folder (reused when present), its page count and the page count of ``q1/``."""
    if files % 4:
        sys.exit("--files must be a multiple of 4 (a quarter of them is the scaling run's input)")
    folder = work / f"corpus-{pages}x{files}"
    manifest = work / f"corpus-{pages}x{files}.json"  # beside the folder: a .json inside would be read as input
    if manifest.is_file():
        meta = json.loads(manifest.read_text())
        return folder, meta["pages"], meta["q1_pages"]
    originals = sample_pages()
    vocab = sorted({w for _, body in originals for w in _LONG_WORD.findall(body.decode("utf-8", "replace"))})
    copies = -(-pages // len(originals))
    items = [(c, j) for c in range(copies) for j in range(len(originals))]
    per_file = -(-len(items) // files)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    q1_pages = 0
    for n in range(files):
        part = folder / ("q1" if n < files // 4 else "rest") / f"part-{n:05d}.warc.gz"
        part.parent.mkdir(parents=True, exist_ok=True)
        chunk = items[n * per_file : (n + 1) * per_file]
        q1_pages += len(chunk) if n < files // 4 else 0
        with open(part, "wb") as out:
            writer = WARCWriter(out, gzip=True)
            for copy, j in chunk:
                url, body = originals[j]
                html = perturb(body.decode("utf-8"), copy_rate(copy), random.Random(f"{copy}/{j}"), vocab)
                headers = StatusAndHeaders(
                    "200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1"
                )
                copy_url = url.replace("https://docs.python.org/", f"https://mirror{copy}.example.org/")
                writer.write_record(
                    writer.create_warc_record(
                        copy_url, "response", payload=io.BytesIO(html.encode("utf-8")), http_headers=headers
                    )
                )
    manifest.write_text(json.dumps({"pages": len(items), "q1_pages": q1_pages}))
    return folder, len(items), q1_pages


# --- measurements ----------------------------------------------------------------------------------------


def plain_loop(corpus: Path) -> dict:
    """The Spark path's batch functions in one Python process, work unit by work unit, timed per phase."""
    cfg = load_pipeline_config(str(ROOT / "conf/local.yaml"))
    read, segment = spark_udfs.read_units(cfg.ingest), spark_udfs.segment_documents(cfg.segment, cfg.ingest)
    sign = spark_udfs.minhash_signatures(cfg.dedup)
    seconds = dict.fromkeys(("read", "segment", "minhash"), 0.0)
    pages = segments = ok = 0
    for unit in plan_units(sorted(str(p) for p in corpus.rglob("*.warc.gz")), cfg.ingest):
        start = time.perf_counter()
        units = pd.DataFrame(
            {
                "unit_id": [unit_id("bench", unit.start, unit.end)],
                "path": [unit.path],
                "start": [unit.start],
                "end": [unit.end],
            }
        )
        docs = pd.concat(list(read(iter([units]))), ignore_index=True)
        docs = docs[docs["status"] == "ok"]
        middle = time.perf_counter()
        columns = ["doc_id", "url", "html", "source_path", "offset", "length", "content_hash"]
        rows = pd.concat(list(segment(iter([docs[columns]]))), ignore_index=True)
        end = time.perf_counter()
        rows = pd.concat(list(sign(iter([rows]))), ignore_index=True)
        seconds["read"] += middle - start
        seconds["segment"] += end - middle
        seconds["minhash"] += time.perf_counter() - end
        pages, segments, ok = pages + len(docs), segments + len(rows), ok + int((rows["status"] == "ok").sum())
    return {"pages": pages, "segments": segments, "ok": ok, "seconds": sum(seconds.values()), "phases": seconds}


def spark_run(corpus: Path, master: str) -> dict:
    """``jobs.augment.main --stages ingest,segment`` in a fresh process on fresh tables; the stages' own figures."""
    root = tempfile.mkdtemp(prefix="corpus-bench-")
    code = "import json, sys; from jobs.augment import main; print('BENCH ' + json.dumps(main(sys.argv[1:])['stages']))"
    args = [
        "--config",
        "conf/local.yaml",
        "--stages",
        "ingest,segment",
        "--set",
        f"spark.master={master}",
        "--set",
        f"input.corpus={corpus}",
        "--set",
        f"storage.root={root}/tables",
    ]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }
    try:
        out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH ")), None)
    if out.returncode or line is None:
        sys.exit(f"spark run ({master}) failed:\n{out.stderr[-3000:]}")
    ingest, segment = json.loads(line[len("BENCH ") :])
    return {
        "pages": ingest["by_status"].get("ok", 0),
        "segments": segment["rows_written"],
        "ok": segment["by_status"].get("ok", 0),
        "seconds": ingest["seconds"] + segment["seconds"],
        "phases": {"ingest": ingest["seconds"], "segment": segment["seconds"]},
        "reasons": segment["by_status"],
    }


def report(name: str, r: dict) -> None:
    phases = ", ".join(f"{k} {v:.1f}s" for k, v in r["phases"].items())
    print(
        f"  {name:<18} {r['pages']:>7,} pages {r['segments']:>8,} segments ({r['ok']:,} ok) in {r['seconds']:7.1f}s: "
        f"{r['pages'] / r['seconds']:7.1f} pages/s {r['segments'] / r['seconds']:8.1f} segments/s  [{phases}]"
    )


def check(label: str, value: float, target: str, met: bool) -> None:
    print(f"  {label:<44} {value:6.2f}   target {target}: {'met' if met else 'MISSED'}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=20000)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--work", default=str(ROOT / "work/bench"), help="where the corpus is built (and reused)")
    args = parser.parse_args(argv)
    corpus, pages, q1_pages = build_corpus(args.pages, args.files, Path(args.work))
    print(f"corpus: {pages:,} pages in {args.files} files under {corpus} (q1/: {q1_pages:,} pages)")
    results = {"loop": plain_loop(corpus)}
    for master in ("local[1]", "local[2]"):
        results[master] = spark_run(corpus, master)
    results["local[2] q1"] = spark_run(corpus / "q1", "local[2]")
    for name, r in results.items():
        report(name, r)
    print(f"  segments by reason (local[2]): {json.dumps(results['local[2]']['reasons'], sort_keys=True)}")
    rate = {name: r["pages"] / r["seconds"] for name, r in results.items()}
    check(
        "local[2] / local[1] (pages/s)",
        rate["local[2]"] / rate["local[1]"],
        ">= 1.6",
        rate["local[2]"] / rate["local[1]"] >= 1.6,
    )
    per_core = rate["local[2]"] / 2 / rate["loop"]
    check("Spark per core / plain loop: local[2] / 2", per_core, ">= 0.7", per_core >= 0.7)
    check(
        "Spark per core / plain loop: local[1]",
        rate["local[1]"] / rate["loop"],
        ">= 0.7",
        rate["local[1]"] / rate["loop"] >= 0.7,
    )
    input_ratio = pages / q1_pages
    time_ratio = results["local[2]"]["seconds"] / results["local[2] q1"]["seconds"]
    check(
        f"time for {input_ratio:.1f}x the input (local[2])",
        time_ratio,
        f"<= {1.1 * input_ratio:.1f}",
        time_ratio <= 1.1 * input_ratio,
    )
    return results


if __name__ == "__main__":
    main()
