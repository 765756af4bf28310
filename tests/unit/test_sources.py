"""Input from object stores and HTTP (udfs.sources): listed and read like local files, against a real S3 server
(moto, tests/s3_server.py) and a local http.server; every store problem is one line naming the URL."""

from __future__ import annotations

import dataclasses
import functools
import http.server
import shutil
import sys
import threading

import pytest

from jobs import preflight
from jobs.augment import main
from jobs.preflight import UsageError
from tests.conftest import ROOT, SAMPLE_WARC
from udfs import sources
from udfs.readers import ReaderConfig, plan_units, read_record_at, read_records


@pytest.fixture
def crawl(s3_env):
    """The sample WARC at s3://objstore-crawl/crawl/, with a JSON Lines file next to it."""
    bucket = s3_env.bucket("objstore-crawl")
    client = s3_env.client()
    client.upload_file(str(SAMPLE_WARC), bucket, "crawl/sample.warc.gz")
    client.put_object(Bucket=bucket, Key="crawl/more/docs.jsonl", Body=b'{"url": "http://j/1", "html": "<p>x</p>"}\n')
    return f"s3://{bucket}/crawl"


@pytest.fixture
def http_root(tmp_path):
    """A folder served by Python's http.server on 127.0.0.1 (no Range support: reads from offset 0 only)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def local(records):
    """Records without the file they came from (the rest must be the same whoever served the bytes)."""
    return [dataclasses.replace(r, source_path="") for r in records]


def test_listing_a_glob_a_prefix_and_a_key(crawl):
    warc = f"{crawl}/sample.warc.gz"
    (entry,) = sources.list_files(f"{crawl}/*.warc.gz")
    assert (entry.url, entry.size) == (warc, SAMPLE_WARC.stat().st_size)
    assert entry.etag and entry.version == entry.etag and entry.mtime_ns > 0
    assert [e.url for e in sources.list_files(crawl)] == [f"{crawl}/more/docs.jsonl", warc]  # recursive
    assert [e.url for e in sources.list_files(f"{crawl}/**/*.jsonl")] == [f"{crawl}/more/docs.jsonl"]
    assert sources.list_files(warc) == [entry]
    assert sources.list_files(f"{crawl}/absent.warc.gz") == []


def test_bounded_and_seekable_reads(crawl):
    data = SAMPLE_WARC.read_bytes()
    url = f"{crawl}/sample.warc.gz"
    with sources.open_file(url, 1000, 5000) as f:
        assert f.read() == data[1000:6000]
    with sources.open_file(url) as f:
        f.seek(len(data) - 10)
        assert f.read() == data[-10:]
    assert sources.size(url) == len(data) and not sources.exists(url + ".cdxj")


def test_readers_read_a_remote_warc_as_the_local_file(crawl):
    url, cfg = f"{crawl}/sample.warc.gz", ReaderConfig(split_bytes=60_000)
    units = plan_units([url], cfg)  # cut at gzip members found by seeking in the remote object
    local_units = plan_units([str(SAMPLE_WARC)], cfg)
    assert len(units) > 3 and [(u.start, u.end) for u in units] == [(u.start, u.end) for u in local_units]
    remote = [r for u in units for r in read_records(u, cfg)]
    assert local(remote) == local(r for u in local_units for r in read_records(u, cfg))
    assert len(remote) == 29 and {r.source_path for r in remote} == {url}
    assert local([read_record_at(url, remote[5].offset)]) == local(remote[5:6])


def test_readers_read_remote_jsonl_in_byte_ranges(crawl):
    url, cfg = f"{crawl}/more/docs.jsonl", ReaderConfig(split_bytes=10)
    units = plan_units([url], cfg)
    assert len(units) == 5 and [r.url for u in units for r in read_records(u, cfg)] == ["http://j/1"]


def test_a_missing_key_names_the_url(crawl):
    with pytest.raises(UsageError, match=f"input.corpus: nothing matches '{crawl}/2024/\\*.warc.gz'"):
        preflight.corpus_files(f"{crawl}/2024/*.warc.gz")


def test_a_missing_bucket_names_the_bucket(s3_env):
    with pytest.raises(UsageError, match="s3://objstore-no-such-bucket/x/a.warc.gz: the bucket .* does not exist"):
        preflight.corpus_files("s3://objstore-no-such-bucket/x/a.warc.gz")


def test_bad_credentials_say_access_denied(s3_auth_server, monkeypatch):
    for key, value in s3_auth_server.env.items():  # a server that checks access keys: made-up ones are denied
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOTAKEY")
    crawl = "s3://objstore-denied/crawl"
    with pytest.raises(UsageError, match=f"input.corpus: {crawl}/\\*.warc.gz: access denied .*AWS_ACCESS_KEY_ID"):
        preflight.corpus_files(f"{crawl}/*.warc.gz")
    with pytest.raises(sources.SourceError, match=f"{crawl}/sample.warc.gz: access denied"):
        sources.open_file(f"{crawl}/sample.warc.gz")


def test_the_job_stops_with_one_line_naming_the_url(s3_env, tmp_path):
    corpus = "s3://objstore-no-such-bucket/crawl/*.warc.gz"
    args = ["--config", str(ROOT / "conf/tiny.yaml"), "--set", f"input.corpus={corpus}"]
    with pytest.raises(SystemExit) as stop:
        main([*args, "--set", f"storage.root={tmp_path}/tables", "--stages", "ingest"])
    line = str(stop.value.code)
    assert line.startswith(f"error: input.corpus: {corpus}: the bucket") and "\n" not in line


def test_an_object_unreadable_on_an_executor_is_one_line():
    worker = (
        "An exception was thrown from the Python worker:\nTraceback (most recent call last):\n  File ...\n"
        "udfs.sources.SourceError: s3://b/crawl/a.warc.gz: not found (NoSuchKey)\n\tat org.apache.spark..."
    )
    line = preflight.describe_failure(RuntimeError(worker))
    assert line.startswith("an executor could not read the input: s3://b/crawl/a.warc.gz: not found (NoSuchKey): if")
    assert "\n" not in line


@pytest.mark.parametrize(("scheme", "package"), [("gs", "gcsfs"), ("abfss", "adlfs")])
def test_a_missing_filesystem_package_is_named(scheme, package, monkeypatch):
    monkeypatch.setitem(sys.modules, package, None)  # not installed here, whether or not this venv has it
    with pytest.raises(sources.SourceError, match=f"needs the {package} package: pip install 'humpback-spark\\["):
        sources.list_files(f"{scheme}://container/crawl/*.warc.gz")


def test_https_input(http_root):
    folder, base = http_root
    shutil.copy(SAMPLE_WARC, folder / "sample.warc.gz")
    (entry,) = preflight.corpus_files(f"{base}/sample.warc.gz")
    assert entry.size == SAMPLE_WARC.stat().st_size and entry.mtime_ns  # Last-Modified: this server sends no ETag
    assert local(read_records(entry.url)) == local(read_records(str(SAMPLE_WARC)))
    with pytest.raises(UsageError, match=f"nothing matches '{base}/absent.warc.gz'"):
        preflight.corpus_files(f"{base}/absent.warc.gz")


def test_dbfs_reads_through_the_mount(tmp_path, monkeypatch):
    with pytest.raises(sources.SourceError, match="dbfs:/crawl: dbfs:/ paths are read through the /dbfs mount"):
        sources.list_files("dbfs:/crawl")
    monkeypatch.setattr(sources, "_DBFS_MOUNT", str(tmp_path))
    (tmp_path / "crawl").mkdir()
    shutil.copy(SAMPLE_WARC, tmp_path / "crawl/a.warc.gz")
    assert [e.url for e in sources.list_files("dbfs:/crawl/*.warc.gz")] == [str(tmp_path / "crawl/a.warc.gz")]


def test_storage_env_travels_to_executors(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "")
    env = sources.storage_env()
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:1" and "AWS_SESSION_TOKEN" not in env and "PATH" not in env
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    sources.apply_env(env)
    assert sources.storage_env()["AWS_ENDPOINT_URL"] == "http://127.0.0.1:1"
