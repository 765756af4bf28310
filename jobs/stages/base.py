"""What every stage shares, driver side: the context, the stage report, keyed appends, chunked LLM commits.

A stage reads and writes Delta tables through ``jobs.storage`` only, and is safe to re-run: its output rows
are keyed by deterministic ids (``udfs.ids``) and appends skip keys already present, also under a concurrent
run on the same root (``Storage.new_rows``, ``Storage.insert``).
LLM stages commit in chunks (``append_in_chunks``), each task on the GPUs of a stage-level resource profile.
The stages themselves are the other modules of this package; ``jobs.stages`` lists them in run order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from pyspark.resource import ResourceProfile, ResourceProfileBuilder, TaskResourceRequests
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs import progress
from jobs.config import PipelineConfig
from jobs.storage import Storage, WriteResult
from training.checkpoint import CHECKPOINT, checkpoint_dir
from training.spark_profiles import profile_unavailable
from udfs import reasons
from udfs.ids import model_fingerprint
from udfs.tables import TOKEN_COLUMNS, Table, status_key

log = logging.getLogger(__name__)


class MissingInput(RuntimeError):
    """A stage's input is not there yet (a model not trained, pairs not scored): the message says which stage
    makes it."""


@dataclass
class StageReport:
    """What one stage did: rows written per status/reason, seconds, tables read and written, stage figures."""

    stage: str
    iteration: int | None = None  # the self-training iteration (curate, train); None for the other stages
    rows_in: int = 0  # input units considered this run (files, documents, segments, pairs) after skipping done keys
    rows_written: int = 0
    by_status: dict[str, int] = field(default_factory=dict)  # udfs.tables.status_key -> rows
    seconds: float = 0.0
    reads: dict[str, int | None] = field(default_factory=dict)  # table -> version read
    writes: dict[str, int | None] = field(default_factory=dict)  # table -> version after this stage's last commit
    extra: dict = field(default_factory=dict)


@dataclass
class Context:
    spark: SparkSession
    storage: Storage
    cfg: PipelineConfig


def keyed_id(key: str, salt: str):
    """Spark expression of ``udfs.ids.keyed_id`` over column ``key`` (the same ids, computed in the JVM)."""
    return F.substring(F.sha2(F.concat_ws("|", F.col(key), F.lit(salt)), 256), 1, 32)


def read(ctx: Context, report: StageReport | None, name: str) -> DataFrame | None:
    """Table ``name`` at its current version, recorded in ``report`` (None: a look that is no stage's input)."""
    if report is None:
        return ctx.storage.read(name)
    report.reads[name] = ctx.storage.version(name)
    return ctx.storage.read(name, report.reads[name])


def require(ctx: Context, report: StageReport | None, name: str, made_by: str) -> DataFrame:
    """An input table that must exist: ``MissingInput`` naming the stage that writes it otherwise."""
    df = read(ctx, report, name)
    if df is None:
        raise MissingInput(f"table {name} does not exist yet: run the {made_by} stage first")
    return df


def status_counts(df: DataFrame) -> dict[str, int]:
    """Rows of ``df`` by ``udfs.tables.status_key``."""
    counts: dict[str, int] = {}
    for r in df.groupBy("status", "reason").count().collect():
        key = status_key(r["status"], r["reason"])
        counts[key] = counts.get(key, 0) + r["count"]
    return counts


def append(
    ctx: Context,
    table: Table,
    df: DataFrame,
    report: StageReport,
    absent_at: int | None = None,
    own: frozenset[int] = frozenset(),
) -> WriteResult:
    """Append the rows of ``df`` whose key is new, counted by status/reason. The new rows are cached so that
    (possibly LLM-generated) rows are computed once for the counts, the write and, if a concurrent run on the
    same root commits some of the keys first, the write again without them (``Storage.insert``).
    ``absent_at`` and ``own`` scope the check for present keys (``Storage.new_rows``)."""
    new = ctx.storage.new_rows(table.name, df, table.key, absent_at, own)
    new = replace(new, df=new.df.cache())
    counts = status_counts(new.df)
    for status, count in counts.items():
        report.by_status[status] = report.by_status.get(status, 0) + count
    if unknown := reasons.check(table.name, counts):
        log.warning("%s: reason codes not in udfs/reasons.py (add them there): %s", table.name, unknown)
    if "prompt_tokens" in new.df.columns:  # LLM stages: tokens in/out and prefix-cache hits
        sums = new.df.agg(*[F.sum(c).alias(c) for c in TOKEN_COLUMNS]).first().asDict()
        tokens = report.extra.setdefault("tokens", dict.fromkeys(TOKEN_COLUMNS, 0))
        for c in TOKEN_COLUMNS:
            tokens[c] += sums[c] or 0
        prompt = tokens["prompt_tokens"]
        tokens["prefix_cache_hit_rate"] = round(tokens["cached_tokens"] / prompt, 4) if prompt else 0.0
    written = ctx.storage.insert(table.name, new)
    report.rows_written += written.rows
    if written.concurrent:  # counted above as this run's, but the other run's identical rows are the ones kept
        concurrent = report.extra.setdefault("rows_written_by_concurrent_run", {})
        concurrent[table.name] = concurrent.get(table.name, 0) + written.concurrent
    report.writes[table.name] = written.version
    new.df.unpersist()
    return written


def pending(
    ctx: Context,
    table: Table,
    rows: DataFrame,
    report: StageReport | None = None,
    key: str | None = None,
    version: int | None = None,
) -> DataFrame:
    """The rows of ``rows`` whose key (``table.key`` unless given) is not in ``table`` yet (at ``version`` if
    given): what a keyed stage still has to do."""
    key = key or table.key
    if version is None:
        done = read(ctx, report, table.name)
    else:
        done = ctx.storage.read(table.name, version)
        if report is not None:
            report.reads[table.name] = version
    return rows if done is None else rows.join(done.select(key).distinct(), on=key, how="left_anti")


def append_in_chunks(
    ctx: Context, table: Table, todo: DataFrame, fn, report: StageReport, order: Sequence[str] = ()
) -> None:
    """Run the LLM batch function ``fn`` over the rows of ``todo`` whose key is not in ``table`` yet,
    committing every ``engine.commit_rows`` rows; each task sees its rows sorted by ``order`` (``llm_map``).

    The rows to do are computed once (one pass over the stage's inputs, whatever the number of chunks) and
    written as work files by chunk (``Storage.write_work``: hash buckets of the key); each chunk reads its own
    files, and its commit checks for present keys only what was committed since the rows to do were computed
    by others than this stage's own chunks (a concurrent run). A job killed mid-generation keeps every
    committed chunk; the next run no longer finds those keys to do, so at most the chunk in flight is
    generated again.
    """
    version = ctx.storage.version(table.name)
    todo = pending(ctx, table, todo, report, version=version)  # skip before generating: the LLM is the expensive part
    absent_at = -1 if version is None else version  # -1: no table yet, every version is checked but this stage's
    work = ctx.storage.write_work(todo, table.key, ctx.cfg.engine.commit_rows)
    try:
        report.rows_in = work.rows
        progress.update(table.name, 0, report.rows_in)
        own: set[int] = set()  # versions this stage committed: other chunks' keys, none of the next chunk's
        for n, chunk in enumerate(sorted(work.chunks), 1):
            rows = ctx.storage.read_work(work, chunk)
            written = append(ctx, table, llm_map(ctx, rows, fn, table.schema, order), report, absent_at, frozenset(own))
            if written.rows:
                own.add(written.version)
            tokens = report.extra.get("tokens", {}).get("output_tokens")
            progress.update(table.name, report.rows_written, report.rows_in, tokens=tokens)
            log.info("%s: chunk %d/%d committed (%d rows so far)", table.name, n, len(work.chunks), report.rows_written)
        if version is None and not work.chunks:  # nothing to do, but the stage ran: its (empty) table exists
            append(ctx, table, ctx.spark.createDataFrame([], table.schema), report)
    finally:
        ctx.storage.drop_work(work)


def llm_map(ctx: Context, rows: DataFrame, fn, schema: str, order: Sequence[str] = ()) -> DataFrame:
    """``rows`` through the LLM batch function ``fn`` on ``engine.partitions`` tasks (null: one per engine
    slot, ``engine_partitions``), each holding ``engine.task_gpus`` GPUs. With ``order``, each task's rows are
    sorted by those columns after the repartition (which would scatter an earlier sort), so the engine batches
    neighbours in that order."""
    task_gpus = ctx.cfg.engine.task_gpus
    profile = gpu_profile(ctx.spark, task_gpus)
    parts = engine_partitions(ctx.spark, ctx.cfg.engine.partitions, task_gpus, capped=profile is None)
    rows = rows.repartition(parts) if parts else rows
    rows = rows.sortWithinPartitions(*order) if order else rows
    # Without a profile the keyword stays out: pyspark before 4.0 has no profile= at all.
    return rows.mapInPandas(fn, schema, profile=profile) if profile else rows.mapInPandas(fn, schema)


_profile_warned: set[str] = set()


def gpu_profile(spark: SparkSession, task_gpus: float | None) -> ResourceProfile | None:
    """A stage-level resource profile giving each LLM task ``task_gpus`` GPUs (CPU stages keep none), or None
    where Spark cannot schedule one (``profile_unavailable``): the LLM tasks then run under the session's
    default task resources, and why is logged once per reason."""
    if not task_gpus:
        return None
    reason = profile_unavailable(spark)
    if reason is not None:
        if reason not in _profile_warned:
            _profile_warned.add(reason)
            log.warning(
                "engine.task_gpus=%s not applied (%s): LLM stages run at most one task per engine slot of the "
                "cluster's GPUs (engine_partitions)",
                task_gpus,
                reason,
            )
        return None
    return ResourceProfileBuilder().require(TaskResourceRequests().resource("gpu", task_gpus)).build


def engine_partitions(spark: SparkSession, configured: int | None, task_gpus: float | None, capped: bool) -> int | None:
    """The LLM map's partitions: ``configured`` (engine.partitions), else one per engine slot (the cluster's
    GPUs over ``task_gpus``), so that every GPU gets work. ``capped`` (no GPU profile: tasks would inherit the
    default share, e.g. 16 per GPU at 0.0625) never lets more tasks exist than slots. CPU runs (no
    ``task_gpus``): as configured, or Spark's default."""
    if not task_gpus:
        return configured
    slots = max(1, int(cluster_gpus(spark) // task_gpus))
    return min(configured or slots, slots) if capped else configured or slots


def cluster_gpus(spark: SparkSession) -> int:
    """GPUs the cluster has for LLM tasks: executors x ``spark.executor.resource.gpu.amount`` (executors from
    ``spark.executor.instances``, else those registered now); in local mode the driver's
    (``spark.driver.resource.gpu.amount``, else 1)."""
    master = spark.conf.get("spark.master", "")
    if master == "local" or master.startswith("local["):
        return max(1, int(float(spark.conf.get("spark.driver.resource.gpu.amount", "1") or 1)))
    per_executor = float(spark.conf.get("spark.executor.resource.gpu.amount", "0") or 0)
    instances = spark.conf.get("spark.executor.instances", None)
    if instances:
        executors = int(instances)
    else:  # the driver is among the block managers
        executors = spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1
    return max(1, int(per_executor * max(1, executors)))


def model_ready(path: str) -> bool:
    """Whether ``path`` holds a whole model. Models built here appear by one atomic rename after their last
    file (training_meta.json, bootstrap.json) is written, so a directory with config.json is complete; an
    interrupted training run leaves only ``<path>.ckpt``, from which the next run resumes."""
    return (Path(path) / "config.json").is_file()


def model_id(path: str, name: str, made_by: str) -> str:
    """The id of the model at ``path``, or ``MissingInput`` naming the stage that makes it."""
    if not model_ready(path):
        raise MissingInput(f"{name} is not at {path} yet: run the {made_by} stage first")
    return model_fingerprint(path)


def model_state(path: str) -> dict:
    """For a dry run: where a model is and whether it is whole; a training run that stopped leaves a
    checkpoint to resume from."""
    if model_ready(path):
        return {"path": path, "state": "present", "id": model_fingerprint(path)}
    resumable = (checkpoint_dir(path) / CHECKPOINT).is_file()
    return {"path": path, "state": "checkpoint (resumes)" if resumable else "absent"}


def table_state(ctx: Context, table: Table) -> dict:
    """For a dry run: a table's version and row count."""
    df = ctx.storage.read(table.name)
    return {"version": ctx.storage.version(table.name), "rows": 0 if df is None else df.count()}
