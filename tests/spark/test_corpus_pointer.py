"""Documents point at their records instead of copying the crawl: the segment stage reads each record back and
produces exactly what it produces from stored html, and a moved or rewritten input file gives error rows."""

from __future__ import annotations

import shutil

from deltalake import DeltaTable

from jobs.config import PipelineConfig
from jobs.stages import Context, run_stage
from jobs.storage import Storage
from tests.conftest import ROOT, SAMPLE_WARC, write_warc
from udfs.config import load_config

COMPARED = ["segment_id", "doc_id", "url", "section_index", "part", "text", "text_hash", "status", "reason"]


def context(spark, root, corpus, *overrides: str) -> Context:
    cfg = load_config(
        PipelineConfig,
        ROOT / "conf/local.yaml",
        [f"input.corpus={corpus}", f"storage.root={root}/tables", *overrides],
    )
    return Context(spark, Storage(spark, cfg.storage.root), cfg)


def table(ctx: Context, name: str):
    return DeltaTable(ctx.storage.path(name)).to_pandas()


def segmented(spark, root, corpus, *overrides: str):
    ctx = context(spark, root, corpus, *overrides)
    run_stage(ctx, "ingest")
    run_stage(ctx, "segment")
    return ctx, table(ctx, "documents"), table(ctx, "segments")


def test_sample_run_segments_are_identical_with_and_without_stored_html(spark, tmp_path):
    corpus = tmp_path / "crawl.warc.gz"
    shutil.copy(SAMPLE_WARC, corpus)
    _, docs, segments = segmented(spark, tmp_path / "pointer", corpus)
    _, docs_html, segments_html = segmented(spark, tmp_path / "stored", corpus, "ingest.store_html=true")
    ok = docs["status"] == "ok"
    assert ok.sum() >= 20 and docs["html"].isna().all() and docs.loc[ok, "length"].gt(0).all()
    assert docs_html.loc[docs_html["status"] == "ok", "html"].notna().all()
    assert sorted(docs["doc_id"]) == sorted(docs_html["doc_id"])
    columns = [*COMPARED, "measurements", "duplicate_of", "lang", "lang_score", "minhash_bands"]
    a = segments[columns].sort_values("segment_id").reset_index(drop=True)
    b = segments_html[columns].sort_values("segment_id").reset_index(drop=True)
    assert len(a) > 100 and (a["status"] == "ok").sum() > 20
    assert a.drop(columns="minhash_bands").equals(b.drop(columns="minhash_bands"))
    assert [list(x) if x is not None else None for x in a["minhash_bands"]] == [
        list(x) if x is not None else None for x in b["minhash_bands"]
    ]


def test_moved_or_rewritten_input_gives_one_error_row_per_document(spark, tmp_path):
    pages = {f"http://w/{i}": b"<html><body><h2>Page %d</h2><p>Some text here.</p></body></html>" % i for i in range(4)}
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    kept, rewritten, moved = (write_warc(corpus / f"{n}.warc.gz", pages_of(pages, n)) for n in ("a", "b", "c"))
    ctx = context(spark, tmp_path, corpus)
    run_stage(ctx, "ingest")
    # After ingest: one file rewritten with other pages (same name), one moved away.
    write_warc(rewritten, {url: body.replace(b"Some", b"Other") for url, body in pages_of(pages, "b").items()})
    moved.rename(tmp_path / "elsewhere.warc.gz")
    report = run_stage(ctx, "segment")
    segments = table(ctx, "segments")
    docs = table(ctx, "documents")
    by_doc = segments.merge(docs[["doc_id", "source_path"]], on="doc_id")
    assert set(by_doc["doc_id"]) == set(docs.loc[docs["status"] == "ok", "doc_id"])  # no document lost
    codes = by_doc.groupby("source_path")["reason"].agg(lambda r: sorted({str(x).split(":")[0] for x in r}))
    assert codes[str(kept)] == ["too_short"]  # segmented as usual (these pages are one short sentence)
    assert codes[str(rewritten)] == ["source_changed"] and codes[str(moved)] == ["source_missing"]
    errors = by_doc[by_doc["status"] == "error"]
    assert len(errors) == 8 and errors.groupby("doc_id").size().eq(1).all()
    assert report.by_status["error:source_changed"] == 4 and report.by_status["error:source_missing"] == 4


def pages_of(pages: dict[str, bytes], name: str) -> dict[str, bytes]:
    return {f"{url}/{name}": body.replace(b"Page", b"Page " + name.encode()) for url, body in pages.items()}
