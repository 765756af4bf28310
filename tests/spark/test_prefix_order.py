"""Prefix-aware ordering in Spark: after the LLM stage's repartition, each task hands its rows to the batch
function sorted by the prompt's fields (a sort before the repartition would be scattered by it)."""

from __future__ import annotations

import random

import pandas as pd

from jobs.config import load_pipeline_config
from jobs.stages.base import Context, llm_map
from tests.conftest import ROOT


def test_each_task_sees_its_rows_in_prefix_order(spark):
    cfg = load_pipeline_config(str(ROOT / "conf/tiny.yaml"), ["engine.partitions=2"])
    ctx = Context(spark, None, cfg)
    keys = [(f"instruction {i % 7}", f"text {i}") for i in range(200)]
    random.Random(0).shuffle(keys)
    rows = spark.createDataFrame(keys, "instruction string, text string").repartition(3)

    def tag(batches):
        for batch in batches:
            yield pd.DataFrame({"instruction": batch["instruction"], "text": batch["text"], "n": range(len(batch))})

    out = llm_map(ctx, rows, tag, "instruction string, text string, n long", ["instruction", "text"])
    seen = out.toPandas()
    assert len(seen) == 200
    for _, task in seen.groupby((seen["n"] == 0).cumsum()):  # each run from n == 0 is one task's stream
        assert list(zip(task["instruction"], task["text"])) == sorted(zip(task["instruction"], task["text"]))
