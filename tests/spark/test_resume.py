"""LLM stages survive failures: a task retried by Spark regenerates identical text, and a job killed with
SIGKILL mid-generation finishes on re-run with no duplicate and no missing row."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from deltalake import DeltaTable

from jobs.augment import main
from tests.conftest import ROOT, sample_pages, write_warc

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def segmented(spark, tiny_model, tmp_path_factory):
    """Tables up to `segments`, and the args that run the LLM stages with the tiny model in small chunks."""
    root = tmp_path_factory.mktemp("resume")
    warc = write_warc(root / "crawl.warc.gz", sample_pages())
    args = [
        "--config",
        str(ROOT / "conf/tiny.yaml"),
        "--set",
        f"input.corpus={warc}",
        "--set",
        f"storage.root={root}/tables",
        "--set",
        f"models.backward={tiny_model}",
        "--set",
        f"models.seed_model={tiny_model}",
        "--set",
        "engine.commit_rows=2",
        "--set",
        "engine.batch_size=2",
        "--set",
        "augment.sampling.max_tokens=16",
    ]
    main([*args, "--stages", "ingest,segment"])
    segments = DeltaTable(str(root / "tables/segments")).to_pandas()
    return root, args, int((segments["status"] == "ok").sum())


def test_sigkill_mid_generation_then_rerun_loses_and_duplicates_nothing(segmented):
    root, args, n_ok = segmented
    assert n_ok >= 6  # several chunks of 2 rows
    candidates = str(root / "tables/candidates")
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    job = subprocess.Popen(
        [sys.executable, str(ROOT / "jobs/augment.py"), *args, "--stages", "augment"],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while not _has_rows(candidates) and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(job.pid, signal.SIGKILL)  # the driver, its JVM and its Python workers, mid-run
    job.wait()
    partial = DeltaTable(candidates).to_pandas()
    assert 0 < len(partial) < n_ok, "the kill should land after the first chunk and before the last"

    summary = main([*args, "--stages", "augment"])
    final = DeltaTable(candidates).to_pandas()
    assert len(final) == n_ok and final["generation_id"].is_unique
    assert summary["stages"][0]["rows_written"] == n_ok - len(partial)  # only the missing rows were generated
    kept = final.set_index("generation_id").loc[partial["generation_id"], "raw_text"]
    assert list(kept) == list(partial["raw_text"])  # committed rows are never rewritten


def _has_rows(path: str) -> bool:
    return DeltaTable.is_deltatable(path) and bool(DeltaTable(path).file_uris())


RETRY_JOB = textwrap.dedent(
    """
    import json, sys
    import pandas as pd
    from pyspark import TaskContext
    from pyspark.sql import SparkSession
    from udfs.engine import EngineConfig, SamplingConfig
    from udfs.prompts import PromptTemplate
    from udfs.spark_udfs import backtranslate
    from udfs.tables import CANDIDATES

    model = sys.argv[1]
    # local[1,2]: 2 attempts per task
    spark = SparkSession.builder.master("local[1,2]").config("spark.ui.enabled", "false").getOrCreate()
    engine = EngineConfig(dtype="float32", max_model_len=512, kv_cache_memory_bytes=64 * 2**20, enforce_eager=True,
                          enable_chunked_prefill=False, batch_size=4)
    template = PromptTemplate("b_v1", "Question for:\\n{output}")
    fn = backtranslate(model, "tiny", engine, SamplingConfig(1.0, 1.0, 12), template, 2000)
    rows = pd.DataFrame({"generation_id": [f"{i:032x}" for i in range(1, 11)],
                         "segment_id": [f"s{i}" for i in range(10)],
                         "text": [f"Text number {i} about lists, loops and functions." for i in range(10)]})

    def fails_once(batches):
        attempt = TaskContext.get().attemptNumber()
        for i, out in enumerate(fn(batches)):
            if attempt == 0 and i == 1:
                raise RuntimeError("injected failure after the first batch")
            yield out.assign(attempt=attempt)

    retried = spark.createDataFrame(rows).repartition(1).mapInPandas(fails_once, CANDIDATES.schema + ", attempt int")
    retried = retried.toPandas()
    direct = pd.concat(fn(iter([rows])))
    texts = [df.set_index("generation_id")["raw_text"].to_dict() for df in (retried, direct)]
    print(json.dumps({"attempts": sorted(set(retried["attempt"])), "n": len(retried), "same": texts[0] == texts[1]}))
    """
)


def test_a_retried_task_regenerates_identical_text(tiny_model, tmp_path):
    script = tmp_path / "retry_job.py"
    script.write_text(RETRY_JOB)
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    out = subprocess.run(
        [sys.executable, str(script), tiny_model], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = __import__("json").loads(out.stdout.strip().splitlines()[-1])
    assert result == {"attempts": [1], "n": 10, "same": True}
