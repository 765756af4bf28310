"""Shared fixtures: one local Spark session (UI off, few shuffle partitions) for the whole test run; and the
skip check: a test that skips without being listed in tests/expected_skips.txt fails."""

from __future__ import annotations

import io
import os
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_WARC = ROOT / "data/sample/python-docs-sample.warc.gz"
SAMPLE_SEED = ROOT / "data/sample/seed.jsonl"
SAMPLE_PAGES = ("tutorial/appetite.html", "tutorial/interpreter.html", "library/bisect.html", "library/colorsys.html")

# s3_server / s3_env: a local S3 server (moto) for the object-store tests; pytester: runs of pytest in a test
pytest_plugins = ["tests.s3_server", "pytester"]

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # Spark's Python workers use this interpreter
# every reason code a test's rows carry must be in udfs/reasons.py (a run only warns): see udfs.reasons.check
os.environ.setdefault("HUMPBACK_STRICT_REASONS", "1")

EXPECTED_SKIPS = ROOT / "tests/expected_skips.txt"


def expected_skips() -> list[str]:
    """The node-id patterns of tests/expected_skips.txt (comments and blank lines left out)."""
    lines = (line.split("#", 1)[0].strip() for line in EXPECTED_SKIPS.read_text().splitlines())
    return [line for line in lines if line]


def fail_unexpected_skip(report, nodeid: str) -> None:
    """Turn ``report`` into a failure if it is a skip that tests/expected_skips.txt does not allow."""
    if not report.skipped or hasattr(report, "wasxfail") or any(fnmatch(nodeid, p) for p in expected_skips()):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    reason = reason.removeprefix("Skipped: ")
    report.outcome = "failed"
    report.longrepr = (
        f"{nodeid} skipped ({reason}), and tests/expected_skips.txt does not allow it to: install what it needs "
        "(make install), or list it there with the reason"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    fail_unexpected_skip(report, item.nodeid)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    report = yield  # a module-level skip (pytest.importorskip at import) skips the whole file here
    fail_unexpected_skip(report, collector.nodeid)
    return report


@pytest.fixture(scope="session")
def spark():
    from jobs.config import SparkConfig
    from jobs.session import get_session

    session = get_session(
        SparkConfig(
            master="local[2]",
            app_name="tests",
            conf={
                "spark.ui.enabled": "false",
                "spark.sql.shuffle.partitions": "2",
                # as conf/local.yaml: the one LLM task of a stage (engine.partitions: 1) uses both cores
                "spark.executorEnv.OMP_NUM_THREADS": "2",
            },
        )
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A tiny base model (tokenizer + Llama) built from the sample seed set: seconds on 2 cores."""
    import json

    from training.bootstrap import BaseModelConfig, build_base_model

    texts = [json.loads(line)["output"] for line in SAMPLE_SEED.read_text().splitlines()]
    cfg = BaseModelConfig(hidden_size=128, num_heads=2, intermediate_size=256, num_layers=2, steps=10, warmup_steps=2)
    return build_base_model(texts, str(tmp_path_factory.mktemp("models") / "base"), cfg)


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory) -> Path:
    """The real SmolLM2-135M-Instruct as a Hugging Face directory, converted once per test run (~20 s)."""
    from training.pretrained import ensure_smollm2

    return Path(ensure_smollm2(tmp_path_factory.mktemp("smollm2")))


def http_response(
    writer: WARCWriter,
    url: str,
    body: bytes,
    status: str = "200 OK",
    content_type: str | None = "text/html; charset=utf-8",
    headers: tuple[tuple[str, str], ...] = (),
):
    """A WARC response record; ``content_type=None`` sends no Content-Type header."""
    fields = ([("Content-Type", content_type)] if content_type is not None else []) + list(headers)
    http = StatusAndHeaders(status, fields, protocol="HTTP/1.1")
    return writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http)


def write_records(path: Path, build, gzip: bool = True) -> str:
    """A WARC of the records ``build(writer)`` returns (any record types), in order."""
    with open(path, "wb") as out:
        writer = WARCWriter(out, gzip=gzip)
        for record in build(writer):
            writer.write_record(record)
    return str(path)


def write_warc(path: Path, pages: dict[str, bytes], extra=(), gzip: bool = True) -> Path:
    """A crawl-style WARC: one response record per page (url -> html), plus (url, status, type, body[, headers])
    extras (type None: no Content-Type header)."""
    items = [(url, "200 OK", "text/html; charset=utf-8", body) for url, body in pages.items()] + list(extra)
    write_records(
        path,
        lambda w: [http_response(w, url, body, status, ctype, *rest) for url, status, ctype, body, *rest in items],
        gzip,
    )
    return path


def sample_pages(wanted=SAMPLE_PAGES) -> dict[str, bytes]:
    pages = {}
    with open(SAMPLE_WARC, "rb") as f:
        for record in ArchiveIterator(f):
            url = record.rec_headers.get_header("WARC-Target-URI") or ""
            if record.rec_type == "response" and url.endswith(wanted):
                pages[url] = record.content_stream().read()
    return pages
