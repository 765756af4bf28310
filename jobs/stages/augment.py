"""augment_v1: M_yx writes one instruction per ok segment -> ``candidates`` (self-augmentation, paper step 2).

Generation ids are keyed by segment, M_yx's id, prompt version, sampling and seed (``udfs.ids``); the row
logic is ``udfs.llm_rows.augment_batch``, run by the executors through ``spark_udfs.backtranslate``. Each
instruction is checked against the evaluation sets segments are checked against (``segment.decontamination``):
M_yx can write an evaluation's prompt even for a clean segment, and one that does is ``eval_overlap:<set>``.
"""

from __future__ import annotations

from pyspark.sql import DataFrame

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
from udfs.ids import generation_salt
from udfs.prompts import PromptTemplate
from udfs.tables import CANDIDATES, SEGMENTS


def run(ctx: Context, report: StageReport) -> None:
    cfg = ctx.cfg
    model_path = cfg.model_path("backward")
    backward_id = model_id(model_path, "M_yx", "models")
    template = PromptTemplate.load(cfg.augment.prompt)
    fn = spark_udfs.backtranslate(
        model_path,
        backward_id,
        cfg.engine,
        cfg.augment.sampling,
        template,
        cfg.augment.max_instruction_chars,
        cfg.segment.eval_check,
    )
    append_in_chunks(ctx, CANDIDATES, augment_rows(ctx, backward_id, report), fn, report)
    report.extra["model_id"] = backward_id


def plan(ctx: Context, iteration: int | None = None) -> dict:
    backward = model_state(ctx.cfg.model_path("backward"))
    segments = ctx.storage.read(SEGMENTS.name)
    ok = 0 if segments is None else segments.where("status = 'ok'").count()
    todo = ok
    if segments is not None and backward["state"] == "present":
        todo = pending(ctx, CANDIDATES, augment_rows(ctx, backward["id"])).count()
    return {
        "models": {"M_yx": backward},
        "inputs": {"segments_ok": ok},
        "outputs": {CANDIDATES.name: table_state(ctx, CANDIDATES)},
        "todo": {"generations": todo},
    }


def augment_rows(ctx: Context, backward_id: str, report: StageReport | None = None) -> DataFrame:
    """Every (generation_id, segment_id, text) this config asks M_yx for: one per ok segment."""
    cfg = ctx.cfg
    version = PromptTemplate.load(cfg.augment.prompt).version
    salt = generation_salt(backward_id, version, cfg.augment.sampling.as_dict(), cfg.augment.seed)
    segments = require(ctx, report, SEGMENTS.name, "segment").where("status = 'ok'")
    return segments.select(keyed_id("segment_id", salt).alias("generation_id"), "segment_id", "text")
