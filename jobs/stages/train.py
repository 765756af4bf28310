"""train_v1 (per iteration): M_i fine-tuned from the base model on seed + A_k(i) -> a model and ``curated``.

Paper step 4: training reads the pool at pinned table versions (``training.data`` applies the curation
rule of ``udfs.curation``), and ``curated`` records the lineage of every augmented example it trained on.
"""

from __future__ import annotations

import json
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.stages.base import Context, MissingInput, StageReport, append, keyed_id, model_state, pending
from jobs.stages.curate import judge_of, passing, score_rows
from jobs.stages.models import fine_tune, recipe_file, train_config
from training.train import TrainResult
from udfs.ids import model_fingerprint
from udfs.tables import CANDIDATES, CURATED, POOL_TABLES, SCORES, SEGMENTS


def run(ctx: Context, report: StageReport) -> None:
    cfg, iteration = ctx.cfg, report.iteration
    _, judge_id = judge_of(cfg, iteration)
    unscored = pending(ctx, SCORES, score_rows(ctx, iteration, judge_id)).count()
    if unscored:  # training on part of A(i) would make a model (and a next judge) that the full pool replaces
        raise MissingInput(
            f"iteration {iteration}: {unscored} pairs are not scored by {judge_id} yet: run the curate stage first"
        )
    versions = {t: ctx.storage.version(t) for t in POOL_TABLES}
    report.reads.update(versions)
    extra = [f"augmented.{t}_table={ctx.storage.path(t)}" for t in POOL_TABLES]
    extra += [f"augmented.{t}_version={v}" for t, v in versions.items()]
    extra += [
        f"augmented.judge_model_id={judge_id}",
        f"augmented.score_column={cfg.iterations.score_column}",
        f"augmented.min_score={cfg.iterations.k(iteration)}",
    ]
    output_dir = cfg.iteration_model(iteration)
    recipe = recipe_file(cfg, "forward")
    result = fine_tune(cfg, train_config(cfg, recipe, cfg.model_path("base"), output_dir, tuple(extra)))
    trained_id = model_fingerprint(output_dir)
    append(ctx, CURATED, curated_rows(ctx, iteration, result, trained_id), report)
    report.rows_in = result.examples
    report.extra.update(
        model_id=trained_id,
        judge_model_id=judge_id,
        rule=cfg.iterations.rule(iteration),
        steps=result.steps,
        final_loss=result.final_loss,
        examples_by_source=result.provenance["examples_by_source"],
        data_sha256=result.provenance["sha256"],
    )


def plan(ctx: Context, iteration: int) -> dict:
    cfg = ctx.cfg
    judge = model_state(cfg.iteration_model(iteration - 1))
    model = model_state(cfg.iteration_model(iteration))
    scores = ctx.storage.read(SCORES.name)
    curated = None  # unknown until the judge exists
    if scores is not None and judge["state"] == "present":
        mine = scores.where((F.col("judge_model_id") == judge["id"]) & (F.col("iteration") == iteration))
        curated = mine.where(passing(cfg, iteration)).select("generation_id").distinct().count()
    trained_on, lineage = None, 0
    if model["state"] == "present":
        meta = json.loads((Path(model["path"]) / "training_meta.json").read_text())
        trained_on = meta["provenance"].get("examples_by_source", {}).get("augmented", 0)
        table = ctx.storage.read(CURATED.name)
        lineage = 0 if table is None else table.where(F.col("trained_model_id") == model["id"]).count()
    if model["state"] != "present":
        todo = "train"
    elif curated is not None and curated != trained_on:
        todo = f"retrain: A({iteration}) has {curated} pairs now, M{iteration} was trained on {trained_on}"
    else:
        todo = "none: up to date" if curated is not None else f"unknown until M{iteration - 1} exists"
    return {
        "models": {f"M{iteration - 1} (judge)": judge, f"M{iteration}": model},
        "inputs": {"seed": cfg.input.seed, "rule": cfg.iterations.rule(iteration), "curated_pairs_now": curated},
        "outputs": {CURATED.name: {"rows_of_this_model": lineage}, "augmented_examples_trained_on": trained_on},
        "todo": {"train": todo},
    }


def curated_rows(ctx: Context, iteration: int, result: TrainResult, trained_id: str) -> DataFrame:
    """Lineage of M_i's augmented examples, one row per example: the scores row that curated it, the candidate
    (generating model, prompt version), the segment and its document URL, read at the versions training read.
    Keyed by (scores row, trained model): a model retrained on a grown pool gets its own complete set."""
    tables = result.provenance["augmented"]["tables"]
    read = {t: ctx.storage.read(t, tables[t]["version"]) for t in POOL_TABLES}
    used = ctx.spark.createDataFrame([(s,) for s in result.curated_score_ids], "score_id string")
    scores = read[SCORES.name].select(
        "score_id",
        "generation_id",
        "judge_model_id",
        F.col("prompt_version").alias("judge_prompt_version"),
        "score",
        "expected_score",
    )
    candidates = read[CANDIDATES.name].select(
        "generation_id",
        "segment_id",
        F.col("model_id").alias("generation_model_id"),
        F.col("prompt_version").alias("augment_prompt_version"),
    )
    return (
        used.join(scores, on="score_id")
        .join(candidates, on="generation_id")
        .join(read[SEGMENTS.name].select("segment_id", "doc_id", "url"), on="segment_id")
        .withColumns(
            {
                "curated_id": keyed_id("score_id", trained_id),
                "iteration": F.lit(iteration),
                "trained_model_id": F.lit(trained_id),
                "score_column": F.lit(ctx.cfg.iterations.score_column),
                "min_score": F.lit(ctx.cfg.iterations.k(iteration)),
                "training_data_sha256": F.lit(result.provenance["sha256"]),
                "status": F.lit("ok"),  # every row is an example of the training set; nothing else is written here
                "reason": F.lit(None).cast("string"),
            }
        )
        .select(*CURATED.columns)
    )
