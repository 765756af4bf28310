"""The dry run: what the job would do, stage by stage and iteration by iteration, and what is already done.

    spark-submit jobs/augment.py --config conf/local.yaml --dry-run [--stages ...] [--iterations ...]

It reads tables (row counts and the keys a stage would skip) and model directories, and never generates,
scores or trains. Counts are of the tables as they are now: rows that earlier stages of the same plan would
add (new documents, their segments, candidates) are not counted yet, and a judge that is not trained yet
cannot say which pairs it has scored (all of the pool is then to do).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pyspark.sql import functions as F

from jobs.stages import (
    Context, augment_rows, ingest_ledger, judge_of, list_input_files, model_ready, passing, pending, score_rows,
)
from training.checkpoint import CHECKPOINT, checkpoint_dir
from udfs.ids import model_fingerprint
from udfs.readers import file_id


def make_plan(ctx: Context, order: list[tuple[str, int | None]]) -> dict:
    """The plan of ``order`` ((stage, iteration) pairs, as ``jobs.config.schedule`` gives them) as plain data."""
    steps = [STEP_PLANS[name](ctx, *(() if i is None else (i,))) | {"stage": name, "iteration": i} for name, i in order]
    return {"dry_run": True, "storage_root": ctx.storage.root, "iterations": ctx.cfg.iterations.count, "steps": steps}


def _table(ctx: Context, name: str) -> dict:
    df = ctx.storage.read(name)
    return {"version": ctx.storage.version(name), "rows": 0 if df is None else df.count()}


def model_state(path: str) -> dict:
    """Where a model is and whether it is whole; a training run that stopped leaves a checkpoint to resume from."""
    if model_ready(path):
        return {"path": path, "state": "present", "id": model_fingerprint(path)}
    resumable = (checkpoint_dir(path) / CHECKPOINT).is_file()
    return {"path": path, "state": "checkpoint (resumes)" if resumable else "absent"}


def plan_ingest(ctx: Context) -> dict:
    files = list_input_files(ctx.cfg.input.corpus)
    _, done = ingest_ledger(ctx)
    new = [f for f in files if file_id(f, os.stat(f).st_size, os.stat(f).st_mtime_ns) not in done]
    return {"inputs": {"corpus": ctx.cfg.input.corpus, "files": len(files)}, "outputs": {"documents": _table(ctx, "documents")},
            "todo": {"new_or_changed_files": len(new)}}


def plan_segment(ctx: Context) -> dict:
    docs = ctx.storage.read("documents")
    ok = 0 if docs is None else docs.where("status = 'ok'").count()
    todo = 0
    if docs is not None:
        todo = pending(ctx, "segments", docs.where("status = 'ok'").select("doc_id"), "doc_id").count()
    return {"inputs": {"documents_ok": ok}, "outputs": {"segments": _table(ctx, "segments")}, "todo": {"documents": todo}}


def plan_models(ctx: Context) -> dict:
    cfg = ctx.cfg
    roles = {"base": "base", "backward": "M_yx", "seed_model": "M0"}
    states = {name: model_state(cfg.model_path(role)) for role, name in roles.items()}
    todo = [name for role, name in roles.items() if states[name]["state"] != "present" and getattr(cfg.models, role) is None]
    return {"models": states, "todo": {"build": todo}}


def plan_augment(ctx: Context) -> dict:
    cfg = ctx.cfg
    backward = model_state(cfg.model_path("backward"))
    segments = ctx.storage.read("segments")
    ok = 0 if segments is None else segments.where("status = 'ok'").count()
    todo = ok
    if segments is not None and backward["state"] == "present":
        todo = pending(ctx, "candidates", augment_rows(ctx, backward["id"]), "generation_id").count()
    return {"models": {"M_yx": backward}, "inputs": {"segments_ok": ok}, "outputs": {"candidates": _table(ctx, "candidates")},
            "todo": {"generations": todo}}


def plan_curate(ctx: Context, iteration: int) -> dict:
    cfg = ctx.cfg
    judge = model_state(cfg.iteration_model(iteration - 1))
    candidates = ctx.storage.read("candidates")
    pool = 0 if candidates is None else candidates.where("status = 'ok'").count()
    done, todo = 0, pool
    if candidates is not None and judge["state"] == "present":
        _, judge_id = judge_of(cfg, iteration)
        todo = pending(ctx, "scores", score_rows(ctx, iteration, judge_id), "score_id").count()
        done = pool - todo
    return {"models": {f"M{iteration - 1} (judge)": judge}, "inputs": {"candidates_ok": pool},
            "outputs": {"scores": _table(ctx, "scores") | {"rows_of_this_judge": done}}, "todo": {"pairs": todo}}


def plan_train(ctx: Context, iteration: int) -> dict:
    cfg = ctx.cfg
    judge = model_state(cfg.iteration_model(iteration - 1))
    model = model_state(cfg.iteration_model(iteration))
    scores = ctx.storage.read("scores")
    curated = None  # unknown until the judge exists
    if scores is not None and judge["state"] == "present":
        mine = scores.where((F.col("judge_model_id") == judge["id"]) & (F.col("iteration") == iteration))
        curated = mine.where(passing(cfg, iteration)).select("generation_id").distinct().count()
    trained_on, lineage = None, 0
    if model["state"] == "present":
        meta = json.loads((Path(model["path"]) / "training_meta.json").read_text())
        trained_on = meta["provenance"].get("examples_by_source", {}).get("augmented", 0)
        table = ctx.storage.read("curated")
        lineage = 0 if table is None else table.where(F.col("trained_model_id") == model["id"]).count()
    if model["state"] != "present":
        todo = "train"
    elif curated is not None and curated != trained_on:
        todo = f"retrain: A({iteration}) has {curated} pairs now, M{iteration} was trained on {trained_on}"
    else:
        todo = "none: up to date" if curated is not None else f"unknown until M{iteration - 1} exists"
    return {"models": {f"M{iteration - 1} (judge)": judge, f"M{iteration}": model},
            "inputs": {"seed": cfg.input.seed, "rule": cfg.iterations.rule(iteration), "curated_pairs_now": curated},
            "outputs": {"curated": {"rows_of_this_model": lineage}, "augmented_examples_trained_on": trained_on},
            "todo": {"train": todo}}


def plan_calibrate(ctx: Context) -> dict:
    from jobs.calibration import labels_path

    cfg = ctx.cfg
    judges = {f"M{i - 1} (judge of iteration {i})": model_state(cfg.iteration_model(i - 1)) for i in range(1, cfg.iterations.count + 1)}
    path = labels_path(cfg)
    return {"models": judges, "inputs": {"judge_labels": str(path) if path else None},
            "outputs": {"calibration": _table(ctx, "calibration")},
            "todo": {"judges": "none: report.judge_labels is null" if path is None
                     else f"each present judge over {path.name} (rows already present are skipped)"}}


STEP_PLANS = {
    "ingest": plan_ingest,
    "segment": plan_segment,
    "models": plan_models,
    "augment": plan_augment,
    "curate": plan_curate,
    "train": plan_train,
    "calibrate": plan_calibrate,
}


def format_plan(plan: dict) -> str:
    lines = [f"plan (dry run: nothing generated, scored or trained), tables under {plan['storage_root']}"]
    for step in plan["steps"]:
        label = step["stage"] if step["iteration"] is None else f"{step['stage']} [iteration {step['iteration']}]"
        lines.append(f"  {label}")
        for part in ("models", "inputs", "outputs", "todo"):
            if step.get(part):
                lines.append(f"      {part:<8} {json.dumps(step[part], sort_keys=True, default=str)}")
    return "\n".join(lines)
