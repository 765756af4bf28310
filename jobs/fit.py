"""Whether each stage fits the configured GPU, from the models' config.json alone: what ``--dry-run`` prints and
what the job checks before any Spark work, so that a recipe that cannot fit fails on a laptop, not on the cluster.

LLM stages are checked as vLLM engines (``training.memory.serving_memory``: weights per tensor-parallel shard,
one max_model_len sequence of KV cache, activations, CUDA context) against ``gpu_memory_utilization`` of
``cluster.gpu_memory_gib``; the training stages (models: M_yx and M0; train: M_i) with their recipe as
``training.train`` runs it (``training.memory.estimate_memory``) against the whole GPU. A model that is not
there yet is sized by the base model it is fine-tuned from. Pure: no Spark, no weights, no GPU.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from jobs.config import PipelineConfig
from training.config import TrainConfig
from training.data import resolve
from training.memory import DoesNotFit, GiB, ModelShape, Plan, check_fits, serving_memory
from udfs.config import ConfigError, load_config

LLM_MODELS = {
    "augment": "M_yx",
    "curate": "judge M_{i-1}",
    "calibrate": "judges",
    "likelihood": "scorer",
    "rewrite": "rewriter",
}


@dataclass(frozen=True)
class StageFit:
    stage: str
    what: str  # the engine or training run checked
    fits: bool | None  # None: not checked (no GPU memory configured, or no config.json to size the model by)
    detail: str

    def line(self) -> str:
        verdict = {True: "fits", False: "DOES NOT FIT", None: "not checked"}[self.fits]
        return f"  {self.stage:<10} {verdict:<13} {self.what}: {self.detail}"


def stage_fits(cfg: PipelineConfig, stages: list[str]) -> list[StageFit]:
    """One ``StageFit`` per engine or training run of ``stages`` (stage names, each once, in run order)."""
    fits: list[StageFit] = []
    for stage in stages:
        if stage in LLM_MODELS:
            fits.append(engine_fit(cfg, stage))
        elif stage == "models":
            fits += [
                training_fit(cfg, stage, name, direction)
                for role, name, direction in (("backward", "M_yx", "backward"), ("seed_model", "M0", "forward"))
                if getattr(cfg.models, role) is None  # a configured model is not trained here
            ]
        elif stage == "train":
            fits.append(training_fit(cfg, stage, "M_i", "forward"))
    return fits


def engine_fit(cfg: PipelineConfig, stage: str) -> StageFit:
    engine = cfg.stage_engine(stage)
    what = f"vLLM {LLM_MODELS[stage]}, tensor parallel {engine.tensor_parallel_size}"
    if not cfg.cluster.gpu_memory_gib:  # CPU runs: nothing to check, and no model path to work out
        return StageFit(stage, what, None, unchecked(cfg, ""))
    path = {
        "augment": cfg.model_path("backward"),
        "curate": cfg.model_path("seed_model"),
        "calibrate": cfg.model_path("seed_model"),
        "likelihood": cfg.likelihood_model(),
        "rewrite": cfg.rewrite_model(),
    }[stage]
    shape, config, source = model_shape(cfg, path)
    if shape is None:
        return StageFit(stage, what, None, unchecked(cfg, path))
    dtype_bytes = 4 if resolved_dtype(engine.dtype, config) in ("float32", "float") else 2
    estimate = serving_memory(
        shape, dtype_bytes, engine.tensor_parallel_size, engine.max_model_len, engine.max_num_seqs
    )
    budget = engine.gpu_memory_utilization * cfg.cluster.gpu_memory_gib * GiB
    detail = (
        f"{shape.parameters / 1e9:.1f}B ({source}) needs {estimate.describe()} per GPU of "
        f"{engine.gpu_memory_utilization:g} x {cfg.cluster.gpu_memory_gib:g} GiB = {budget / GiB:.1f} GiB"
    )
    if estimate.total > budget:
        detail += (
            f": raise engines.{stage_key(stage)}.tensor_parallel_size (and task_gpus), lower max_model_len, or use "
            "GPUs with more memory"
        )
    return StageFit(stage, what, estimate.total <= budget, detail)


def training_fit(cfg: PipelineConfig, stage: str, name: str, direction: str) -> StageFit:
    if not cfg.cluster.gpu_memory_gib:
        return StageFit(stage, f"training {name}", None, unchecked(cfg, ""))
    base = cfg.model_path("base")
    shape, _, source = model_shape(cfg, base)
    if shape is None:
        return StageFit(stage, f"training {name}", None, unchecked(cfg, base))
    plan = Plan.of(recipe(cfg, direction, base), cfg.models.train_processes, bf16=True)  # planned GPUs have bf16
    what = f"training {name}: {plan.method}, {plan.precision}, {plan.strategy} x {plan.devices}" + (
        ", gradient checkpointing" if plan.gradient_checkpointing else ""
    )
    try:
        estimate = check_fits(shape, plan, cfg.cluster.gpu_memory_gib * GiB)
    except DoesNotFit as exc:
        return StageFit(stage, what, False, f"{exc} (models.train_overrides or the recipe)")
    detail = (
        f"{shape.parameters / 1e9:.1f}B ({source}) needs {estimate.describe()} of {cfg.cluster.gpu_memory_gib:g} GiB"
    )
    return StageFit(stage, what, True, detail)


def recipe(cfg: PipelineConfig, direction: str, base: str) -> TrainConfig:
    """The training recipe of ``direction`` with ``models.train_overrides``, as far as memory goes."""
    configured = cfg.models.train_forward if direction == "forward" else cfg.models.train_backward
    if configured is None:
        from training.recipe import recipe_for  # imports torch; only for a recipe left to be chosen

        chosen = recipe_for(base if cfg.models.base else None, "cuda")
        configured = chosen.forward if direction == "forward" else chosen.backward
    key = "models.train_forward" if direction == "forward" else "models.train_backward"
    try:
        return load_config(TrainConfig, resolve(configured), [f"base_model={base}", *cfg.models.train_overrides])
    except ConfigError as exc:
        raise ConfigError(f"{key} ({configured}): {exc}") from None


def model_shape(cfg: PipelineConfig, path: str) -> tuple[ModelShape | None, dict, str]:
    """The shape of the model at ``path`` from its config.json, else of the base model it is fine-tuned from
    (every model this pipeline builds), with the config and which file it came from."""
    for candidate in (path, cfg.model_path("base")):
        file = Path(candidate) / "config.json"
        if file.is_file():
            config = json.loads(file.read_text())
            return ModelShape.from_config(config), config, Path(candidate).name
    return None, {}, ""


def resolved_dtype(dtype: str, config: dict) -> str:
    """``engine.dtype``; ``auto`` is the checkpoint's own (vLLM serves fp32 checkpoints in fp16 on GPUs)."""
    if dtype != "auto":
        return dtype
    return "float16" if config.get("torch_dtype") in (None, "float32") else config["torch_dtype"]


def unchecked(cfg: PipelineConfig, path: str) -> str:
    if not cfg.cluster.gpu_memory_gib:
        return "cluster.gpu_memory_gib is null (set it to the GPU's memory, e.g. 24 for an A10G, 80 for an H100)"
    return f"no config.json at {path} or at the base model to size it by"


def stage_key(stage: str) -> str:
    return "curate" if stage == "calibrate" else stage


def format_fits(cfg: PipelineConfig, fits: list[StageFit]) -> str:
    gpu = f"{cfg.cluster.gpu_memory_gib:g} GiB" if cfg.cluster.gpu_memory_gib else "unknown"
    lines = [f"GPU memory per stage (cluster.gpu_memory_gib: {gpu}; estimates from config.json, ~20 %)"]
    return "\n".join([*lines, *(fit.line() for fit in fits)])


def refusal(fits: list[StageFit]) -> str | None:
    """The one-line error of a run in which some stage cannot fit, or None."""
    failed = [fit for fit in fits if fit.fits is False]
    if not failed:
        return None
    return "; ".join(f"stage {fit.stage} does not fit: {fit.what}: {fit.detail}" for fit in failed)
