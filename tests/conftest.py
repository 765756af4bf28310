"""Shared fixtures: one local Spark session (UI off, few shuffle partitions) for the whole test run."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_WARC = ROOT / "data/sample/python-docs-sample.warc.gz"
SAMPLE_SEED = ROOT / "data/sample/seed.jsonl"
SAMPLE_PAGES = ("tutorial/appetite.html", "tutorial/interpreter.html", "library/bisect.html", "library/colorsys.html")

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # Spark's Python workers use this interpreter


@pytest.fixture(scope="session")
def spark():
    from jobs.config import SparkConfig
    from jobs.session import get_session

    session = get_session(SparkConfig(master="local[2]", app_name="tests", conf={"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2"}))
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


def write_warc(path: Path, pages: dict[str, bytes], extra: list[tuple[str, str, str, bytes]] = (), gzip: bool = True) -> Path:
    """A crawl-style WARC: one response record per page (url -> html), plus (url, status, type, body) extras."""
    with open(path, "wb") as out:
        writer = WARCWriter(out, gzip=gzip)
        items = [(url, "200 OK", "text/html; charset=utf-8", body) for url, body in pages.items()] + list(extra)
        for url, status, ctype, body in items:
            headers = StatusAndHeaders(status, [("Content-Type", ctype)], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers))
    return path


def sample_pages(wanted=SAMPLE_PAGES) -> dict[str, bytes]:
    pages = {}
    with open(SAMPLE_WARC, "rb") as f:
        for record in ArchiveIterator(f):
            url = record.rec_headers.get_header("WARC-Target-URI") or ""
            if record.rec_type == "response" and url.endswith(wanted):
                pages[url] = record.content_stream().read()
    return pages
