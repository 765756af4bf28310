"""curate_v1 (per iteration): M_{i-1} grades every (instruction, segment) pair of the pool -> ``scores``.

Self-curation, paper step 3: iteration i's judge is M_{i-1} (M0, the seed model, for iteration 1) and it
scores the whole candidate pool. Score ids are keyed by generation, judge, prompt version, sampling, seed
and iteration (``udfs.ids``); the row logic is ``udfs.llm_rows.judge_batch``, run through ``spark_udfs.judge``.
What passes is ``passing``: the curation rule of ``udfs.curation`` with this iteration's k. With
``curate.cascade.enabled`` a classifier trained on the judge's scores of a sample rules out pairs first
(``jobs.cascade``).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs import cascade
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
from udfs.curation import passes, prefix_order
from udfs.ids import score_salt
from udfs.prompts import PromptTemplate
from udfs.tables import CANDIDATES, SCORES, SEGMENTS


def run(ctx: Context, report: StageReport) -> None:
    cfg, iteration = ctx.cfg, report.iteration
    model_path, judge_id = judge_of(cfg, iteration)
    template = PromptTemplate.load(cfg.curate.prompt)
    fn = spark_udfs.judge(model_path, judge_id, cfg.engine, cfg.curate.sampling, template, iteration)
    # Prompts sharing a prefix are judged side by side: each batch then prefills a shared prefix once.
    order = prefix_order(template)
    pairs = score_rows(ctx, iteration, judge_id, report)
    if cfg.curate.cascade.enabled:
        cascade.run(ctx, report, pairs, judge_id, template.version, fn, order)
    else:
        append_in_chunks(ctx, SCORES, pairs, fn, report, order)
    report.extra["judge_model_id"] = judge_id


def plan(ctx: Context, iteration: int) -> dict:
    cfg = ctx.cfg
    judge = model_state(cfg.iteration_model(iteration - 1))
    candidates = ctx.storage.read(CANDIDATES.name)
    pool = 0 if candidates is None else candidates.where("status = 'ok'").count()
    done, todo = 0, pool
    if candidates is not None and judge["state"] == "present":
        _, judge_id = judge_of(cfg, iteration)
        todo = pending(ctx, SCORES, score_rows(ctx, iteration, judge_id)).count()
        done = pool - todo
    return {
        "models": {f"M{iteration - 1} (judge)": judge},
        "inputs": {"candidates_ok": pool},
        "outputs": {SCORES.name: table_state(ctx, SCORES) | {"rows_of_this_judge": done}},
        "todo": {"pairs": todo},
    }


def judge_of(cfg: PipelineConfig, iteration: int) -> tuple[str, str]:
    """Path and id of iteration ``iteration``'s judge, M_{i-1}."""
    path = cfg.iteration_model(iteration - 1)
    return path, model_id(
        path, f"M{iteration - 1}", "models" if iteration == 1 else f"train (iteration {iteration - 1})"
    )


def score_rows(ctx: Context, iteration: int, judge_id: str, report: StageReport | None = None) -> DataFrame:
    """Every pair iteration ``iteration`` has its judge score: all ok candidates (the same pool each iteration),
    keyed by (generation, judge, prompt version, sampling, seed, iteration)."""
    cfg = ctx.cfg
    version = PromptTemplate.load(cfg.curate.prompt).version
    salt = score_salt(judge_id, version, cfg.curate.sampling.as_dict(), cfg.curate.seed, iteration)
    candidates = require(ctx, report, CANDIDATES.name, "augment").where("status = 'ok'")
    return (
        candidates.select("generation_id", "segment_id", "instruction")
        .join(require(ctx, report, SEGMENTS.name, "segment").select("segment_id", "text"), on="segment_id")
        .select(keyed_id("generation_id", salt).alias("score_id"), "generation_id", "segment_id", "instruction", "text")
    )


def passing(cfg: PipelineConfig, iteration: int) -> Column:
    """The judge's rule of ``iteration`` as a filter on judged scores rows (null scores never pass); what a
    baseline selects instead is ``jobs.selection.curated_generations``."""
    return passes(F.col, cfg.iterations.judge_rule, cfg.iterations.k(iteration))
