"""The augment job with ``--set engine.name=openai`` through the Spark adapter, against the fault-injecting endpoint
of ``tests.openai_fault_server`` (its fake model writes the instructions): every segment gets one candidate row,
the rows whose requests kept failing are error rows saying why, each request carried its row's seed, and the
run's resolved config names the endpoint."""

from __future__ import annotations

import json
import threading

import pytest

from jobs.augment import main
from jobs.storage import Storage
from tests.conftest import ROOT, sample_pages, write_warc
from tests.openai_fault_server import FaultyEndpoint

pytestmark = pytest.mark.slow  # runs the job (ingest, segment, augment) on Spark


class Faults:
    """The first two requests are answered (as many as are in flight: the endpoint is then known to be up); after
    that a seed divisible by 5 gets 500s for good, an even one a 429 and an odd one a dropped connection on its
    first try."""

    def __init__(self):
        self.requests, self.lock = 0, threading.Lock()

    def __call__(self, body: dict, attempt: int) -> str | None:
        with self.lock:
            self.requests += 1
            if self.requests <= 2:
                return None
        seed = body["seed"]
        if seed % 5 == 0:
            return "500"
        return None if attempt else ("429" if seed % 2 == 0 else "drop")


def test_augment_on_an_openai_endpoint_writes_every_row_once(spark, tmp_path, tiny_model):
    corpus = write_warc(tmp_path / "corpus.warc.gz", sample_pages())
    with FaultyEndpoint(Faults()) as endpoint:
        sets = [
            f"input.corpus={corpus}",
            f"storage.root={tmp_path / 'tables'}",
            f"models.dir={tmp_path / 'models'}",
            f"models.base={tiny_model}",
            f"models.backward={tiny_model}",
            f"models.seed_model={tiny_model}",
            "engine.name=openai",
            f"engine.endpoint.base_url={endpoint.url}",
            "engine.endpoint.max_concurrency=2",
            "engine.endpoint.max_retries=2",
            "engine.endpoint.backoff_seconds=0.01",
            "report.after_run=false",
        ]
        args = ["--config", str(ROOT / "conf/tiny.yaml"), "--stages", "ingest,segment,augment"]
        summary = main(args + [a for s in sets for a in ("--set", s)])
        seen = list(endpoint.seen)

    storage = Storage(spark, str(tmp_path / "tables"))
    segments = storage.read("segments").where("status = 'ok'").toPandas()
    rows = storage.read("candidates").toPandas()
    assert len(rows) == rows["generation_id"].nunique() == len(segments) > 5  # every segment once
    assert set(rows["segment_id"]) == set(segments["segment_id"])
    failed = rows[rows["status"] == "error"]
    assert len(failed) > 0 and set(failed["reason"]) == {"endpoint_http:500"}
    assert (failed["seed"] % 5 == 0).all()
    assert rows[rows["status"] != "error"]["raw_text"].str.len().gt(0).all()
    # one try per row, two more for each row that failed for good, one more for each first-try fault
    assert {s.body["seed"] for s in seen} == set(rows["seed"])
    assert len(seen) == len(rows) + 2 * len(failed) + sum(1 for s in seen if s.fault in ("429", "drop"))
    assert {"429", "drop", "500"} <= {s.fault for s in seen}
    (augment,) = [s for s in summary["stages"] if s["stage"].startswith("augment")]
    assert augment["rows_written"] == len(rows)
    run = storage.read("runs").toPandas().iloc[-1]
    assert json.loads(run["config"])["engine"]["endpoint"]["base_url"] == endpoint.url
