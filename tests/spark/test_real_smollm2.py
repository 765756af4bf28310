"""The job end to end on the real SmolLM2-135M-Instruct through vLLM, run once for the module: its tokenizer,
chat template and weights as base of M_yx and M0 (the embedded default's LoRA recipe), augment, curate,
calibrate and rewrite on two sample pages, every judged pair curated (k = 1).

What is under test is the prompts, the markers and the parsing with a real tokenizer and model, which the tiny
model of the mechanics tests cannot show. Instructions and rewrites are decoded greedily, so that whether they
end does not follow the seeds. Whether a rewrite of M_yx's instructions ends still follows those instructions
(and vLLM's batching): here every row must be what the parser reads of the real model's text; that the real
model's rewrites end and parse is tested on fixed pairs in tests/training/test_smollm2_vllm.py. The tokenizer
families without a real model are in tests/spark/test_real_tokenizers.py.
"""

from __future__ import annotations

import contextlib
import io
import json

import pytest
from deltalake import DeltaTable

from jobs.augment import main
from tests.conftest import ROOT, sample_pages, write_warc
from udfs.ids import model_fingerprint
from udfs.rewrite import parse_answer

pytestmark = pytest.mark.slow

PAGES = ("tutorial/appetite.html", "library/colorsys.html")
STAGES = "ingest,segment,models,augment,curate,calibrate,rewrite"


@pytest.fixture(scope="module")
def run(spark, smollm2, tmp_path_factory):
    root = tmp_path_factory.mktemp("real-smollm2")
    warc = write_warc(root / "crawl.warc.gz", sample_pages(PAGES))
    labels = root / "labels.jsonl"
    labels.write_text("".join((ROOT / "data/sample/judge_labels.jsonl").read_text().splitlines(keepends=True)[:8]))
    args = ["--config", str(ROOT / "conf/local.yaml"), "--stages", STAGES]
    for item in [
        f"input.corpus={warc}",
        f"storage.root={root}/tables",
        f"models.dir={root}/models",
        f"models.base={smollm2}",
        # M_yx and M0 by the embedded default's LoRA recipe (its 6 steps): M_yx trained for 2 steps cut every
        # instruction of these pages at the token limit, which left nothing to curate or rewrite
        "models.train_overrides=[tracking.enabled=false]",
        "augment.sampling.max_tokens=64",
        "augment.sampling.temperature=0.0",
        "curate.sampling.max_tokens=8",
        "engine.max_model_len=1536",
        "engine.kv_cache_memory_bytes=268435456",
        # greedy at the demo's 512 tokens with a light repetition penalty, so that answers can end: sampled at
        # 256 tokens without the penalty SmolLM2 looped to the limit on most pairs
        "rewrite.sampling.temperature=0.0",
        "rewrite.sampling.repetition_penalty=1.1",
        # the 135M model's answers rarely copy the segment (faithfulness near 0 on the demo), so the gate is
        # opened; the gate itself is tested in tests/unit/test_rewrite.py
        "rewrite.min_faithfulness=0.0",
        "likelihood.enabled=false",  # calibrate's likelihoods on SmolLM2: tests/training/test_smollm2_vllm.py
        "iterations.count=1",
        "iterations.min_score=1.0",
        f"report.judge_labels={labels}",
        "report.after_run=false",
    ]:
        args += ["--set", item]
    with contextlib.redirect_stdout(io.StringIO()):
        summary = main(args)
    return root, summary


def table(root, name: str):
    return DeltaTable(str(root / "tables" / name)).to_pandas()


def test_a_real_base_gets_the_lora_recipe_and_its_backward_model_writes_instructions_that_end(run):
    root, _ = run
    for model in ("myx", "m0"):
        meta = json.loads((root / "models" / model / "training_meta.json").read_text())
        assert meta["config"]["lora"]["enabled"], model  # a real (non-bootstrap) base on CPU: the LoRA recipe
    candidates = table(root, "candidates")
    assert len(candidates) > 0 and set(candidates["status"]) <= {"ok", "dropped"}
    assert (candidates["status"] == "ok").sum() > 0, candidates["reason"].value_counts()
    ok = candidates[candidates["status"] == "ok"]
    assert ok["instruction"].str.strip().str.len().gt(0).all() and set(ok["finish_reason"]) == {"stop"}


def test_the_judge_gives_an_expected_score_to_the_pairs_it_rates(run):
    root, _ = run
    ok = table(root, "candidates").query("status == 'ok'")
    scores = table(root, "scores")
    assert sorted(scores["generation_id"]) == sorted(ok["generation_id"])  # every ok pair judged once
    for name in ("scores", "calibration"):  # curate, and calibrate on the held-out labels
        judged = table(root, name).query("status == 'ok'")
        assert len(judged) > 0, name
        assert judged["expected_score"].notna().mean() >= 0.9, (name, judged["expected_score_failure"].value_counts())
        assert judged["expected_score"].dropna().between(1, 5).all()


def test_the_real_model_writes_a_parsed_rewrite_of_each_curated_pair(run, smollm2):
    root, _ = run
    rewrites = table(root, "rewrites")
    scores = table(root, "scores")
    curated = scores[(scores["status"] == "ok") & (scores["expected_score"] >= 1.0)]
    assert len(rewrites) > 0 and sorted(rewrites["generation_id"]) == sorted(curated["generation_id"])
    assert set(rewrites["model_id"]) == {model_fingerprint(str(smollm2))}
    assert set(rewrites["finish_reason"]) <= {"stop", "length"} and (rewrites["output_tokens"] > 0).all()
    for row in rewrites.itertuples():  # each row is what the parser reads of the model's own text
        parsed = parse_answer(row.raw_text, row.finish_reason)
        assert (row.answer, row.answer_end) == (parsed.answer, parsed.end)
        assert row.reason == parsed.failure or (parsed.failure is None and row.reason in {None, "unfaithful_rewrite"})
    measured = rewrites[rewrites["faithfulness"].notna()]
    assert measured["faithfulness"].between(0, 1).all() and measured["answer"].str.strip().str.len().gt(0).all()
    assert set(measured["answer_end"]) <= {"marker", "eos"}
    assert (rewrites["prompt_tokens"] > 0).all() and (rewrites["reason"] != "prompt_too_long").all()
