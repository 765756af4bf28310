"""models_v1: the base model, M_yx (backward) and M0 (the seed model, the first judge), each built once.

Null paths in ``models`` are built here: a tiny base Llama from the corpus's segments and the seed outputs
(``training.bootstrap``), then M_yx on reversed seed pairs and M0 on seed pairs (``training.train``).
Training skips a model already trained on the same data, so re-running costs nothing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from jobs.config import PipelineConfig
from jobs.stages.base import Context, StageReport, model_id, model_ready, model_state, require
from training.bootstrap import build_base_model
from training.config import TrainConfig
from training.train import train
from udfs.config import load_config
from udfs.tables import SEGMENTS

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
    for role, recipe in (("backward", cfg.models.train_backward), ("seed_model", cfg.models.train_forward)):
        if getattr(cfg.models, role) is None:
            result = train(train_config(cfg, recipe, base, cfg.model_path(role)))
            report.extra[role] = {"steps": result.steps, "examples": result.examples, "final_loss": result.final_loss}
    report.extra["model_ids"] = {role: model_id(cfg.model_path(role), role, "models") for role in ROLES}


def plan(ctx: Context, iteration: int | None = None) -> dict:
    cfg = ctx.cfg
    states = {name: model_state(cfg.model_path(role)) for role, name in ROLES.items()}
    todo = [
        name for role, name in ROLES.items() if states[name]["state"] != "present" and getattr(cfg.models, role) is None
    ]
    return {"models": states, "todo": {"build": todo}}


def train_config(
    cfg: PipelineConfig, recipe: str, base: str, output_dir: str, extra: tuple[str, ...] = ()
) -> TrainConfig:
    """The training recipe ``recipe`` for one model of this pipeline, from ``base`` into ``output_dir``."""
    overrides = [
        f"base_model={base}",
        f"output_dir={output_dir}",
        f"seed.path={cfg.input.seed}",
        f"trust_remote_code={cfg.engine.trust_remote_code}",
        *cfg.models.train_overrides,
        *extra,
    ]
    return load_config(TrainConfig, recipe, overrides)
