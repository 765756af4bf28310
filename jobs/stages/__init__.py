"""The pipeline's stages in run order: the one registry the CLI, the dry run, the notebooks and the bundle read.

Each stage is one module of this package holding its ``run(ctx, report)`` and its dry-run ``plan(ctx,
iteration)``; ``jobs.stages.base`` holds what they share. A stage has a versioned name (``ingest_v2``): a
change to what it writes ships as a new version. The self-training loop's stages are ``iterated``: they run
once per iteration, in turn (curate 1, train 1, curate 2, ...), because iteration i's judge is the model
iteration i-1 trains. Adding a stage is one module and one line in ``STAGES``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from jobs.config import LLM_STAGE_ENGINES, PipelineConfig
from jobs.stages import augment, calibrate, curate, ingest, likelihood, models, rewrite, segment, train
from jobs.stages.base import Context, MissingInput, StageReport

__all__ = [
    "STAGES",
    "Context",
    "MissingInput",
    "Stage",
    "StageReport",
    "active",
    "format_plan",
    "make_plan",
    "run_stage",
    "schedule",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    name: str  # what --stages and the notebooks call it
    versioned: str  # what its reports and the runs table call it
    run: Callable[[Context, StageReport], None]
    plan: Callable[[Context, int | None], dict]
    iterated: bool = False  # once per self-training iteration
    # whether a config runs the stage at all: an optional stage that is off is left out of the schedule
    enabled: Callable[[PipelineConfig], bool] = lambda cfg: True


STAGES: tuple[Stage, ...] = (
    Stage("ingest", "ingest_v2", ingest.run, ingest.plan),
    Stage("segment", "segment_v1", segment.run, segment.plan),
    Stage("models", "models_v1", models.run, models.plan),
    Stage("augment", "augment_v1", augment.run, augment.plan),
    Stage("likelihood", "likelihood_v1", likelihood.run, likelihood.plan, enabled=lambda cfg: cfg.likelihood.enabled),
    Stage("curate", "curate_v1", curate.run, curate.plan, iterated=True),
    Stage("rewrite", "rewrite_v1", rewrite.run, rewrite.plan, iterated=True, enabled=lambda cfg: cfg.rewrite.enabled),
    Stage("train", "train_v1", train.run, train.plan, iterated=True),
    Stage("calibrate", "calibrate_v1", calibrate.run, calibrate.plan),
)
BY_NAME = {stage.name: stage for stage in STAGES}
STAGE_NAMES = tuple(BY_NAME)
ITERATION_STAGES = tuple(stage.name for stage in STAGES if stage.iterated)


def active(cfg: PipelineConfig, stages: Sequence[str]) -> list[str]:
    """The stages of ``stages`` that ``cfg`` turns on (optional stages that are off are left out)."""
    return [name for name in stages if BY_NAME[name].enabled(cfg)]


def schedule(stages: Sequence[str], iterations: Sequence[int]) -> list[tuple[str, int | None]]:
    """(stage, iteration) pairs in run order. Each run of consecutive iteration stages repeats per iteration,
    interleaved, because iteration i's judge is the model iteration i-1 trains."""
    order: list[tuple[str, int | None]] = []
    block: list[str] = []
    for name in [*stages, None]:
        if name in ITERATION_STAGES:
            block.append(name)
            continue
        order += [(stage, i) for i in iterations for stage in block]
        block = []
        if name is not None:
            order.append((name, None))
    return order


def run_stage(ctx: Context, name: str, iteration: int | None = None) -> StageReport:
    """Run stage ``name`` (of ``iteration`` for an iterated stage) and return its report."""
    stage = BY_NAME[name]
    start = time.monotonic()
    label = name if iteration is None else f"{name} (iteration {iteration})"
    log.info("stage %s: start", label)
    report = StageReport(stage.versioned, iteration if stage.iterated else None)
    if name in LLM_STAGE_ENGINES:  # the stage's own engine settings (engines.<stage>) over the shared ones
        ctx = dataclasses.replace(ctx, cfg=dataclasses.replace(ctx.cfg, engine=ctx.cfg.stage_engine(name)))
    stage.run(ctx, report)
    report.seconds = round(time.monotonic() - start, 1)
    log.info("stage %s: %d rows in %.1fs", label, report.rows_written, report.seconds)
    return report


def make_plan(ctx: Context, order: list[tuple[str, int | None]]) -> dict:
    """The dry run of ``order`` ((stage, iteration) pairs, as ``schedule`` gives them) as plain data: what each
    stage would do and what is already done. It reads tables (row counts and the keys a stage would skip) and
    model directories, and never generates, scores or trains. Counts are of the tables as they are now: rows
    that earlier stages of the same plan would add are not counted yet, and a judge that is not trained yet
    cannot say which pairs it has scored (all of the pool is then to do)."""
    steps = [BY_NAME[name].plan(ctx, i) | {"stage": name, "iteration": i} for name, i in order]
    return {"dry_run": True, "storage_root": ctx.storage.root, "iterations": ctx.cfg.iterations.count, "steps": steps}


def format_plan(plan: dict) -> str:
    lines = [f"plan (dry run: nothing generated, scored or trained), tables under {plan['storage_root']}"]
    for step in plan["steps"]:
        label = step["stage"] if step["iteration"] is None else f"{step['stage']} [iteration {step['iteration']}]"
        lines.append(f"  {label}")
        for part in ("models", "training_memory", "inputs", "outputs", "todo"):
            if step.get(part):
                lines.append(f"      {part:<8} {json.dumps(step[part], sort_keys=True, default=str)}")
    return "\n".join(lines)
