"""input.corpus on an object store (a real S3 server on 127.0.0.1, tests/s3_server.py) and on HTTP: the job ingests
and segments exactly what it does from disk, and the ``files`` ledger keys remote objects by URL, size and ETag."""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import threading

import pytest
from deltalake import DeltaTable

from jobs.config import load_pipeline_config
from jobs.stages import Context, run_stage
from jobs.storage import Storage
from tests.conftest import ROOT, SAMPLE_WARC

DOC_COLUMNS = ["doc_id", "url", "offset", "content_hash", "html", "status", "reason"]
SEGMENT_COLUMNS = ["segment_id", "doc_id", "text", "status", "reason"]


def run(spark, root, corpus: str, *stages: str, split_bytes: int = 80_000) -> Context:
    """``stages`` on ``corpus``; the default split_bytes cuts the 310 KB WARC into several units, so planning
    seeks in the object and the executors read ranges of it."""
    settings = [f"input.corpus={corpus}", f"storage.root={root}", f"ingest.split_bytes={split_bytes}"]
    cfg = load_pipeline_config(str(ROOT / "conf/tiny.yaml"), settings)
    ctx = Context(spark, Storage(spark, cfg.storage.root), cfg)
    ctx.reports = [run_stage(ctx, stage) for stage in stages]
    return ctx


def rows(root, table: str, columns: list[str]):
    frame = DeltaTable(f"{root}/{table}").to_pandas()[columns]
    return frame.sort_values(columns[0]).reset_index(drop=True)


def same_documents(root_a, root_b) -> bool:
    """Documents alike: those with content by id (URL and content), the others by where and why (their ids
    hash the file they are in: ``udfs.ids.doc_id``)."""
    a, b = rows(root_a, "documents", DOC_COLUMNS), rows(root_b, "documents", DOC_COLUMNS)
    empty = ["offset", "status", "reason"]
    located = [f[f["content_hash"].isna()][empty].sort_values("offset").reset_index(drop=True) for f in (a, b)]
    content = [f[f["content_hash"].notna()].reset_index(drop=True) for f in (a, b)]
    return len(a) == len(b) and content[0].equals(content[1]) and located[0].equals(located[1])


def test_a_warc_on_s3_is_ingested_and_segmented_as_from_disk(spark, s3_env, tmp_path):
    bucket = s3_env.bucket("objstore-ingest")
    s3_env.client().upload_file(str(SAMPLE_WARC), bucket, "crawl/2024/sample.warc.gz")
    corpus = f"s3://{bucket}/crawl/2024/*.warc.gz"
    # The Spark session (and its Python workers) started before the test set the AWS variables: the readers get
    # them from the task, as executors started without them on a cluster would.
    remote = run(spark, tmp_path / "s3", corpus, "ingest", "segment")
    local = run(spark, tmp_path / "local", str(SAMPLE_WARC), "ingest", "segment")
    assert remote.reports[0].extra["units_read"] == local.reports[0].extra["units_read"] > 3
    docs = rows(tmp_path / "s3", "documents", DOC_COLUMNS)
    assert len(docs) == 29 and (docs["status"] == "ok").sum() == 27
    assert same_documents(tmp_path / "s3", tmp_path / "local")
    assert set(DeltaTable(f"{tmp_path}/s3/documents").to_pandas()["source_path"]) == {
        f"s3://{bucket}/crawl/2024/sample.warc.gz"
    }
    segments = rows(tmp_path / "s3", "segments", SEGMENT_COLUMNS)
    assert len(segments) > 29 and segments.equals(rows(tmp_path / "local", "segments", SEGMENT_COLUMNS))


def test_the_ledger_skips_an_unchanged_object_and_rereads_a_changed_one(spark, s3_env, tmp_path):
    bucket, key = s3_env.bucket("objstore-ledger"), "drop/docs.jsonl"
    client = s3_env.client()

    def put(text: str) -> None:
        line = f'{{"url": "http://j/1", "html": "<html><body><h2>A</h2><p>{text}</p></body></html>"}}\n'
        client.put_object(Bucket=bucket, Key=key, Body=line.encode())

    put("first version")
    corpus = f"s3://{bucket}/drop/"
    first = run(spark, tmp_path, corpus, "ingest").reports[0]
    assert (first.extra["files"], first.extra["units_read"]) == (1, 1)
    again = run(spark, tmp_path, corpus, "ingest").reports[0]
    assert (again.extra["files_unchanged"], again.extra["units_read"]) == (1, 0)
    put("other version")  # same size, new content: only the ETag tells
    changed = run(spark, tmp_path, corpus, "ingest").reports[0]
    assert (changed.extra["files_unchanged"], changed.extra["units_read"]) == (0, 1)
    docs = DeltaTable(f"{tmp_path}/documents").to_pandas()
    # both versions' pages (html is not stored: they differ by content hash) and no id twice
    assert docs["content_hash"].nunique() == 2 and docs["doc_id"].is_unique
    ledger = DeltaTable(f"{tmp_path}/files").to_pandas()
    assert set(ledger["path"]) == {f"s3://{bucket}/{key}"} and ledger["file_id"].nunique() == 2
    assert ledger["size"].nunique() == 1


@pytest.fixture
def served(tmp_path):
    """The sample WARC served by Python's http.server on 127.0.0.1."""
    folder = tmp_path / "www"
    folder.mkdir()
    shutil.copy(SAMPLE_WARC, folder / "sample.warc.gz")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/sample.warc.gz"
    finally:
        server.shutdown()
        server.server_close()


def test_an_http_url_is_ingested_as_from_disk(spark, served, tmp_path):
    # http.server answers no Range request, so the file is read as one unit, from its start
    run(spark, tmp_path / "http", served, "ingest", split_bytes=1 << 20)
    run(spark, tmp_path / "local", str(SAMPLE_WARC), "ingest", split_bytes=1 << 20)
    assert same_documents(tmp_path / "http", tmp_path / "local")


class CutShort(http.server.BaseHTTPRequestHandler):
    """Serves ``data`` with Range support; while ``state["cuts"]`` > 0 a GET sends half its body and hangs up
    (a connection dropped mid-transfer, as object stores and CDNs do now and then)."""

    data: bytes = b""
    state: dict = {}

    def do_HEAD(self):
        self.send_body(head=True)

    def do_GET(self):
        self.send_body(head=False)

    def send_body(self, head: bool) -> None:
        start, end = 0, len(self.data) - 1
        asked = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if asked:
            start, end = int(asked[1]), min(int(asked[2] or end), end)
        body = self.data[start : end + 1]
        self.send_response(206 if asked else 200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if asked:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(self.data)}")
        self.end_headers()
        if head:
            return
        if self.state["cuts"] > 0:
            self.state["cuts"] -= 1
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def cut_short():
    handler = type("Handler", (CutShort,), {"data": SAMPLE_WARC.read_bytes(), "state": {"cuts": 0}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/sample.warc.gz", handler.state
    finally:
        server.shutdown()
        server.server_close()


def test_a_dropped_connection_is_read_again_and_a_lasting_one_leaves_the_unit_unread(spark, cut_short, tmp_path):
    url, state = cut_short
    state["cuts"] = 10**6  # every read fails: after its retries (about 15 s) the task fails, nothing is ledgered
    with pytest.raises(Exception, match=r"TransientReadError: " + re.escape(url)):
        run(spark, tmp_path / "http", url, "ingest", split_bytes=1 << 20)
    files = tmp_path / "http" / "files"
    assert not files.exists() or len(DeltaTable(str(files)).to_pandas()) == 0
    state["cuts"] = 2  # two dropped transfers: read again from where each stopped, the unit reads whole
    again = run(spark, tmp_path / "http", url, "ingest", split_bytes=1 << 20).reports[0]
    assert again.extra["units_read"] == 1 and state["cuts"] == 0
    run(spark, tmp_path / "local", str(SAMPLE_WARC), "ingest", split_bytes=1 << 20)
    assert same_documents(tmp_path / "http", tmp_path / "local")
    assert len(DeltaTable(f"{tmp_path}/http/files").to_pandas()) == 1
