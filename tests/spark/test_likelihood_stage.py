"""The likelihood stage on conf/tiny.yaml (fake engine: mechanics, not model quality): one row per ok candidate,
chunk-committed, resumed after lost chunks with the same values, nothing redone on a re-run; and the ifd rule
selecting the training set (training.data, at pinned versions) and the plan's curated count alike."""

from __future__ import annotations

import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from jobs.augment import main
from jobs.config import load_pipeline_config
from jobs.stages import Context
from jobs.stages import train as train_stage
from jobs.storage import Storage
from tests.conftest import ROOT, sample_pages, write_warc
from training.config import AugmentedData
from jobs.report import RunTables, signals
from training.data import read_curated
from udfs.calibration import read_labels

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pool(spark, tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("likelihood")
    warc = write_warc(root / "crawl.warc.gz", sample_pages())
    sets = {
        "input.corpus": warc,
        "storage.root": f"{root}/tables",
        "models.backward": tiny_model,
        "models.seed_model": tiny_model,
        "engine.name": "fake",
        "engine.commit_rows": 3,
        "likelihood.enabled": "true",
        "likelihood.model": tiny_model,
        "iterations.score_column": "ifd",
        "iterations.min_score": 0.9,
        "report.after_run": "false",
    }
    args = ["--config", str(ROOT / "conf/tiny.yaml")]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    main([*args, "--stages", "ingest,segment,augment,likelihood"])
    return root, args


def test_one_row_per_ok_candidate_resumed_without_loss_or_change(pool, spark):
    root, args = pool
    table = str(root / "tables/likelihoods")
    candidates = DeltaTable(str(root / "tables/candidates")).to_pandas()
    first = DeltaTable(table).to_pandas().set_index("generation_id").sort_index()
    ok = set(candidates.loc[candidates["status"] == "ok", "generation_id"])
    assert len(ok) >= 6 and set(first.index) == ok and first["likelihood_id"].is_unique
    assert set(first["status"]) == {"ok"} and set(first["source"]) == {"pool"}
    assert (first["ifd"] - first["conditional_loss"] / first["answer_loss"]).abs().max() < 1e-12
    # Chunks of 3 rows are hash buckets of the key (jobs.stages.base.append_in_chunks): one commit per bucket
    # that holds a row, and a bucket may hold none.
    chunks = -(-len(ok) // 3)
    keys = spark.createDataFrame([(g,) for g in ok], "generation_id string")
    buckets = keys.select(F.pmod(F.xxhash64("generation_id"), F.lit(chunks))).distinct().count()
    assert len(DeltaTable(table).history()) == buckets > 1

    lost = sorted(first.index)[: len(first) // 2]  # as if the job died before committing these chunks
    DeltaTable(table).delete("generation_id in (" + ", ".join(f"'{g}'" for g in lost) + ")")
    summary = main([*args, "--stages", "likelihood"])
    assert summary["stages"][0]["rows_written"] == len(lost)
    again = DeltaTable(table).to_pandas().set_index("generation_id").sort_index()
    cols = ["likelihood_id", "ifd", "conditional_loss", "answer_loss", "answer_tokens"]
    assert again[cols].equals(first[cols])

    summary = main([*args, "--stages", "likelihood"])
    assert summary["stages"][0]["rows_written"] == 0


def test_the_ifd_rule_selects_the_same_pairs_in_training_and_in_the_plan(pool, spark):
    root, args = pool
    main([*args, "--stages", "curate", "--iterations", "1"])
    tables = {t: str(root / "tables" / t) for t in ("segments", "candidates", "scores", "likelihoods")}
    likelihoods = DeltaTable(tables["likelihoods"]).to_pandas()
    k = float(likelihoods["ifd"].sort_values().iloc[len(likelihoods) // 2])  # the fake's IFDs: keep about half
    overrides = [a if not a.startswith("iterations.min_score=") else f"iterations.min_score={k}" for a in args[3::2]]
    cfg = load_pipeline_config(str(ROOT / "conf/tiny.yaml"), overrides)
    ctx = Context(spark, Storage(spark, cfg.storage.root, cfg.storage.engine), cfg)
    step = train_stage.plan(ctx, 1)
    assert step["inputs"]["rule"] == f"ifd <= {k}"

    scorer = likelihoods["scorer_model_id"].iloc[0]
    aug = AugmentedData(
        **{f"{t}_table": p for t, p in tables.items()},
        score_column="ifd",
        min_score=k,
        likelihood_scorer_id=scorer,
    )
    examples, read, _ = read_curated(aug)
    scores = DeltaTable(tables["scores"]).to_pandas()
    judged = set(scores.loc[scores["status"] == "ok", "generation_id"])
    want = likelihoods[(likelihoods["ifd"] <= k) & likelihoods["generation_id"].isin(judged)]
    assert 0 < len(want) < len(likelihoods)  # the rule keeps some pairs, not all
    assert len(examples) == len(want) == step["inputs"]["curated_pairs_now"]
    assert read["likelihoods"]["version"] == DeltaTable(tables["likelihoods"]).version()

    wrong_scorer = AugmentedData(**{**aug.__dict__, "likelihood_scorer_id": "another-model"})
    assert read_curated(wrong_scorer)[0] == []  # only the configured scorer's rows count


def test_calibrate_scores_the_labels_and_the_report_sets_ifd_beside_the_judge(pool, spark):
    root, args = pool
    main([*args, "--stages", "calibrate"])
    likelihoods = DeltaTable(str(root / "tables/likelihoods")).to_pandas()
    labels = likelihoods[likelihoods["source"] == "labels"]
    n_labels = len(read_labels(ROOT / "data/sample/judge_labels.jsonl"))
    assert len(labels) == n_labels and (labels["generation_id"] == labels["segment_id"]).all()
    cfg = load_pipeline_config(str(ROOT / "conf/tiny.yaml"), args[3::2])
    ctx = Context(spark, Storage(spark, cfg.storage.root, cfg.storage.engine), cfg)
    found = {s.signal.split(" (")[0]: s for s in signals(ctx, RunTables(ctx, None))}
    assert {"judge M0 expected_score", "judge M0 score", "-ifd", "-conditional_loss", "length", "random"} <= set(found)
    assert found["-ifd"].rated == n_labels and 0 <= found["-ifd"].auc <= 1
