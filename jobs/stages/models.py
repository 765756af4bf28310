"""models_v1: the base model, M_yx (backward) and M0 (the seed model, the first judge), each built once.

Null paths in ``models`` are built here: the base model (``models.base: smollm2``: the built-in pretrained
SmolLM2-135M-Instruct, converted once from the GGUF its package ships, ``training.pretrained``; null: a tiny
Llama from the corpus's segments and the seed outputs, ``training.bootstrap``), then M_yx on reversed seed pairs
and M0 on seed pairs (``training.train``), each with the recipe that fits the base (``recipe_file``).
Training skips a model already trained on the same data, so re-running costs nothing.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import torch

from jobs.config import BUILTIN_MODELS, PipelineConfig
from jobs.stages.base import Context, StageReport, model_id, model_ready, model_state, require
from training.bootstrap import build_base_model
from training.config import TrainConfig
from training.data import excluded_counts
from training.pretrained import ensure_builtin
from training.recipe import recipe_for
from training.launch import launch
from training.memory import ModelShape, Plan, estimate_memory
from udfs.config import load_config
from udfs.tables import SEGMENTS

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ROLES = {"base": "base", "backward": "M_yx", "seed_model": "M0"}  # config role -> the paper's name


def run(ctx: Context, report: StageReport) -> None:
    cfg = ctx.cfg
    base = cfg.model_path("base")
    # The local base model is built once, from the first corpus, like a downloaded base model: rebuilding it
    # for every corpus drop would change every model id downstream and regenerate the whole pool.
    if cfg.models.base is None and not model_ready(base):
        segments = require(ctx, report, SEGMENTS.name, "segment").where("status = 'ok'")
        texts = [r["text"] for r in segments.select("text").orderBy("segment_id").collect()]
        texts += [json.loads(line)["output"] for line in Path(cfg.input.seed).read_text().splitlines() if line.strip()]
        start = time.monotonic()
        build_base_model(texts, base, cfg.models.bootstrap)
        report.extra["base_seconds"] = round(time.monotonic() - start, 1)
    elif cfg.models.base in BUILTIN_MODELS and not model_ready(base):
        start = time.monotonic()
        ensure_builtin(cfg.models.base, cfg.models_dir)
        report.extra["base_seconds"] = round(time.monotonic() - start, 1)
    for role, direction in (("backward", "backward"), ("seed_model", "forward")):
        if getattr(cfg.models, role) is None:
            recipe = recipe_file(cfg, direction)
            result = fine_tune(cfg, train_config(cfg, recipe, base, cfg.model_path(role)))
            report.extra[role] = {
                "recipe": recipe,
                "steps": result.steps,
                "examples": result.examples,
                "final_loss": result.final_loss,
                "seed_excluded": excluded_counts(result.provenance),
            }
    report.extra["model_ids"] = {role: model_id(cfg.model_path(role), role, "models") for role in ROLES}


def plan(ctx: Context, iteration: int | None = None) -> dict:
    cfg = ctx.cfg
    states = {name: model_state(cfg.model_path(role)) for role, name in ROLES.items()}
    todo = [
        name for role, name in ROLES.items() if states[name]["state"] != "present" and getattr(cfg.models, role) is None
    ]
    memory = {"M_yx": memory_estimate(cfg, "backward"), "M0 (and M1, M2)": memory_estimate(cfg, "forward")}
    return {"models": states, "training_memory": memory, "todo": {"build": todo}}


def fine_tune(cfg: PipelineConfig, train_cfg: TrainConfig):
    """Train one model: on the driver, or in ``models.train_processes`` processes started by TorchDistributor."""
    n = cfg.models.train_processes
    return launch(train_cfg, n, spark=n > 1, local_mode=False, task_gpus=cfg.models.train_task_gpus)


def memory_estimate(cfg: PipelineConfig, direction: str) -> str | None:
    """The training memory estimate of a model of ``direction`` under its recipe (None until the base exists)."""
    base = cfg.model_path("base")
    if not model_ready(base):
        return None
    train_cfg = train_config(cfg, recipe_file(cfg, direction), base, "/dry-run")
    plan = Plan.of(train_cfg, cfg.models.train_processes, bf16=torch.cuda.is_available())
    return estimate_memory(ModelShape.from_dir(base), plan).describe()


def recipe_file(cfg: PipelineConfig, direction: str) -> str:
    """The training recipe of ``direction`` (forward: M0, M1, M2; backward: M_yx): as configured, or the one
    that fits the base model on this driver's device (``training.recipe``)."""
    configured = cfg.models.train_forward if direction == "forward" else cfg.models.train_backward
    if configured is not None:
        return configured
    base = None if cfg.models.base is None else cfg.model_path("base")
    recipe = recipe_for(base, "cuda" if torch.cuda.is_available() else "cpu")  # the driver trains: its device
    return str(PROJECT_ROOT / (recipe.forward if direction == "forward" else recipe.backward))


def train_config(
    cfg: PipelineConfig, recipe: str, base: str, output_dir: str, extra: tuple[str, ...] = ()
) -> TrainConfig:
    """The training recipe ``recipe`` for one model of this pipeline, from ``base`` into ``output_dir``; its
    seed pairs are checked against the evaluation sets segments are (``segment.decontamination``)."""
    evals = [dataclasses.asdict(s) for s in cfg.segment.decontamination]
    overrides = [
        f"base_model={base}",
        f"output_dir={output_dir}",
        f"seed.path={cfg.input.seed}",
        f"seed.decontamination={json.dumps(evals)}",  # JSON is YAML: the override parser reads it as a list
        f"seed.decontamination_ngram={cfg.segment.decontamination_ngram}",
        f"seed.decontamination_min_words={cfg.segment.decontamination_min_words}",
        f"trust_remote_code={cfg.engine.trust_remote_code}",
        *cfg.models.train_overrides,
        *extra,
    ]
    return load_config(TrainConfig, recipe, overrides)
