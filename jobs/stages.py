"""The pipeline's stages, driver side: read input tables, skip keys already done, map, append, report.

Each stage has a versioned name, reads and writes Delta tables through ``jobs.storage`` only, and is safe
to re-run: its output rows are keyed by deterministic ids and ``Storage.append_new`` skips present keys.
The self-training loop's stages (curate, train) take the iteration they work for: iteration i's judge is
M_{i-1} and it trains M_i. The executor-side work is in ``udfs.spark_udfs``; the fine-tuning in ``training``.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from pyspark.resource import ResourceProfile, ResourceProfileBuilder, TaskResourceRequests
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.config import ITERATION_STAGES, PipelineConfig
from jobs.dedup import dedup
from jobs.storage import Storage
from training.bootstrap import build_base_model
from training.config import TrainConfig
from training.train import TrainResult, train
from udfs import spark_udfs
from udfs.config import load_config
from udfs.curation import RULE_COLUMNS
from udfs.ids import model_fingerprint, stable_id
from udfs.prompts import PromptTemplate
from udfs.readers import file_id, input_format, plan_units, unit_id

log = logging.getLogger(__name__)

TOKEN_COLUMNS = ("prompt_tokens", "cached_tokens", "output_tokens")
POOL_TABLES = ("segments", "candidates", "scores")  # what a training set is read from


class MissingInput(RuntimeError):
    """A stage's input is not there yet (a model not trained, pairs not scored): the message says which stage makes it."""


@dataclass
class StageReport:
    """What one stage did: rows written per status/reason, seconds, tables read and written, stage figures."""

    stage: str
    iteration: int | None = None  # the self-training iteration (curate, train); None for the other stages
    rows_in: int = 0  # input units considered this run (files, documents, segments, pairs) after skipping done keys
    rows_written: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
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


def _read(ctx: Context, report: StageReport | None, name: str) -> DataFrame | None:
    """Table ``name`` at its current version, recorded in ``report`` (None: a look that is no stage's input)."""
    if report is None:
        return ctx.storage.read(name)
    report.reads[name] = ctx.storage.version(name)
    return ctx.storage.read(name, report.reads[name])


def _input(ctx: Context, report: StageReport | None, name: str, made_by: str) -> DataFrame:
    """An input table that must exist: ``MissingInput`` naming the stage that writes it otherwise."""
    df = _read(ctx, report, name)
    if df is None:
        raise MissingInput(f"table {name} does not exist yet: run the {made_by} stage first")
    return df


def _status_key(status: str, reason: str | None) -> str:
    return f"{status}:{reason}" if reason else status


def _status_counts(df: DataFrame) -> dict[str, int]:
    rows = df.groupBy("status", "reason").count().collect()
    return {_status_key(r["status"], r["reason"]): r["count"] for r in rows}


def _append(ctx: Context, table: str, df: DataFrame, key: str, report: StageReport) -> None:
    """Append the rows of ``df`` whose key is new, counted by status/reason. The new rows are cached so that
    (possibly LLM-generated) rows are computed once for both the counts and the write."""
    new = ctx.storage.new_rows(table, df, key).cache()
    for status, count in _status_counts(new).items():
        report.by_status[status] = report.by_status.get(status, 0) + count
    if "prompt_tokens" in new.columns:  # LLM stages: tokens in/out and prefix-cache hits
        sums = new.agg(*[F.sum(c).alias(c) for c in TOKEN_COLUMNS]).first().asDict()
        tokens = report.extra.setdefault("tokens", dict.fromkeys(TOKEN_COLUMNS, 0))
        for c in TOKEN_COLUMNS:
            tokens[c] += sums[c] or 0
        tokens["prefix_cache_hit_rate"] = round(tokens["cached_tokens"] / tokens["prompt_tokens"], 4) if tokens["prompt_tokens"] else 0.0
    report.rows_written += ctx.storage.append(table, new).rows
    report.writes[table] = ctx.storage.version(table)
    new.unpersist()


def pending(ctx: Context, table: str, rows: DataFrame, key: str, report: StageReport | None = None) -> DataFrame:
    """The rows of ``rows`` whose ``key`` is not in ``table`` yet: what a keyed stage still has to do."""
    done = _read(ctx, report, table)
    return rows if done is None else rows.join(done.select(key), on=key, how="left_anti")


def _append_in_chunks(ctx: Context, table: str, todo: DataFrame, key: str, fn, schema: str, report: StageReport) -> None:
    """Run an LLM batch function over the rows of ``todo`` whose key is not in ``table`` yet, committing every
    ``engine.commit_rows`` rows.

    A job killed mid-generation keeps every committed chunk; the next run no longer finds those keys to do,
    so at most the chunks in flight are generated again. Chunks are hash buckets of the key: a deterministic
    split that needs no sort.
    """
    todo = pending(ctx, table, todo, key, report)  # skip before generating: the LLM is the expensive part
    report.rows_in = todo.count()
    chunks = max(1, -(-report.rows_in // ctx.cfg.engine.commit_rows))
    bucketed = todo.withColumn("_chunk", F.pmod(F.xxhash64(key), F.lit(chunks)))
    for chunk in range(chunks):
        rows = bucketed.where(F.col("_chunk") == chunk).drop("_chunk")
        parts = ctx.cfg.engine.partitions
        rows = rows.repartition(parts) if parts else rows
        _append(ctx, table, rows.mapInPandas(fn, schema, profile=_gpu_profile(ctx.cfg.engine.task_gpus)), key, report)
        log.info("%s: chunk %d/%d committed (%d rows so far)", table, chunk + 1, chunks, report.rows_written)


def _gpu_profile(task_gpus: float | None) -> ResourceProfile | None:
    """A stage-level resource profile giving each LLM task ``task_gpus`` GPUs (CPU stages keep none)."""
    if not task_gpus:
        return None
    return ResourceProfileBuilder().require(TaskResourceRequests().resource("gpu", task_gpus)).build


# --- ingest_v2 -------------------------------------------------------------------------------------------

# The ingest ledger: one row per work unit read (files are split into units, see udfs.readers.plan_units).
FILES_SCHEMA = (
    "unit_id string, file_id string, path string, size long, mtime_ns long, unit_start long, unit_end long, "
    "units_in_file int, records long, status_counts string, ingested_at string"
)
UNITS_SCHEMA = "unit_id string, path string, start long, end long"


def list_input_files(pattern: str) -> list[str]:
    """Files in a readable format matching ``pattern`` (a file, a folder searched recursively, or a glob), sorted."""
    paths = [pattern] if os.path.isfile(pattern) else sorted(glob.glob(pattern, recursive=True))
    if os.path.isdir(pattern):
        paths = sorted(str(p) for p in Path(pattern).rglob("*") if p.is_file())
    files = [os.path.abspath(p) for p in paths if os.path.isfile(p) and input_format(p) is not None]
    if not files:
        raise FileNotFoundError(f"input.corpus: no WARC, WET, HTML, JSONL or Parquet files match {pattern!r}")
    return files


def ingest(ctx: Context) -> StageReport:
    """Read the work units missing from the ``files`` ledger into ``documents``, then add them to the ledger.

    Files are identified by path, size and mtime: a file whose units are all in the ledger is not opened
    again, a changed file is read again. Documents are appended before the ledger rows, so a crash between
    the two only makes the next run re-read those units, whose doc_ids are then skipped.
    """
    report = StageReport("ingest_v2")
    cfg = ctx.cfg.ingest
    files = list_input_files(ctx.cfg.input.corpus)
    stats = {f: os.stat(f) for f in files}
    ids = {f: file_id(f, s.st_size, s.st_mtime_ns) for f, s in stats.items()}
    done_units, done_files = ingest_ledger(ctx, report)
    plan = plan_units([f for f in files if ids[f] not in done_files], cfg)
    units_in_file = Counter(u.path for u in plan)
    todo = {uid: u for u in plan if (uid := unit_id(ids[u.path], u)) not in done_units}
    report.rows_in = len(todo)
    report.extra.update(files=len(files), files_unchanged=sum(ids[f] in done_files for f in files), units_read=len(todo))
    if not todo:
        return report
    units = ctx.spark.createDataFrame([(uid, u.path, u.start, u.end) for uid, u in todo.items()], UNITS_SCHEMA)
    read = units.repartition(len(todo)).mapInPandas(spark_udfs.read_units(cfg), spark_udfs.READ_SCHEMA).cache()
    report.reads["documents"] = ctx.storage.version("documents")  # read by the append, to skip known documents
    _append(ctx, "documents", read.drop("unit_id"), "doc_id", report)
    counts: dict[str, Counter] = {uid: Counter() for uid in todo}
    for row in read.groupBy("unit_id", "status", "reason").count().collect():
        counts[row["unit_id"]][_status_key(row["status"], row["reason"])] += row["count"]
    read.unpersist()
    now = datetime.now(timezone.utc).isoformat()
    ledger = [
        (uid, ids[u.path], u.path, stats[u.path].st_size, stats[u.path].st_mtime_ns, u.start, u.end, units_in_file[u.path],
         sum(counts[uid].values()), json.dumps(dict(sorted(counts[uid].items()))), now)
        for uid, u in todo.items()
    ]
    report.writes["files"] = ctx.storage.append_new("files", ctx.spark.createDataFrame(ledger, FILES_SCHEMA), "unit_id").version
    report.extra.update(records_read=sum(sum(c.values()) for c in counts.values()))
    return report


def ingest_ledger(ctx: Context, report: StageReport | None = None) -> tuple[set[str], set[str]]:
    """(ids of the units in the ledger, ids of the files all of whose units are in it)."""
    table = _read(ctx, report, "files")
    if table is None:
        return set(), set()
    rows = table.select("unit_id", "file_id", "units_in_file").collect()
    # A file planned into n units is done when n of its units planned that way are in the ledger.
    planned = Counter((r["file_id"], r["units_in_file"]) for r in rows)
    return {r["unit_id"] for r in rows}, {f for (f, n), have in planned.items() if have >= n}


# --- segment_v1 ------------------------------------------------------------------------------------------


def segment(ctx: Context) -> StageReport:
    report = StageReport("segment_v1")
    docs = _input(ctx, report, "documents", "ingest").where("status = 'ok'").select("doc_id", "url", "html")
    done = _read(ctx, report, "segments")
    if done is not None:
        docs = docs.join(done.select("doc_id").distinct(), on="doc_id", how="left_anti")
    report.rows_in = docs.count()
    segments = docs.mapInPandas(spark_udfs.segment_documents(ctx.cfg.segment), spark_udfs.SEGMENTS_SCHEMA)
    _append(ctx, "segments", dedup(segments, done, ctx.cfg.dedup), "segment_id", report)
    return report


# --- models_v1: base model, M_yx and M0 ------------------------------------------------------------------


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


def models(ctx: Context) -> StageReport:
    report = StageReport("models_v1")
    cfg = ctx.cfg
    base = cfg.model_path("base")
    # The local base model is built once, from the first corpus, like a downloaded base model: rebuilding it
    # for every corpus drop would change every model id downstream and regenerate the whole pool.
    if cfg.models.base is None and not model_ready(base):
        texts = [r["text"] for r in _input(ctx, report, "segments", "segment").where("status = 'ok'").select("text").orderBy("segment_id").collect()]
        texts += [json.loads(line)["output"] for line in Path(cfg.input.seed).read_text().splitlines() if line.strip()]
        start = time.monotonic()
        build_base_model(texts, base, cfg.models.bootstrap)
        report.extra["base_seconds"] = round(time.monotonic() - start, 1)
    for role, recipe in (("backward", cfg.models.train_backward), ("seed_model", cfg.models.train_forward)):
        if getattr(cfg.models, role) is None:
            result = train(train_config(cfg, recipe, base, cfg.model_path(role)))
            report.extra[role] = {"steps": result.steps, "examples": result.examples, "final_loss": result.final_loss}
    report.extra["model_ids"] = {role: model_id(cfg.model_path(role), role, "models") for role in ("base", "backward", "seed_model")}
    return report


def train_config(cfg: PipelineConfig, recipe: str, base: str, output_dir: str, extra: tuple[str, ...] = ()) -> TrainConfig:
    overrides = [f"base_model={base}", f"output_dir={output_dir}", f"seed.path={cfg.input.seed}",
                 f"trust_remote_code={cfg.engine.trust_remote_code}", *cfg.models.train_overrides, *extra]
    return load_config(TrainConfig, recipe, overrides)


# --- augment_v1: M_yx writes one instruction per segment -------------------------------------------------


def augment_rows(ctx: Context, backward_id: str, report: StageReport | None = None) -> DataFrame:
    """Every (generation_id, segment_id, text) this config asks M_yx for: one per ok segment."""
    cfg = ctx.cfg
    version = PromptTemplate.load(cfg.augment.prompt).version
    salt = stable_id("generation", backward_id, version, dataclasses.asdict(cfg.augment.sampling), cfg.augment.seed)
    return _input(ctx, report, "segments", "segment").where("status = 'ok'").select(keyed_id("segment_id", salt).alias("generation_id"), "segment_id", "text")


def augment(ctx: Context) -> StageReport:
    report = StageReport("augment_v1")
    cfg = ctx.cfg
    model_path = cfg.model_path("backward")
    backward_id = model_id(model_path, "M_yx", "models")
    template = PromptTemplate.load(cfg.augment.prompt)
    fn = spark_udfs.backtranslate(model_path, backward_id, cfg.engine, cfg.augment.sampling, template, cfg.augment.max_instruction_chars)
    _append_in_chunks(ctx, "candidates", augment_rows(ctx, backward_id, report), "generation_id", fn, spark_udfs.CANDIDATES_SCHEMA, report)
    report.extra["model_id"] = backward_id
    return report


# --- curate_v1: M_{i-1} grades every (instruction, segment) pair of the pool ----------------------------


def judge_of(cfg: PipelineConfig, iteration: int) -> tuple[str, str]:
    """Path and id of iteration ``iteration``'s judge, M_{i-1}."""
    path = cfg.iteration_model(iteration - 1)
    return path, model_id(path, f"M{iteration - 1}", "models" if iteration == 1 else f"train (iteration {iteration - 1})")


def score_rows(ctx: Context, iteration: int, judge_id: str, report: StageReport | None = None) -> DataFrame:
    """Every pair iteration ``iteration`` has its judge score: all ok candidates (the same pool each iteration),
    keyed by (generation, judge, prompt version, sampling, seed, iteration)."""
    cfg = ctx.cfg
    version = PromptTemplate.load(cfg.curate.prompt).version
    salt = stable_id("score", judge_id, version, dataclasses.asdict(cfg.curate.sampling), cfg.curate.seed, iteration)
    return (
        _input(ctx, report, "candidates", "augment").where("status = 'ok'").select("generation_id", "segment_id", "instruction")
        .join(_input(ctx, report, "segments", "segment").select("segment_id", "text"), on="segment_id")
        .select(keyed_id("generation_id", salt).alias("score_id"), "generation_id", "segment_id", "instruction", "text")
    )


def curate(ctx: Context, iteration: int) -> StageReport:
    report = StageReport("curate_v1", iteration)
    cfg = ctx.cfg
    model_path, judge_id = judge_of(cfg, iteration)
    template = PromptTemplate.load(cfg.curate.prompt)
    fn = spark_udfs.judge(model_path, judge_id, cfg.engine, cfg.curate.sampling, template, iteration)
    _append_in_chunks(ctx, "scores", score_rows(ctx, iteration, judge_id, report), "score_id", fn, spark_udfs.SCORES_SCHEMA, report)
    report.extra["judge_model_id"] = judge_id
    return report


def passing(cfg: PipelineConfig, iteration: int) -> Column:
    """The curation rule of ``iteration`` as a filter on judged scores rows (null scores never pass)."""
    k = cfg.iterations.k(iteration)
    condition = F.col("status") == "ok"
    for column in RULE_COLUMNS[cfg.iterations.score_column]:
        condition &= F.col(column) >= k
    return condition


# --- train_v1: M_i on seed + A_k(i), read from pinned table versions; lineage to `curated` -----------------


def train_iteration(ctx: Context, iteration: int) -> StageReport:
    report = StageReport("train_v1", iteration)
    cfg = ctx.cfg
    _, judge_id = judge_of(cfg, iteration)
    unscored = pending(ctx, "scores", score_rows(ctx, iteration, judge_id), "score_id").count()
    if unscored:  # training on part of A(i) would make a model (and a next judge) that the full pool replaces
        raise MissingInput(f"iteration {iteration}: {unscored} pairs are not scored by {judge_id} yet: run the curate stage first")
    versions = {t: ctx.storage.version(t) for t in POOL_TABLES}
    report.reads.update(versions)
    extra = [f"augmented.{t}_table={ctx.storage.path(t)}" for t in POOL_TABLES]
    extra += [f"augmented.{t}_version={v}" for t, v in versions.items()]
    extra += [f"augmented.judge_model_id={judge_id}", f"augmented.score_column={cfg.iterations.score_column}",
              f"augmented.min_score={cfg.iterations.k(iteration)}"]
    output_dir = cfg.iteration_model(iteration)
    result = train(train_config(cfg, cfg.models.train_forward, cfg.model_path("base"), output_dir, tuple(extra)))
    trained_id = model_fingerprint(output_dir)
    _append(ctx, "curated", curated_rows(ctx, iteration, result, trained_id), "curated_id", report)
    report.rows_in = result.examples
    report.extra.update(model_id=trained_id, judge_model_id=judge_id, rule=cfg.iterations.rule(iteration), steps=result.steps,
                        final_loss=result.final_loss, examples_by_source=result.provenance["examples_by_source"],
                        data_sha256=result.provenance["sha256"])
    return report


CURATED_COLUMNS = (
    "curated_id", "iteration", "trained_model_id", "score_id", "generation_id", "segment_id", "doc_id", "url",
    "generation_model_id", "augment_prompt_version", "judge_model_id", "judge_prompt_version", "score", "expected_score",
    "score_column", "min_score", "training_data_sha256", "status", "reason",
)


def curated_rows(ctx: Context, iteration: int, result: TrainResult, trained_id: str) -> DataFrame:
    """Lineage of M_i's augmented examples, one row per example: the scores row that curated it, the candidate
    (generating model, prompt version), the segment and its document URL, read at the versions training read.
    Keyed by (scores row, trained model): a model retrained on a grown pool gets its own complete set."""
    tables = result.provenance["augmented"]["tables"]
    read = {t: ctx.storage.read(t, tables[t]["version"]) for t in POOL_TABLES}
    used = ctx.spark.createDataFrame([(s,) for s in result.curated_score_ids], "score_id string")
    return (
        used.join(read["scores"].select("score_id", "generation_id", "judge_model_id", F.col("prompt_version").alias("judge_prompt_version"),
                                        "score", "expected_score"), on="score_id")
        .join(read["candidates"].select("generation_id", "segment_id", F.col("model_id").alias("generation_model_id"),
                                        F.col("prompt_version").alias("augment_prompt_version")), on="generation_id")
        .join(read["segments"].select("segment_id", "doc_id", "url"), on="segment_id")
        .withColumns({
            "curated_id": keyed_id("score_id", trained_id),
            "iteration": F.lit(iteration),
            "trained_model_id": F.lit(trained_id),
            "score_column": F.lit(ctx.cfg.iterations.score_column),
            "min_score": F.lit(ctx.cfg.iterations.k(iteration)),
            "training_data_sha256": F.lit(result.provenance["sha256"]),
            "status": F.lit("ok"),  # every row is an example of the training set; nothing else is written here
            "reason": F.lit(None).cast("string"),
        })
        .select(*CURATED_COLUMNS)
    )


def _calibrate(ctx: Context) -> StageReport:
    from jobs.calibration import calibrate  # jobs.calibration builds on this module's helpers

    return calibrate(ctx)


STAGE_FUNCTIONS: dict[str, Callable[..., StageReport]] = {
    "ingest": ingest,
    "segment": segment,
    "models": models,
    "augment": augment,
    "curate": curate,
    "train": train_iteration,
    "calibrate": _calibrate,
}


def run_stage(ctx: Context, name: str, iteration: int | None = None) -> StageReport:
    start = time.monotonic()
    label = name if iteration is None else f"{name} (iteration {iteration})"
    log.info("stage %s: start", label)
    args = (iteration,) if name in ITERATION_STAGES else ()
    report = STAGE_FUNCTIONS[name](ctx, *args)
    report.seconds = round(time.monotonic() - start, 1)
    log.info("stage %s: %d rows in %.1fs", label, report.rows_written, report.seconds)
    return report
