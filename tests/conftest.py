"""Shared fixtures: one local Spark session (UI off, few shuffle partitions) for the whole test run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_WARC = ROOT / "data/sample/python-docs-sample.warc.gz"
SAMPLE_SEED = ROOT / "data/sample/seed.jsonl"

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # Spark's Python workers use this interpreter


@pytest.fixture(scope="session")
def spark():
    from jobs.config import SparkConfig
    from jobs.session import get_session

    session = get_session(SparkConfig(master="local[2]", app_name="tests", conf={"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2"}))
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A tiny base model (tokenizer + Llama) built from the sample seed set: seconds on 2 cores."""
    import json

    from training.bootstrap import BaseModelConfig, build_base_model

    texts = [json.loads(line)["output"] for line in SAMPLE_SEED.read_text().splitlines()]
    cfg = BaseModelConfig(hidden_size=128, num_heads=2, intermediate_size=256, num_layers=2, steps=10, warmup_steps=2)
    return build_base_model(texts, str(tmp_path_factory.mktemp("models") / "base"), cfg)
