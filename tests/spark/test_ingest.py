"""The ingest stage on local Spark + Delta: every record lands once, and the ``files`` ledger makes a re-run
over unchanged input open no file, while a changed file is read again."""

from __future__ import annotations

import json
import os
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable

from jobs.config import PipelineConfig
from jobs.stages import Context, run_stage
from jobs.storage import Storage
from tests.conftest import write_warc
from udfs.config import load_config

PAGE = b"<html><body><h2>Page %d</h2><p>Some text.</p></body></html>"


def make_inputs(root):
    root.mkdir()
    write_warc(
        root / "crawl.warc.gz",
        {f"http://w/{i}": PAGE % i for i in range(2)},
        extra=[
            ("http://w/gone", "404 Not Found", "text/html", b"gone"),
            ("http://w/old", "301 Moved Permanently", "text/html", b""),
        ],
    )
    lines = [json.dumps({"url": f"http://j/{i}", "html": (PAGE % (10 + i)).decode()}) for i in range(6)] + ["{broken"]
    (root / "docs.jsonl").write_text("\n".join(lines) + "\n")
    pq.write_table(
        pa.table({"url": [f"http://p/{i}" for i in range(4)], "text": [f"Parquet text {i}. " * 20 for i in range(4)]}),
        root / "docs.parquet",
        row_group_size=2,
    )
    (root / "page.html").write_bytes(PAGE % 99)
    (root / "notes.txt").write_text("not an input format: ignored")


def context(spark, tmp_path, corpus) -> Context:
    cfg = load_config(
        PipelineConfig,
        None,
        [f"input.corpus={corpus}", "input.seed=unused", f"storage.root={tmp_path}/tables", "ingest.split_bytes=400"],
    )
    return Context(spark, Storage(spark, cfg.storage.root), cfg)


def table(ctx: Context, name: str):
    return DeltaTable(ctx.storage.path(name)).to_pandas()


def test_ingest_ledger_skips_unchanged_files_and_rereads_changed_ones(spark, tmp_path):
    corpus = tmp_path / "corpus"
    make_inputs(corpus)
    ctx = context(spark, tmp_path, corpus)

    first = run_stage(ctx, "ingest")
    docs, ledger = table(ctx, "documents"), table(ctx, "files")
    assert (first.extra["files"], first.extra["records_read"]) == (4, 16)
    assert first.extra["units_read"] == len(ledger) == 2 + 2 + 2 + 1  # WARC.gz, JSONL and Parquet are split
    assert len(docs) == 4 + 7 + 4 + 1 == ledger["records"].sum()  # every record once, counted by its unit
    assert docs["doc_id"].is_unique
    reasons = docs.groupby(docs["reason"].str.split(":").str[0].fillna("ok")).size().to_dict()
    assert reasons == {"ok": 2 + 6 + 4 + 1, "http_status_not_200": 1, "redirect": 1, "invalid_json": 1}
    assert set(docs.loc[docs["status"] == "ok", "charset_source"].dropna()) <= {"header", "detected", "default"}
    parquet = ledger[ledger["path"].str.endswith("docs.parquet")]
    assert (
        sorted(zip(parquet["unit_start"], parquet["unit_end"])) == [(0, 1), (1, 2)]
        and (parquet["units_in_file"] == 2).all()
    )
    jsonl = ledger[ledger["path"].str.endswith("docs.jsonl")]
    assert jsonl["unit_start"].min() == 0 and jsonl["unit_end"].max() == os.path.getsize(corpus / "docs.jsonl")
    warc_units = ledger.loc[ledger["path"].str.endswith(".warc.gz"), "status_counts"]
    counts = Counter(k for c in warc_units for k, n in json.loads(c).items() for _ in range(n))
    assert counts == {"dropped:http_status_not_200": 1, "dropped:redirect": 1, "ok": 2}

    # Unchanged input (same path, size and mtime) is not opened: the WARC's bytes are now garbage, unseen.
    warc = corpus / "crawl.warc.gz"
    stat = warc.stat()
    warc.write_bytes(b"\0" * stat.st_size)
    os.utime(warc, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    versions = (ctx.storage.version("documents"), ctx.storage.version("files"))
    rerun = run_stage(ctx, "ingest")
    assert (rerun.rows_in, rerun.extra["files_unchanged"], rerun.rows_written) == (0, 4, 0)
    assert (ctx.storage.version("documents"), ctx.storage.version("files")) == versions

    # A touched file is a new file: all of its units are read again; same content, so no new document. (This is
    # also what a crash between the documents and the ledger commits leads to.)
    jsonl_path = corpus / "docs.jsonl"
    os.utime(jsonl_path, ns=(jsonl_path.stat().st_atime_ns, jsonl_path.stat().st_mtime_ns + 10**9))
    touched = run_stage(ctx, "ingest")
    assert (touched.extra["files_unchanged"], touched.extra["units_read"], touched.rows_written) == (3, len(jsonl), 0)
    assert len(table(ctx, "files")) == len(ledger) + len(jsonl)
