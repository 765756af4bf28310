"""likelihood_v1: IFD and the conditional loss of every candidate pair under a scorer model -> ``likelihoods``.

Superfiltering's selection signal (``udfs.likelihood``): two prefills per pair (the answer with and without
its instruction) of ``likelihood.model`` (null: the base model), no generation. It does not depend on any
judge, so it runs once per pool, after augment; iterations whose rule is ``ifd`` or ``conditional_loss``
read it (``training.data``, ``rule_rows``). Rows are keyed by (generation, scorer model id, format version),
committed in chunks and skipped when present, like curate. Off (left out of the schedule) unless ``likelihood.enabled``.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.config import PipelineConfig
from jobs.stages.base import (
    Context,
    StageReport,
    append_in_chunks,
    keyed_id,
    model_id,
    model_state,
    pending,
    require,
    table_state,
)
from udfs import spark_udfs
from udfs.curation import uses_likelihoods
from udfs.ids import likelihood_salt
from udfs.likelihood import FORMAT_VERSION, LIKELIHOOD_COLUMNS
from udfs.tables import CANDIDATES, LIKELIHOODS, SEGMENTS


def run(ctx: Context, report: StageReport) -> None:
    cfg = ctx.cfg
    path, scorer_id = scorer_of(cfg)
    fn = spark_udfs.likelihood(path, scorer_id, cfg.engine, "pool")
    append_in_chunks(ctx, LIKELIHOODS, likelihood_rows(ctx, scorer_id, report), fn, report)
    report.extra["scorer_model_id"] = scorer_id


def plan(ctx: Context, iteration: int | None = None) -> dict:
    cfg = ctx.cfg
    scorer = model_state(cfg.likelihood_model())
    candidates = ctx.storage.read(CANDIDATES.name)
    pool = 0 if candidates is None else candidates.where("status = 'ok'").count()
    todo = pool
    if candidates is not None and scorer["state"] == "present":
        todo = pending(ctx, LIKELIHOODS, likelihood_rows(ctx, scorer["id"])).count()
    return {
        "models": {"scorer": scorer},
        "inputs": {"candidates_ok": pool},
        "outputs": {LIKELIHOODS.name: table_state(ctx, LIKELIHOODS)},
        "todo": {"pairs": todo},
    }


def scorer_of(cfg: PipelineConfig) -> tuple[str, str]:
    """Path and id of the scorer model."""
    path = cfg.likelihood_model()
    return path, model_id(path, "the likelihood scorer", "models")


def likelihood_rows(ctx: Context, scorer_id: str, report: StageReport | None = None) -> DataFrame:
    """Every pair the scorer rates: all ok candidates, keyed by (generation, scorer, format version)."""
    salt = likelihood_salt(scorer_id, FORMAT_VERSION)
    candidates = require(ctx, report, CANDIDATES.name, "augment").where("status = 'ok'")
    return (
        candidates.select("generation_id", "segment_id", "instruction")
        .join(require(ctx, report, SEGMENTS.name, "segment").select("segment_id", "text"), on="segment_id")
        .select(
            keyed_id("generation_id", salt).alias("likelihood_id"), "generation_id", "segment_id", "instruction", "text"
        )
    )


def rule_rows(ctx: Context, scores: DataFrame) -> DataFrame:
    """``scores`` with the columns the curation rule reads: the scorer's ifd and conditional loss joined by
    generation when the rule is a likelihood one (null where the scorer has no ok row: such a row passes
    no likelihood rule), else ``scores`` itself."""
    cfg = ctx.cfg
    if not uses_likelihoods(cfg.iterations.judge_rule):
        return scores
    table = require(ctx, None, LIKELIHOODS.name, "likelihood")
    _, scorer_id = scorer_of(cfg)
    mine = table.where(
        (F.col("status") == "ok")
        & (F.col("source") == "pool")
        & (F.col("scorer_model_id") == scorer_id)
        & (F.col("format_version") == FORMAT_VERSION)
    ).select("generation_id", *LIKELIHOOD_COLUMNS)
    return scores.join(mine.dropDuplicates(["generation_id"]), on="generation_id", how="left")
