"""rewrite_v1 (per iteration, optional): an aligned model rewrites each curated segment as an answer -> ``rewrites``.

Back-and-forth translation (Nguyen et al., 2024): after iteration i's curation, the rewriter (``rewrite.model``,
by default the instruct base model) rewrites every pair the iteration curates (``jobs.selection``)
into an answer to its instruction, copying from the segment and adding nothing; ``udfs.rewrite`` parses the
answer and measures its faithfulness. Rewrite ids are keyed by generation, rewriter, prompt version, sampling
and seed (``udfs.ids.rewrite_salt``): a pair both iterations curate is rewritten once. The row logic is
``udfs.llm_rows.rewrite_batch``, run through ``spark_udfs.rewrite``; chunked commits make the stage resumable.
With ``rewrite.train_on: rewrite`` iteration i's model trains on the ok rewrites (``jobs.stages.train``).
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
    read,
    require,
    table_state,
)
from jobs.selection import curated_generations
from jobs.stages.curate import judge_of
from jobs.stages.likelihood import rule_rows
from udfs import spark_udfs
from udfs.ids import rewrite_salt
from udfs.prompts import PromptTemplate
from udfs.rewrite import RewriteSettings
from udfs.tables import CANDIDATES, REWRITES, SCORES, SEGMENTS


def run(ctx: Context, report: StageReport) -> None:
    cfg, iteration = ctx.cfg, report.iteration
    _, judge_id = judge_of(cfg, iteration)
    path, rewriter_id = rewriter_of(cfg)
    settings = RewriteSettings(cfg.rewrite.min_faithfulness, cfg.rewrite.ngram, cfg.rewrite.require_end_marker)
    template = PromptTemplate.load(cfg.rewrite.prompt)
    fn = spark_udfs.rewrite(path, rewriter_id, cfg.engine, cfg.rewrite.sampling, template, settings)
    rows = rewrite_rows(ctx, iteration, judge_id, rewriter_id, report)
    append_in_chunks(ctx, REWRITES, rows, fn, report)
    report.extra.update(
        model_id=rewriter_id, judge_model_id=judge_id, faithfulness=faithfulness_figures(ctx, rows, report)
    )


def plan(ctx: Context, iteration: int) -> dict:
    cfg = ctx.cfg
    rewriter = model_state(cfg.rewrite_model())
    judge = model_state(cfg.iteration_model(iteration - 1))
    models = {"rewriter": rewriter, f"M{iteration - 1} (judge)": judge}
    curated, todo = None, f"unknown until M{iteration - 1} and the rewriter exist and the pairs are scored"
    tables = (SCORES, CANDIDATES, SEGMENTS)
    if judge["state"] == rewriter["state"] == "present" and all(ctx.storage.read(t.name) is not None for t in tables):
        rows = rewrite_rows(ctx, iteration, judge["id"], rewriter["id"])
        curated, todo = rows.count(), pending(ctx, REWRITES, rows).count()
    return {
        "models": models,
        "inputs": {"rule": cfg.iterations.rule(iteration), "curated_pairs_now": curated},
        "outputs": {REWRITES.name: table_state(ctx, REWRITES), "train_on": cfg.rewrite.train_on},
        "todo": {"rewrites": todo},
    }


def rewriter_of(cfg: PipelineConfig) -> tuple[str, str]:
    """Path and id of the rewrite model (``rewrite.model``, else the base model the models stage builds)."""
    path = cfg.rewrite_model()
    return path, model_id(path, "the rewrite model", "models")


def rewrite_rows(
    ctx: Context, iteration: int, judge_id: str, rewriter_id: str, report: StageReport | None = None
) -> DataFrame:
    """Every pair iteration ``iteration`` asks the rewriter for: the ok candidates its judge's scores pass
    under the iteration's rule, one per generation, keyed by (generation, rewriter, prompt version, sampling,
    seed)."""
    cfg = ctx.cfg
    version = PromptTemplate.load(cfg.rewrite.prompt).version
    salt = rewrite_salt(rewriter_id, version, cfg.rewrite.sampling.as_dict(), cfg.rewrite.seed)
    scores = rule_rows(
        ctx,
        require(ctx, report, SCORES.name, "curate").where(
            (F.col("judge_model_id") == judge_id) & (F.col("iteration") == iteration)
        ),
    )
    segments = require(ctx, report, SEGMENTS.name, "segment")
    curated = curated_generations(cfg, iteration, scores, segments)
    candidates = require(ctx, report, CANDIDATES.name, "augment").where("status = 'ok'")
    return (
        curated.join(candidates.select("generation_id", "segment_id", "instruction"), on="generation_id")
        .join(segments.select("segment_id", "text"), on="segment_id")
        .select(
            keyed_id("generation_id", salt).alias("rewrite_id"), "generation_id", "segment_id", "instruction", "text"
        )
    )


def rewritten(ctx: Context, rows: DataFrame, report: StageReport | None = None) -> DataFrame:
    """The rewrites rows of ``rows`` (as ``rewrite_rows`` gives them) that are in the table, any status."""
    done = read(ctx, report, REWRITES.name)
    if done is None:
        return ctx.spark.createDataFrame([], REWRITES.schema)
    return done.join(rows.select("rewrite_id"), on="rewrite_id")


def faithfulness_figures(ctx: Context, rows: DataFrame, report: StageReport | None = None) -> dict:
    """Over the rewrites of this iteration's curated pairs (made by this run or earlier): rows by status,
    mean faithfulness and new numbers/entities per measured rewrite, and how the answers ended."""
    done = rewritten(ctx, rows, report)
    measured = F.col("faithfulness").isNotNull()
    figures = (
        done.agg(
            F.count("*").alias("rewrites"),
            F.sum((F.col("status") == "ok").cast("int")).alias("ok"),
            F.avg("faithfulness").alias("mean_faithfulness"),
            F.avg(F.when(measured, F.col("n_new_numbers"))).alias("mean_new_numbers"),
            F.avg(F.when(measured, F.col("n_new_entities"))).alias("mean_new_entities"),
        )
        .first()
        .asDict()
    )
    ends = {r["answer_end"] or "none": r["count"] for r in done.groupBy("answer_end").count().collect()}
    figures["ok"] = figures["ok"] or 0
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()} | {"answer_end": ends}
