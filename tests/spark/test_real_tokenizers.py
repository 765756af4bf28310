"""The job end to end on a base model of each tokenizer family without a real model (tests/tokenizer_families.py):
a SentencePiece-style tokenizer with no pad token whose chat template writes BOS, and a base tokenizer with no
chat template. ``--set models.base=<dir>`` alone must run models, augment, curate and calibrate without an
error, and the judge must give an expected score to >= 90 % of the pairs it rates.

Both are random-weight models (their tokenizers are what is under test), which never end an instruction before
max_tokens, so their candidates are all dropped as ``instruction_truncated`` and their judge is exercised by the
calibrate stage, through the same Spark batch function as curate. The recipe the job picks for a real base on
CPU (LoRA) runs two steps. Ingest and segment run once and are copied. SmolLM2's family, the real
SmolLM2-135M-Instruct, runs the whole job in tests/spark/test_real_smollm2.py.
"""

from __future__ import annotations

import json
import shutil

import pytest
from deltalake import DeltaTable

from jobs.augment import main
from tests.conftest import ROOT, SAMPLE_SEED, sample_pages, write_warc
from tests.tokenizer_families import FAMILIES, build_tiny_model

pytestmark = pytest.mark.slow

PAGES = ("tutorial/appetite.html", "library/colorsys.html")
SETTINGS = [
    "models.train_overrides=[optim.max_steps=2, tracking.enabled=false]",
    "augment.sampling.max_tokens=16",
    "curate.sampling.max_tokens=24",
    "engine.max_model_len=1024",
    "engine.kv_cache_memory_bytes=67108864",
    "engine.batch_size=16",
    "iterations.count=1",
    "report.after_run=false",
]


def job(root, inputs, stages: str, *extra: str) -> dict:
    warc, seed = inputs
    args = ["--config", str(ROOT / "conf/tiny.yaml"), "--stages", stages]
    for item in [
        f"input.corpus={warc}",
        f"input.seed={seed}",
        f"storage.root={root}/tables",
        f"models.dir={root}/models",
        *SETTINGS,
        *extra,
    ]:
        args += ["--set", item]
    return main(args)


@pytest.fixture(scope="module")
def segmented(tmp_path_factory):
    root = tmp_path_factory.mktemp("segmented")
    warc = write_warc(root / "crawl.warc.gz", sample_pages(PAGES))
    seed = root / "seed.jsonl"
    seed.write_text("".join(SAMPLE_SEED.read_text().splitlines(keepends=True)[:16]))
    job(root, (warc, seed), "ingest,segment")
    return root, (warc, seed)


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "smollm2"])
def test_the_job_runs_on_every_tokenizer_family_and_the_judge_scores_its_pairs(segmented, tmp_path, family):
    source, inputs = segmented
    shutil.copytree(source / "tables", tmp_path / "tables")
    base = build_tiny_model(family, tmp_path / "base")
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join((ROOT / "data/sample/judge_labels.jsonl").read_text().splitlines(keepends=True)[:8]))
    job(
        tmp_path,
        inputs,
        "models,augment,curate,calibrate",
        f"models.base={base}",
        f"report.judge_labels={labels}",
    )

    meta = json.loads((tmp_path / "models/m0/training_meta.json").read_text())
    assert meta["config"]["lora"]["enabled"]  # a real (non-bootstrap) base on CPU gets the LoRA recipe
    candidates = DeltaTable(str(tmp_path / "tables/candidates")).to_pandas()
    assert len(candidates) > 0 and set(candidates["status"]) <= {"ok", "dropped"}
    ok = int((candidates["status"] == "ok").sum())
    scores = DeltaTable(str(tmp_path / "tables/scores")).to_pandas()
    assert len(scores) == ok  # every ok pair judged once
    for name in ("scores", "calibration"):
        rows = DeltaTable(str(tmp_path / "tables" / name)).to_pandas()
        judged = rows[rows["status"] == "ok"]
        if name == "scores" and not ok:
            continue
        assert len(judged) > 0, name
        assert judged["expected_score"].notna().mean() >= 0.9, (name, judged["expected_score_failure"].value_counts())
        assert judged["expected_score"].dropna().between(1, 5).all()
