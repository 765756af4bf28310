"""The judge cascade on local Spark with the fake engine: every candidate gets exactly one scores row (judged
or ``cascade_rejected`` with the classifier's probability), a re-run adds none, and a run that crashed after
the sample was judged resumes without judging the sample again and ends where an uninterrupted run ends."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from jobs import cascade
from jobs.config import load_pipeline_config
from jobs.stages import curate
from jobs.stages.base import Context, StageReport
from jobs.storage import Storage
from jobs.summary import curation_summary
from tests.conftest import ROOT
from udfs.tables import CANDIDATES, SCORES, SEGMENTS

pytestmark = pytest.mark.slow

DOCS, PER_DOC = 30, 6
REAL_DOCS = 4  # the real judge rates at most 24 pairs
WORDS = "python list dict sort loop class module import error file string number".split()


def pool_rows(docs: int) -> tuple[list[tuple], list[tuple]]:
    segments, candidates = [], []
    for d in range(docs):
        for s in range(PER_DOC):
            seg = f"seg-{d:02d}-{s}"
            text = " ".join(WORDS[(d * 7 + s * 3 + i) % len(WORDS)] for i in range(40 + 13 * s))
            segments.append({"segment_id": seg, "doc_id": f"doc-{d:02d}", "text": text, "status": "ok"})
            candidates.append(
                {
                    "generation_id": f"gen-{seg}",
                    "segment_id": seg,
                    "instruction": f"How do I use {WORDS[d % 12]}?",
                    "status": "ok",
                }
            )
    return [tuple(r.get(c) for c in SEGMENTS.columns) for r in segments], [
        tuple(r.get(c) for c in CANDIDATES.columns) for r in candidates
    ]


def context(spark, root: Path, judge: Path, *extra: str, docs: int = DOCS) -> Context:
    cfg = load_pipeline_config(
        str(ROOT / "conf/tiny.yaml"),
        [
            f"storage.root={root}",
            f"models.seed_model={judge}",
            "engine.name=fake",
            "engine.commit_rows=50",
            "iterations.score_column=score",
            "iterations.min_score=4",
            "curate.cascade.enabled=true",
            "curate.cascade.sample_fraction=0.4",
            "curate.cascade.recall_target=0.6",  # random fake labels: a low target so that some pairs are ruled out
            "curate.cascade.min_sample_kept=5",
            "curate.cascade.num_features=1024",
            *extra,
        ],
    )
    storage = Storage(spark, str(root), "delta-rs")
    segments, candidates = pool_rows(docs)
    if storage.read(SEGMENTS.name) is None:
        storage.append(SEGMENTS.name, spark.createDataFrame(segments, SEGMENTS.schema))
        storage.append(CANDIDATES.name, spark.createDataFrame(candidates, CANDIDATES.schema))
    return Context(spark, storage, cfg)


@pytest.fixture(scope="module")
def judge(tmp_path_factory) -> Path:
    # A fixed name: the judge's id (and so every score id and seed) has the folder's name in it, and a numbered
    # temp folder (m00, m01, ...) would make which pairs the fake judge rejects depend on the tests run before.
    path = tmp_path_factory.mktemp("cascade") / "m0"
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "fake"}))  # the fake engine loads nothing
    return path


def scores(ctx: Context) -> pd.DataFrame:
    return ctx.storage.read(SCORES.name).toPandas()


def run_curate(ctx: Context) -> StageReport:
    report = StageReport("curate", 1)
    curate.run(ctx, report)
    return report


def test_every_candidate_gets_one_row_and_a_rerun_adds_none(spark, judge, tmp_path):
    ctx = context(spark, tmp_path / "tables", judge)
    report = run_curate(ctx)
    rows = scores(ctx)
    assert len(rows) == DOCS * PER_DOC and rows["generation_id"].is_unique
    figures = report.extra["cascade"]
    assert figures["routing"] == "on" and figures["sample_recall"] >= 0.6
    rejected = rows[rows["reason"] == cascade.REJECTED]
    assert len(rejected) > 0 and (rejected["status"] == "dropped").all()
    assert rejected["cascade_probability"].between(0, 1).all()
    assert (rejected["cascade_probability"] < figures["threshold"]).all()
    assert rejected["raw_text"].isna().all() and rejected["judge_model_id"].notna().all()
    judged = rows[rows["reason"] != cascade.REJECTED]
    assert len(judged) == DOCS * PER_DOC - len(rejected)
    # the routed pairs carry their probability too; the sample was judged before any classifier existed
    routed = judged[judged["cascade_probability"].notna()]
    assert len(routed) > 0 and (routed["cascade_probability"] >= figures["threshold"]).all()
    assert len(judged) - len(routed) == figures["sample"]
    # the sample is stratified: every document gives floor or ceil of 40 % of its 6 pairs
    docs = judged[judged["cascade_probability"].isna()]["segment_id"].str[4:6].value_counts()
    assert set(docs) <= {2, 3} and len(docs) == DOCS
    summary = curation_summary(ctx, 1)
    assert summary["cascade_rejected"] == len(rejected) and summary["pairs"] == DOCS * PER_DOC

    version = ctx.storage.version(SCORES.name)
    again = run_curate(ctx)
    assert ctx.storage.version(SCORES.name) == version and again.rows_written == 0


def test_a_crash_after_the_sample_resumes_without_judging_it_again(spark, judge, tmp_path, monkeypatch):
    clean = context(spark, tmp_path / "clean", judge)
    run_curate(clean)
    ctx = context(spark, tmp_path / "crashed", judge)

    def crash(*args, **kwargs):
        raise RuntimeError("killed after the sample")

    with monkeypatch.context() as patch:
        patch.setattr(cascade, "cross_fit", crash)
        with pytest.raises(RuntimeError, match="killed"):
            run_curate(ctx)
    sample = scores(ctx)
    assert 0 < len(sample) < DOCS * PER_DOC
    resumed = run_curate(ctx)
    rows = scores(ctx)
    assert len(rows) == DOCS * PER_DOC and rows["score_id"].is_unique
    assert resumed.rows_written == DOCS * PER_DOC - len(sample)  # no sample pair judged twice
    columns = ["score_id", "status", "reason", "score"]
    ended = rows[columns].sort_values("score_id").reset_index(drop=True)
    expected = scores(clean)[columns].sort_values("score_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(ended, expected)


def test_a_sample_with_too_few_kept_pairs_sends_every_pair_to_the_judge(spark, judge, tmp_path):
    ctx = context(spark, tmp_path / "tables", judge, "curate.cascade.min_sample_kept=1000")
    report = run_curate(ctx)
    rows = scores(ctx)
    assert report.extra["cascade"]["routing"].startswith("off")
    assert len(rows) == DOCS * PER_DOC and not (rows["reason"] == cascade.REJECTED).any()


def test_the_real_judge_labels_the_sample_and_the_cascade_routes_the_rest(spark, smollm2, tmp_path, monkeypatch):
    """SmolLM2-135M-Instruct through vLLM: the sample is judged (then the run stops), k is set to the sample's
    median expected score so that the judge keeps some pairs and drops others, and the resumed run trains the
    classifier on those labels, rules pairs out and judges the rest, without judging the sample again."""
    real = [
        f"models.seed_model={smollm2}",
        "engine.name=vllm",
        "engine.dtype=bfloat16",
        "engine.max_model_len=1024",
        "engine.kv_cache_memory_bytes=67108864",
        "engine.batch_size=16",
        "curate.sampling.max_tokens=8",
        "iterations.score_column=expected_score",
        "curate.cascade.sample_fraction=0.5",
        "curate.cascade.min_sample_kept=3",
    ]
    ctx = context(spark, tmp_path / "tables", smollm2, *real, "iterations.min_score=1", docs=REAL_DOCS)
    with monkeypatch.context() as patch:
        # stop right after the sample is judged, before any rule decides what the sample kept
        patch.setattr(cascade, "sample_labels", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("stop")))
        with pytest.raises(RuntimeError, match="stop"):
            run_curate(ctx)
    sample = scores(ctx)
    assert sample["expected_score"].notna().mean() >= 0.9  # the real judge rates its pairs
    median = float(sample["expected_score"].median())
    ctx = context(spark, tmp_path / "tables", smollm2, *real, f"iterations.min_score={median}", docs=REAL_DOCS)
    report = run_curate(ctx)
    rows = scores(ctx)
    assert len(rows) == REAL_DOCS * PER_DOC and rows["generation_id"].is_unique
    assert report.rows_written == REAL_DOCS * PER_DOC - len(sample)
    assert report.extra["cascade"]["routing"] == "on"
    assert rows[rows["reason"] == cascade.REJECTED]["cascade_probability"].notna().all()
    judged = rows[rows["status"] == "ok"]
    assert judged["expected_score"].notna().mean() >= 0.9 and len(judged) >= len(sample)
