"""train_v1 (per iteration): M_i fine-tuned from the base model on seed + A_k(i) -> a model and ``curated``.

Paper step 4: training reads the pool at pinned table versions (``training.data`` applies the curation
rule of ``udfs.curation``), and ``curated`` records the lineage of every augmented example it trained on.
With ``rewrite.train_on: rewrite`` the answers are the curated pairs' ok rewrites (``jobs.stages.rewrite``).
"""

from __future__ import annotations

import json
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.stages.base import Context, MissingInput, StageReport, append, keyed_id, model_state, pending
from jobs.selection import curated_generations
from jobs.stages.curate import judge_of, score_rows
from jobs.stages.likelihood import rule_rows, scorer_of
from jobs.stages.models import fine_tune, recipe_file, train_config
from jobs.stages.rewrite import rewrite_rows, rewriter_of, rewritten
from training.data import excluded_counts
from udfs.prompts import PromptTemplate
from training.train import TrainResult
from udfs.ids import model_fingerprint
from udfs.curation import uses_likelihoods
from udfs.tables import CANDIDATES, CURATED, LIKELIHOODS, POOL_TABLES, REWRITES, SCORES, SEGMENTS


def run(ctx: Context, report: StageReport) -> None:
    cfg, iteration = ctx.cfg, report.iteration
    _, judge_id = judge_of(cfg, iteration)
    unscored = pending(ctx, SCORES, score_rows(ctx, iteration, judge_id)).count()
    if unscored:  # training on part of A(i) would make a model (and a next judge) that the full pool replaces
        raise MissingInput(
            f"iteration {iteration}: {unscored} pairs are not scored by {judge_id} yet: run the curate stage first"
        )
    tables = POOL_TABLES
    extra = [
        f"augmented.judge_model_id={judge_id}",
        f"augmented.score_column={cfg.iterations.score_column}",
        f"augmented.min_score={cfg.iterations.k(iteration)}",
        f"augmented.baseline_of={cfg.iterations.baseline_of}",
        f"augmented.baseline_seed={cfg.iterations.baseline_seed}",
    ]
    if cfg.iterations.baseline_k is not None:
        extra.append(f"augmented.baseline_k={cfg.iterations.baseline_k}")
    if cfg.rewrite.train_on == "rewrite":
        _, rewriter_id = rewriter_of(cfg)
        rows = rewrite_rows(ctx, iteration, judge_id, rewriter_id)
        missing = pending(ctx, REWRITES, rows).count()
        if missing:  # as with scores: M_i on part of its rewrites would be replaced once they are made
            raise MissingInput(
                f"iteration {iteration}: {missing} curated pairs are not rewritten by {rewriter_id} yet: "
                "run the rewrite stage first"
            )
        tables = (*POOL_TABLES, REWRITES.name)
        extra += [
            "augmented.output=rewrite",
            f"augmented.rewrite_model_id={rewriter_id}",
            f"augmented.rewrite_prompt_version={PromptTemplate.load(cfg.rewrite.prompt).version}",
        ]
    if uses_likelihoods(cfg.iterations.judge_rule):  # the rule reads the likelihoods table too, pinned alike
        tables += (LIKELIHOODS.name,)
        extra.append(f"augmented.likelihood_scorer_id={scorer_of(cfg)[1]}")
    versions = {t: ctx.storage.version(t) for t in tables}
    report.reads.update(versions)
    extra += [f"augmented.{t}_table={ctx.storage.path(t)}" for t in tables]
    extra += [f"augmented.{t}_version={v}" for t, v in versions.items()]
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
        seed_excluded=excluded_counts(result.provenance),
        data_sha256=result.provenance["sha256"],
    )
    if "without_rewrite" in result.provenance.get("augmented", {}):
        report.extra["curated_without_rewrite"] = result.provenance["augmented"]["without_rewrite"]


def plan(ctx: Context, iteration: int) -> dict:
    cfg = ctx.cfg
    judge = model_state(cfg.iteration_model(iteration - 1))
    model = model_state(cfg.iteration_model(iteration))
    scores = ctx.storage.read(SCORES.name)
    curated = None  # unknown until the judge exists
    if scores is not None and judge["state"] == "present":
        mine = scores.where((F.col("judge_model_id") == judge["id"]) & (F.col("iteration") == iteration))
        curated = curated_generations(cfg, iteration, rule_rows(ctx, mine), ctx.storage.read(SEGMENTS.name)).count()
        if cfg.rewrite.train_on == "rewrite":  # the pairs training takes: those with an ok rewrite
            rewriter = model_state(cfg.rewrite_model())
            curated = None
            if rewriter["state"] == "present":
                rows = rewrite_rows(ctx, iteration, judge["id"], rewriter["id"])
                curated = rewritten(ctx, rows).where("status = 'ok'").select("generation_id").distinct().count()
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
    (generating model, prompt version), the segment and its document URL, read at the versions training read,
    and the rewrite that was its answer (null when the segment was). Keyed by (scores row, trained model): a
    model retrained on a grown pool gets its own complete set."""
    tables = result.provenance["augmented"]["tables"]
    read = {t: ctx.storage.read(t, tables[t]["version"]) for t in POOL_TABLES}
    used = ctx.spark.createDataFrame(
        list(zip(result.curated_score_ids, result.curated_rewrite_ids)), "score_id string, rewrite_id string"
    )
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
