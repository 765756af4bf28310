"""GPU smoke test: what only a CUDA machine can show, in under 10 minutes on one GPU.

    pytest tests/gpu        # or: make test-gpu (skipped without CUDA; see conftest.py for the model)

1. The engine on CUDA with the task's GPU: a real Spark scheduler (local-cluster, one worker offering GPU 0)
   runs the augment stage's batch function under the LLM stages' stage-level GPU profile; the task gets the
   GPU, its Python worker's vLLM engine runs on it (CUDA_VISIBLE_DEVICES from the task's resources).
2. A judge batch with expected scores: every row scored, and vLLM's rating probabilities on CUDA agree with
   the same model's in transformers (fp32) at the same positions.
3. A bf16 training step: the paper's recipe on the GPU under bf16 autocast, finite losses, a saved model.
4. The job end to end on the sample (ingest .. calibrate, two iterations) with the model directory as base.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import ROOT, SAMPLE_SEED

pytestmark = pytest.mark.slow

LABELS = ROOT / "data/sample/judge_labels.jsonl"


def row_id(kind: str, i: int) -> str:
    """A hex row id like udfs.ids makes (the per-row sampling seed is read from it)."""
    return hashlib.sha256(f"{kind}{i}".encode()).hexdigest()[:32]


def pairs(n: int) -> list[dict]:
    """``n`` short (instruction, answer) pairs of the sample's judge labels, good and bad alike."""
    rows = [json.loads(line) for line in LABELS.read_text().splitlines()]
    return sorted(rows, key=lambda r: len(r["output"]))[:n]


def test_the_engine_runs_on_the_gpu_spark_gave_the_task(model_dir, engine_cfg, tmp_path, monkeypatch):
    import pandas as pd
    from pyspark.sql import SparkSession

    from jobs.stages.base import gpu_profile, llm_map
    from udfs import spark_udfs
    from udfs.engine import SamplingConfig
    from udfs.ids import model_fingerprint
    from udfs.prompts import PromptTemplate
    from udfs.tables import CANDIDATES

    discover = tmp_path / "gpus.sh"  # the worker offers GPU 0 (Spark's getGpusResources.sh asks nvidia-smi)
    discover.write_text('#!/bin/sh\necho \'{"name": "gpu", "addresses": ["0"]}\'\n')
    discover.chmod(discover.stat().st_mode | stat.S_IEXEC)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # the task's resources must decide
    import pyspark

    monkeypatch.setenv("SPARK_HOME", os.environ.get("SPARK_HOME", str(Path(pyspark.__file__).parent)))
    spark = (
        SparkSession.builder.master("local-cluster[1,2,4096]")  # a standalone worker: stage-level profiles work
        .config("spark.ui.enabled", "false")
        .config("spark.worker.resource.gpu.amount", "1")
        .config("spark.worker.resource.gpu.discoveryScript", str(discover))
        .config("spark.executor.resource.gpu.amount", "1")
        .config("spark.executor.resource.gpu.discoveryScript", str(discover))
        .config("spark.executorEnv.PYTHONPATH", str(ROOT))
        .config("spark.executorEnv.VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        .getOrCreate()
    )
    try:
        assert gpu_profile(spark, 1) is not None  # applied here, not the local-mode fallback
        augment = spark_udfs.backtranslate(
            model_dir,
            model_fingerprint(model_dir),
            engine_cfg,
            SamplingConfig(temperature=0.7, top_p=0.9, max_tokens=48),
            PromptTemplate.load("conf/prompts/backtranslate_v1.txt"),
            max_instruction_chars=2000,
        )

        def with_gpu_facts(batches):
            import os

            import torch
            from pyspark import TaskContext

            for out in augment(batches):
                gpus = TaskContext.get().resources().get("gpu")
                yield out.assign(
                    task_gpus=",".join(gpus.addresses) if gpus else "",
                    visible=os.environ.get("CUDA_VISIBLE_DEVICES", ""),
                    cuda_bytes=torch.cuda.memory_allocated(),  # the engine runs in this process
                )

        rows = [(row_id("g", i), row_id("s", i), p["output"]) for i, p in enumerate(pairs(4))]
        todo = spark.createDataFrame(pd.DataFrame(rows, columns=["generation_id", "segment_id", "text"]))
        ctx = SimpleNamespace(spark=spark, cfg=SimpleNamespace(engine=SimpleNamespace(partitions=1, task_gpus=1)))
        schema = f"{CANDIDATES.schema}, task_gpus string, visible string, cuda_bytes long"
        out = llm_map(ctx, todo, with_gpu_facts, schema).toPandas()
    finally:
        spark.stop()
    assert len(out) == 4 and set(out["status"]) <= {"ok", "dropped"} and (out["status"] == "ok").any()
    assert set(out["task_gpus"]) == {"0"} and set(out["visible"]) == {"0"}
    assert (out["cuda_bytes"] > 0).all()
    assert (out["output_tokens"] > 0).all()


def hf_rating_distribution(model, engine, prompt: str) -> dict[int, float]:
    """The ratings' probabilities after ``prompt`` from transformers (fp32), read at the tokens vLLM is asked
    for (``udfs.engine.continuation_paths``), normalised over the ratings as ``expected_score`` does."""
    import torch

    from udfs.curation import SCORE_CONTINUATIONS
    from udfs.engine import continuation_paths

    root, paths = continuation_paths(engine.encode, prompt, list(SCORE_CONTINUATIONS))
    logprobs = {}
    for text, path in paths.items():
        ids = torch.tensor([root + list(path)], device=model.device)
        with torch.no_grad():
            logits = model(ids).logits[0].float().log_softmax(-1)
        logprobs[text] = sum(float(logits[len(root) - 1 + d, t]) for d, t in enumerate(path))
    return distribution(logprobs)


def distribution(logprobs: dict[str, float]) -> dict[int, float]:
    from udfs.curation import SCORE_CONTINUATIONS

    mass: dict[int, float] = {}
    for text, lp in logprobs.items():
        mass[SCORE_CONTINUATIONS[text]] = mass.get(SCORE_CONTINUATIONS[text], 0.0) + math.exp(lp)
    total = sum(mass.values())
    return {rating: p / total for rating, p in mass.items()}


def test_a_judge_batch_has_expected_scores_that_match_transformers(model_dir, engine_cfg):
    import pandas as pd
    import torch
    from transformers import AutoModelForCausalLM

    from udfs.curation import SCORE_CONTINUATIONS, judge_conversation, score_prompt_suffix
    from udfs.engine import SamplingConfig, drop_engine, get_engine
    from udfs.llm_rows import judge_batch
    from udfs.prompts import PromptTemplate

    template = PromptTemplate.load("conf/prompts/score_v1.txt")
    labelled = pairs(8)
    batch = pd.DataFrame(
        {
            "score_id": [row_id("sc", i) for i in range(len(labelled))],
            "generation_id": [row_id("g", i) for i in range(len(labelled))],
            "segment_id": [row_id("s", i) for i in range(len(labelled))],
            "instruction": [p["instruction"] for p in labelled],
            "text": [p["output"] for p in labelled],
        }
    )
    engine = get_engine(model_dir, engine_cfg)
    try:
        rows = judge_batch(
            engine, batch, "judge", template, SamplingConfig(temperature=0.0, top_p=1.0, max_tokens=128), engine_cfg
        )
        assert list(rows["status"]) == ["ok"] * len(labelled) and rows["expected_score_failure"].isna().all()
        assert rows["expected_score"].between(1, 5).all() and (rows["output_tokens"] > 0).all()
        prompts = [
            engine.render_chat(judge_conversation(template, p["instruction"], p["output"])) + score_prompt_suffix(text)
            for p, text in zip(labelled, rows["raw_text"])
        ]
        vllm_dists = [
            distribution({t: lp for t, lp in lps.items() if math.isfinite(lp)})
            for lps in engine.continuation_logprobs(prompts, list(SCORE_CONTINUATIONS))
        ]
    finally:
        drop_engine()
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).to("cuda").eval()
    for prompt, expected, vllm_dist in zip(prompts, rows["expected_score"], vllm_dists):
        hf = hf_rating_distribution(model, engine, prompt)
        assert abs(sum(r * p for r, p in vllm_dist.items()) - expected) < 1e-6  # the row is what vLLM said
        # bf16 serving vs fp32 reference: the same ratings' mass, within rounding (total variation)
        assert 0.5 * sum(abs(hf.get(r, 0) - vllm_dist.get(r, 0)) for r in range(1, 6)) < 0.1, (hf, vllm_dist)
        assert abs(sum(r * p for r, p in hf.items()) - expected) < 0.25


def test_a_bf16_training_step_on_the_gpu(model_dir, tmp_path):
    import torch

    from training.config import TrainConfig
    from training.train import train
    from udfs.config import load_config

    cfg = load_config(
        TrainConfig,
        "conf/train/forward.yaml",  # the paper's recipe, what a GPU run trains with
        [
            f"base_model={model_dir}",
            f"output_dir={tmp_path / 'm0'}",
            f"seed.path={SAMPLE_SEED}",
            "optim.max_steps=3",
            "optim.epochs=null",
            "optim.max_seq_len=256",
            "optim.checkpoint_every=0",
            "optim.precision=bf16",
            "tracking.enabled=false",
        ],
    )
    torch.cuda.reset_peak_memory_stats()
    result = train(cfg)
    meta = json.loads((Path(result.output_dir) / "training_meta.json").read_text())
    assert meta["precision"] == "bf16" and meta["steps"] == 3 and meta["world_size"] == 1
    assert all(math.isfinite(loss) for loss in meta["losses"]) and len(meta["losses"]) == 3
    assert torch.cuda.max_memory_allocated() > 0  # the step ran on the GPU
    assert (Path(result.output_dir) / "config.json").is_file()


def test_the_job_end_to_end_on_the_sample(model_dir, tmp_path):
    from deltalake import DeltaTable

    from jobs.augment import main
    from tests.gpu.conftest import gpu_memory

    root, models = tmp_path / "tables", tmp_path / "models"
    main(
        [
            "--config",
            "conf/local.yaml",
            *("--set", f"storage.root={root}"),
            *("--set", f"models.dir={models}"),
            *("--set", f"models.base={model_dir}"),
            *("--set", f"engine.gpu_memory_utilization={gpu_memory()}"),
            *("--set", "engine.kv_cache_memory_bytes=null"),  # on a GPU vLLM sizes its cache itself
            *("--set", "models.train_overrides=[optim.max_steps=10, optim.max_seq_len=512, tracking.enabled=false]"),
            *("--set", "iterations.count=2"),
        ]
    )
    tables = {name: DeltaTable(str(root / name)).to_pandas() for name in ("segments", "candidates", "scores", "runs")}
    ok_segments = (tables["segments"]["status"] == "ok").sum()
    assert ok_segments > 0 and len(tables["candidates"]) == ok_segments  # one candidate per kept segment
    assert (tables["candidates"]["status"] == "ok").sum() > 0
    scores = tables["scores"]
    assert set(scores["iteration"]) == {1, 2} and scores["expected_score"].notna().any()
    for name in ("myx", "m0", "m1", "m2"):
        meta = json.loads((models / name / "training_meta.json").read_text())
        assert meta["precision"] == "bf16", name  # recipe auto: bf16 autocast on the GPU
    assert len(tables["runs"]) >= 1
