"""segment_v1: ok ``documents`` -> ``segments``, one row per section, with exact and near duplicates marked.

The executors read each document back from its record (``udfs.readers.read_back``; documents stored with
``ingest.store_html`` carry their html), then segment, filter and sign it (``udfs.segment.segment_rows`` and
``udfs.minhash`` through ``spark_udfs.segment_documents``); a document with a row in ``segments`` is done, and
one whose input file is gone or rewritten is one ``error`` row (``source_missing``, ``source_changed``).
New segments are then deduplicated against themselves and against every segment kept by earlier runs, so a
new crawl drop only adds new material.

``dedup(segments, stored, cfg)`` takes the rows the segment stage produced (not yet written) and the stored
``segments`` table, and returns the new rows with duplicates dropped, ``duplicate_of`` (the matched segment id)
and the MinHash columns (``udfs.tables.MINHASH_SCHEMA``, signature and band keys null unless ok):

- ``exact_duplicate``: an ok segment whose normalised-text hash equals that of a kept stored segment, or of an
  ok new segment with a smaller ``segment_id``; it points to the stored one if any, else the smallest new one.
- ``near_duplicate``: an ok segment left after that which shares a MinHash band key (``udfs.minhash``) with the
  key's *representative* and whose signature agrees with it on at least ``min_similarity`` of positions. The
  representative of a band key is its kept stored segment with the smallest id, else its new ok segment with
  the smallest id. Comparing each segment with representatives only, not with every segment in its buckets,
  keeps the work linear when thousands of copies of one boilerplate text fill a bucket.

Every choice is a minimum over ids, so the outcome does not depend on partitioning, order or retries.
Stored signatures are compared as stored when they follow the configured scheme; kept segments stored under
another scheme (or before near dedup existed) get theirs recomputed from their text for this run.
"""

from __future__ import annotations

import logging

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from jobs.stages.base import Context, StageReport, append, pending, read, require, table_state
from udfs import spark_udfs
from udfs.minhash import DedupConfig
from udfs.tables import DOCUMENTS, MINHASH_COLUMNS, MINHASH_SCHEMA, SEGMENT_ROWS_SCHEMA, SEGMENTS

log = logging.getLogger(__name__)
# Most documents per segment task: small enough that pages of uneven size even out across tasks, large enough
# that a task's start is paid for many pages (Python workers, and what they load, are reused across tasks).
_TASK_DOCS = 500


def run(ctx: Context, report: StageReport) -> None:
    """Segment the ok documents without segments rows. Documents stored without html are read back from
    their records by the executors; ranged by file and offset, so each task reads one stretch of a file."""
    docs = require(ctx, report, DOCUMENTS.name, "ingest").where("status = 'ok'")
    if "length" not in docs.columns:  # a table written before documents pointed at records: all have html
        docs = docs.withColumn("length", F.lit(None).cast("long"))
    docs = docs.select("doc_id", "url", "html", "source_path", "offset", "length", "content_hash")
    done = read(ctx, report, SEGMENTS.name)
    if done is not None:
        docs = docs.join(done.select("doc_id").distinct(), on="doc_id", how="left_anti")
    report.rows_in = docs.count()
    parts = segment_tasks(report.rows_in, ctx.spark.sparkContext.defaultParallelism)
    docs = docs.repartitionByRange(parts, "source_path", "offset").sortWithinPartitions("source_path", "offset")
    batch = spark_udfs.segment_documents(ctx.cfg.segment, ctx.cfg.ingest, ctx.cfg.dedup)
    segments = docs.mapInPandas(batch, f"{SEGMENT_ROWS_SCHEMA}, {MINHASH_SCHEMA}")
    append(ctx, SEGMENTS, dedup(segments, done, ctx.cfg.dedup), report)


def segment_tasks(docs: int, cores: int, per_task: int = _TASK_DOCS) -> int:
    """Tasks for ``docs`` documents on ``cores`` cores: whole waves of one task per core (a last wave of fewer
    tasks than cores leaves cores idle: 3 tasks on 2 cores ran the segment stage at 1.5 cores), each of at most
    ``per_task`` documents, and never more tasks than documents."""
    waves = max(1, -(-docs // (cores * per_task)))
    return max(1, min(docs, cores * waves))


def plan(ctx: Context, iteration: int | None = None) -> dict:
    docs = ctx.storage.read(DOCUMENTS.name)
    ok = 0 if docs is None else docs.where("status = 'ok'").count()
    todo = 0
    if docs is not None:
        todo = pending(ctx, SEGMENTS, docs.where("status = 'ok'").select("doc_id"), key="doc_id").count()
    return {
        "inputs": {"documents_ok": ok},
        "outputs": {SEGMENTS.name: table_state(ctx, SEGMENTS)},
        "todo": {"documents": todo},
    }


def _ok() -> Column:
    return F.col("status") == "ok"


def dedup(segments: DataFrame, stored: DataFrame | None, cfg: DedupConfig) -> DataFrame:
    """New ``segments`` (signed already, or signed here) with exact and (when enabled) near duplicates marked;
    see the module docstring."""
    if "minhash" not in segments.columns:
        segments = with_minhash(segments, cfg)
    columns = [c for c in segments.columns if c not in MINHASH_COLUMNS] + ["duplicate_of", *MINHASH_COLUMNS]
    # Checkpointed: the rows feed both the marking and the band join, and must not be segmented twice. (A lost
    # executor fails the stage instead of recomputing; nothing is written before the end, so a re-run redoes it.)
    signed = segments.withColumn("duplicate_of", F.lit(None).cast("string")).localCheckpoint()
    marked = exact_dedup(signed, stored)
    if cfg.near_duplicates:
        marked = near_dedup(marked, stored, cfg)
    # Only kept segments carry a signature: a dropped one is never a representative.
    return marked.select(
        *[F.when(_ok(), F.col(c)).alias(c) if c in ("minhash", "minhash_bands") else F.col(c) for c in columns]
    )


def with_minhash(segments: DataFrame, cfg: DedupConfig) -> DataFrame:
    """``segments`` plus the MinHash columns, computed by ``udfs.spark_udfs.minhash_signatures``."""
    schema = StructType(segments.schema.fields + StructType.fromDDL(MINHASH_SCHEMA).fields)
    return segments.mapInPandas(spark_udfs.minhash_signatures(cfg), schema)


def exact_dedup(segments: DataFrame, stored: DataFrame | None) -> DataFrame:
    """Mark ``exact_duplicate`` every ok segment whose normalised text is kept already (stored, or a smaller new id)."""
    first_new = F.min("segment_id").over(Window.partitionBy("text_hash", "status"))  # within ok rows only, below
    marked = segments.withColumn("_first_new", first_new)
    if stored is not None:
        kept = stored.where(_ok()).groupBy("text_hash").agg(F.min("segment_id").alias("_stored"))
        marked = marked.join(kept, on="text_hash", how="left")
    else:
        marked = marked.withColumn("_stored", F.lit(None).cast("string"))
    match = F.coalesce(F.col("_stored"), F.when(F.col("_first_new") != F.col("segment_id"), F.col("_first_new")))
    return _mark(marked, match, "exact_duplicate").drop("_first_new", "_stored")


def near_dedup(segments: DataFrame, stored: DataFrame | None, cfg: DedupConfig) -> DataFrame:
    """Mark ``near_duplicate`` every ok segment confirmed similar to a representative of one of its band keys."""
    fields = ["segment_id", "minhash", "minhash_bands"]
    members = segments.where(_ok() & F.col("minhash").isNotNull()).select(*fields, F.lit(True).alias("_new"))
    if stored is not None:
        members = members.unionByName(stored_signatures(stored, cfg).select(*fields, F.lit(False).alias("_new")))
    # Band rows carry ids only (signatures are fetched for candidate pairs): the whole table's bands are shuffled.
    by_band = members.select("segment_id", "_new", F.explode("minhash_bands").alias("_band"))
    new_bands = by_band.where("_new")
    reps = (  # stored segments first (False < True), then the smallest id
        by_band.join(new_bands.select("_band").distinct(), on="_band", how="left_semi")
        .groupBy("_band")
        .agg(F.min(F.struct("_new", "segment_id")).alias("_rep"))
    )
    pairs = (
        new_bands.join(reps, on="_band")
        .select("segment_id", F.col("_rep.segment_id").alias("_of"), F.col("_rep._new").alias("_of_new"))
        .where(F.col("_of") != F.col("segment_id"))
        .distinct()
    )
    signatures = members.select("segment_id", "minhash")
    similar = (
        pairs.join(signatures, on="segment_id")
        .join(signatures.toDF("_of", "_of_minhash"), on="_of")
        .where(agreement(F.col("minhash"), F.col("_of_minhash")) >= cfg.min_similarity)
    )
    near = similar.groupBy("segment_id").agg(F.min(F.struct("_of_new", "_of"))["_of"].alias("_near_of"))
    return _mark(segments.join(near, on="segment_id", how="left"), F.col("_near_of"), "near_duplicate").drop("_near_of")


def stored_signatures(stored: DataFrame, cfg: DedupConfig) -> DataFrame:
    """Kept stored segments with signatures under ``cfg.scheme``: as stored, or recomputed from their text."""
    kept = stored.where(_ok())
    if "minhash_scheme" not in stored.columns:  # a table written before near dedup existed
        log.info("dedup: the stored segments have no MinHash columns; kept ones get signatures for this run")
        current, stale = None, kept
    else:
        same = F.coalesce(F.col("minhash_scheme") == cfg.scheme, F.lit(False))
        current, stale = kept.where(same), kept.where(~same)
    signed = with_minhash(stale.select("segment_id", "text", "status"), cfg).select("segment_id", *MINHASH_COLUMNS)
    if current is not None:
        signed = signed.unionByName(current.select("segment_id", *MINHASH_COLUMNS))
    return signed.where(F.col("minhash").isNotNull())


def agreement(a: Column, b: Column) -> Column:
    """Spark expression of ``udfs.minhash.estimated_jaccard``: the fraction of equal positions of two signatures."""
    equal = F.aggregate(F.zip_with(a, b, lambda x, y: F.when(x == y, 1).otherwise(0)), F.lit(0), lambda acc, v: acc + v)
    return equal / F.size(a)


def _mark(df: DataFrame, match: Column, reason: str) -> DataFrame:
    """Drop ok rows where ``match`` (the matched segment id) is not null, with ``reason`` and ``duplicate_of``."""
    dup = _ok() & match.isNotNull()
    return (
        df.withColumn("duplicate_of", F.when(dup, match).otherwise(F.col("duplicate_of")))
        .withColumn("reason", F.when(dup, F.lit(reason)).otherwise(F.col("reason")))
        .withColumn("status", F.when(dup, F.lit("dropped")).otherwise(F.col("status")))
    )
