"""An LLM stage's cost is linear in its pool: curate (fake engine) over a pool written directly as tables reads
its input tables once and its output table not at all, whatever the number of chunks (Spark's SQL metrics of
the Parquet scans the stage ran), and a concurrent run's commit between two chunks leaves every key once."""

from __future__ import annotations

from pathlib import Path

import pytest
from deltalake import DeltaTable

from benchmarks.synthetic_pool import judge_dir, pool_config, write_pool
from jobs.stages import Context, run_stage
from jobs.storage import Storage

PAIRS = 2000


def rows_scanned(spark, after: int) -> dict[str, int]:
    """Rows the Parquet scans of SQL executions with id > ``after`` read, by table (the folder under the
    storage root that the scan's first file is in)."""
    store = spark._jsparkSession.sharedState().statusStore()
    scanned: dict[str, int] = {}
    executions = store.executionsList().iterator()
    while executions.hasNext():
        execution = executions.next()
        if execution.executionId() <= after:
            continue
        metrics = store.executionMetrics(execution.executionId())
        nodes = store.planGraph(execution.executionId()).allNodes()
        for i in range(nodes.size()):
            node = nodes.apply(i)
            if not node.name().startswith("Scan parquet"):
                continue
            location = node.desc().split("Location: ", 1)[1].split("]", 1)[0]
            table = location.split("/tables/", 1)[1].split("/", 1)[0] if "/tables/" in location else "other"
            for j in range(node.metrics().size()):
                metric = node.metrics().apply(j)
                value = metrics.get(metric.accumulatorId())
                if metric.name() == "number of output rows" and value.isDefined():
                    scanned[table] = scanned.get(table, 0) + int(value.get().replace(",", ""))
    return scanned


def last_execution(spark) -> int:
    executions = spark._jsparkSession.sharedState().statusStore().executionsList()
    return max([-1] + [executions.apply(i).executionId() for i in range(executions.size())])


@pytest.fixture
def pool(spark, tmp_path):
    # scans name their files in full (Spark cuts them at 100 characters), for rows_scanned to tell the tables
    length = spark.conf.get("spark.sql.maxMetadataStringLength")
    spark.conf.set("spark.sql.maxMetadataStringLength", "100000")

    def make(commit_rows: int) -> Context:
        cfg = pool_config(tmp_path / f"c{commit_rows}", commit_rows, judge_dir(tmp_path / "judge"))
        ctx = Context(spark, Storage(spark, cfg.storage.root, cfg.storage.engine), cfg)
        write_pool(spark, ctx.storage, PAIRS)
        return ctx

    yield make
    spark.conf.set("spark.sql.maxMetadataStringLength", length)


@pytest.mark.parametrize("commit_rows", [PAIRS, PAIRS // 50])
def test_curate_reads_its_inputs_once_and_its_output_never_whatever_the_chunks(pool, spark, commit_rows):
    ctx = pool(commit_rows)
    before = last_execution(spark)
    report = run_stage(ctx, "curate", 1)
    scanned = rows_scanned(spark, before)
    assert report.rows_written == report.rows_in == PAIRS
    commits = len(DeltaTable(ctx.storage.path("scores")).history())
    assert commits == (1 if commit_rows == PAIRS else 50)
    assert 0 < scanned.get("candidates", 0) <= 1.1 * PAIRS and 0 < scanned.get("segments", 0) <= 1.1 * PAIRS, scanned
    assert scanned.get("scores", 0) == 0  # nobody else committed: no chunk re-reads what the stage wrote
    assert list(Path(ctx.storage.work).iterdir()) == []  # the stage's work files are gone


def test_keys_a_concurrent_run_commits_between_chunks_are_written_once(pool, spark, monkeypatch):
    twin = pool(PAIRS)  # what the other run commits: the same pool, judge and keys
    run_stage(twin, "curate", 1)
    theirs = twin.storage.read("scores").orderBy("score_id").limit(PAIRS // 4).cache()
    ctx = pool(PAIRS // 10)
    read_work, chunks_read, committed = Storage.read_work, [], []

    def other_run_commits_before_the_third_chunk(self, work, chunk):
        chunks_read.append(chunk)
        if len(chunks_read) == 3:  # their keys in the chunks done already are skipped: the rest is committed
            committed.append(self.append_new("scores", theirs, "score_id").rows)
        return read_work(self, work, chunk)

    monkeypatch.setattr(Storage, "read_work", other_run_commits_before_the_third_chunk)
    report = run_stage(ctx, "curate", 1)
    scores = DeltaTable(ctx.storage.path("scores")).to_pandas()
    assert len(scores) == PAIRS and scores["score_id"].is_unique
    assert committed[0] > 100 and report.rows_written == PAIRS - committed[0]  # later chunks skipped their keys
