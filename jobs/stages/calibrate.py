"""calibrate_v1: each iteration's judge rates a labelled file of (instruction, output, good|bad) -> ``calibration``.

The paper's Table 7: how well does the judge that curates iteration i (M0 for iteration 1, M1 for 2, ...)
separate good pairs from bad ones? Rows are keyed by (judge model id, prompt version, sampling, seed,
label row id), so re-running adds nothing and a new judge or label adds only its rows. The judge is the
curate stage's own batch function (``spark_udfs.judge``) with the curate stage's prompt and sampling; the
report turns the rows into precision and recall at k (``udfs.calibration``). With ``likelihood.enabled`` the
likelihood scorer rates the same pairs first (``likelihoods`` rows of source ``labels``): IFD's calibration.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.config import PipelineConfig
from jobs.stages.base import (
    Context,
    StageReport,
    append,
    keyed_id,
    llm_map,
    model_ready,
    model_state,
    pending,
    table_state,
)
from jobs.stages.likelihood import scorer_of
from udfs import ids, spark_udfs
from udfs.calibration import LabelledPair, read_labels
from udfs.ids import likelihood_salt, model_fingerprint
from udfs.likelihood import FORMAT_VERSION
from udfs.prompts import CONF_DIR, PromptTemplate
from udfs.tables import CALIBRATION, LABELS_SCHEMA, LIKELIHOODS, SCORES

log = logging.getLogger(__name__)

PROJECT_ROOT = CONF_DIR.parent


def run(ctx: Context, report: StageReport) -> None:
    cfg = ctx.cfg
    path = labels_path(cfg)
    if path is None:
        report.extra["skipped"] = "report.judge_labels is null"
        return
    pairs = read_labels(path)
    labels = ctx.spark.createDataFrame(
        [(p.label_id, p.instruction, p.output, p.label, p.kind) for p in pairs], LABELS_SCHEMA
    )
    if cfg.likelihood.enabled:
        score_labels(ctx, labels, report)
    template = PromptTemplate.load(cfg.curate.prompt)
    done = ctx.storage.read(CALIBRATION.name)
    report.extra["judges"] = []
    for iteration in range(1, cfg.iterations.count + 1):
        model_path = cfg.iteration_model(iteration - 1)  # the judge that curates this iteration
        if not model_ready(model_path):
            report.extra["judges"].append({"iteration": iteration, "skipped": "model not trained yet"})
            continue
        model_id = model_fingerprint(model_path)
        todo = labels.select(keyed_id("label_id", calibration_salt(cfg, model_id, template)).alias("score_id"), "*")
        if done is not None:  # skip before judging: the LLM is the expensive part
            todo = todo.join(done.select(F.col("calibration_id").alias("score_id")), on="score_id", how="left_anti")
        report.rows_in += todo.count()
        pairs = todo.select(
            "score_id",
            F.col("label_id").alias("generation_id"),
            F.col("label_id").alias("segment_id"),
            "instruction",
            F.col("output").alias("text"),
        )
        fn = spark_udfs.judge(model_path, model_id, cfg.engine, cfg.curate.sampling, template)
        rows = (
            llm_map(ctx, pairs, fn, SCORES.schema)
            .withColumnRenamed("score_id", "calibration_id")
            .withColumnRenamed("generation_id", "label_id")
            .join(todo.select("label_id", "label", "kind"), on="label_id")
            .withColumn("iteration", F.lit(iteration))
            .select(*CALIBRATION.columns)
        )
        append(ctx, CALIBRATION, rows, report)
        report.extra["judges"].append({"iteration": iteration, "judge_model_id": model_id})
        log.info("calibrate: iteration %d judge %s done", iteration, model_id)


def score_labels(ctx: Context, labels: DataFrame, report: StageReport) -> None:
    """The likelihood scorer over the labelled pairs -> ``likelihoods`` rows of source ``labels`` (keyed by
    label id and scorer, like the pool's), so the report can set IFD's calibration beside the judges'."""
    path, scorer_id = scorer_of(ctx.cfg)
    todo = labels.select(
        keyed_id("label_id", likelihood_salt(scorer_id, FORMAT_VERSION)).alias("likelihood_id"),
        F.col("label_id").alias("generation_id"),
        F.col("label_id").alias("segment_id"),
        "instruction",
        F.col("output").alias("text"),
    )
    todo = pending(ctx, LIKELIHOODS, todo)  # skip before scoring
    report.rows_in += todo.count()
    fn = spark_udfs.likelihood(path, scorer_id, ctx.cfg.engine, "labels")
    append(ctx, LIKELIHOODS, llm_map(ctx, todo, fn, LIKELIHOODS.schema), report)
    report.extra["likelihood_scorer_model_id"] = scorer_id


def plan(ctx: Context, iteration: int | None = None) -> dict:
    cfg = ctx.cfg
    judges = {
        f"M{i - 1} (judge of iteration {i})": model_state(cfg.iteration_model(i - 1))
        for i in range(1, cfg.iterations.count + 1)
    }
    path = labels_path(cfg)
    return {
        "models": judges,
        "inputs": {"judge_labels": str(path) if path else None},
        "outputs": {CALIBRATION.name: table_state(ctx, CALIBRATION)},
        "todo": {
            "judges": "none: report.judge_labels is null"
            if path is None
            else f"each present judge over {path.name} (rows already present are skipped)"
        },
    }


def labels_path(cfg: PipelineConfig) -> Path | None:
    """The labelled file, relative to the working directory or else to the project root (like prompts)."""
    if cfg.report.judge_labels is None:
        return None
    path = Path(cfg.report.judge_labels)
    return path if path.is_absolute() or path.exists() else PROJECT_ROOT / path


def calibration_salt(cfg: PipelineConfig, judge_model_id: str, template: PromptTemplate) -> str:
    return ids.calibration_salt(judge_model_id, template.version, cfg.curate.sampling.as_dict(), cfg.curate.seed)


def calibration_ids(cfg: PipelineConfig, judge_model_ids: list[str], labels: list[LabelledPair]) -> set[str]:
    """The keys this config gives the rows of ``judge_model_ids`` over ``labels`` (what the report reads)."""
    template = PromptTemplate.load(cfg.curate.prompt)
    salts = [calibration_salt(cfg, j, template) for j in judge_model_ids]
    return {ids.keyed_id(label.label_id, salt) for salt in salts for label in labels}
