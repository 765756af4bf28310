"""curate_v1 (per iteration): M_{i-1} grades every (instruction, segment) pair of the pool -> ``scores``.

Self-curation, paper step 3: iteration i's judge is M_{i-1} (M0, the seed model, for iteration 1) and it
scores the whole candidate pool. Score ids are keyed by generation, judge, prompt version, sampling, seed
and iteration (``udfs.ids``); the row logic is ``udfs.llm_rows.judge_batch``, run through ``spark_udfs.judge``.
What passes is ``passing``: the curation rule of ``udfs.curation`` with this iteration's k.
"""

from __future__ import annotations

import dataclasses

from pyspark.sql import Column, DataFrame
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
from udfs.curation import passes
from udfs.ids import score_salt
from udfs.prompts import PromptTemplate
from udfs.tables import CANDIDATES, SCORES, SEGMENTS


def run(ctx: Context, report: StageReport) -> None:
    cfg, iteration = ctx.cfg, report.iteration
    model_path, judge_id = judge_of(cfg, iteration)
    template = PromptTemplate.load(cfg.curate.prompt)
    fn = spark_udfs.judge(model_path, judge_id, cfg.engine, cfg.curate.sampling, template, iteration)
    append_in_chunks(ctx, SCORES, score_rows(ctx, iteration, judge_id, report), fn, report)
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
    salt = score_salt(judge_id, version, dataclasses.asdict(cfg.curate.sampling), cfg.curate.seed, iteration)
    candidates = require(ctx, report, CANDIDATES.name, "augment").where("status = 'ok'")
    return (
        candidates.select("generation_id", "segment_id", "instruction")
        .join(require(ctx, report, SEGMENTS.name, "segment").select("segment_id", "text"), on="segment_id")
        .select(keyed_id("generation_id", salt).alias("score_id"), "generation_id", "segment_id", "instruction", "text")
    )


def passing(cfg: PipelineConfig, iteration: int) -> Column:
    """The curation rule of ``iteration`` as a filter on judged scores rows (null scores never pass)."""
    return passes(F.col, cfg.iterations.score_column, cfg.iterations.k(iteration))
