"""The self-training loop as an operable job: the dry-run plan, a stage asked for before its judge exists,
stopping after iteration 1 and resuming, a new corpus drop that goes through every stage for its new
documents only, and a credential passed on the command line that reaches no log, table or model file.

The tiny session model is the base model and stands in for M0 (no bootstrap, no M0 training); M_yx, M1
and M2 train for a few steps. One sequence of runs is shared by the tests of this module.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import pytest
from deltalake import DeltaTable

from jobs.augment import main
from tests.conftest import ROOT, SAMPLE_PAGES, SAMPLE_SEED, sample_pages, write_warc

pytestmark = pytest.mark.slow

SECRET = "XYZ-never-logged-7f3a"
FULL_ORDER = [
    ("ingest", None),
    ("segment", None),
    ("models", None),
    ("augment", None),
    ("curate", 1),
    ("train", 1),
    ("curate", 2),
    ("train", 2),
    ("calibrate", None),
]


def table(root: Path, name: str):
    return DeltaTable(str(root / "tables" / name)).to_pandas()


def by_stage(summary: dict) -> dict:
    return {
        (s["stage"].rsplit("_v", 1)[0], s["iteration"]): s for s in summary["stages"]
    }  # stage names without version


@pytest.fixture(scope="module")
def loop(spark, tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("loop")
    corpus = root / "corpus"
    corpus.mkdir()
    write_warc(corpus / "drop1.warc.gz", sample_pages(SAMPLE_PAGES[:2]))
    seed = root / "seed.jsonl"
    seed.write_text("".join(SAMPLE_SEED.read_text().splitlines(keepends=True)[:16]))
    args = ["--config", str(ROOT / "conf/tiny.yaml")]
    for item in [
        f"input.corpus={corpus}",
        f"input.seed={seed}",
        f"storage.root={root}/tables",
        f"models.dir={root}/models",
        f"models.base={tiny_model}",
        f"models.seed_model={tiny_model}",
        # M_yx needs a dozen steps to learn to stop: an instruction cut at max_tokens is dropped
        "models.train_overrides=[optim.max_steps=12, optim.max_seq_len=512, tracking.enabled=false]",
        "augment.sampling.max_tokens=48",
        "curate.sampling.max_tokens=16",
        "engine.batch_size=8",
        "iterations.score_column=expected_score",
        "iterations.min_score=1.0",  # every pair is curated
        "report.judge_labels=null",
        "report.after_run=false",  # test_pipeline covers calibration and the report
        f"spark.conf.spark.hadoop.fs.s3a.secret.key={SECRET}",
    ]:
        args += ["--set", item]

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    root_logger = logging.getLogger()
    level = root_logger.level
    root_logger.addHandler(handler)
    root_logger.setLevel(logging.INFO)
    steps: dict = {}
    try:
        with contextlib.redirect_stdout(out):
            steps["plan_fresh"] = main([*args, "--dry-run"])
            # the dry run's own log folder (tables/logs) is all it writes
            steps["written_by_plan"] = sorted(p.name for p in (root / "tables").iterdir() if p.name != "logs") + sorted(
                p.name for p in root.glob("models*")
            )
            with pytest.raises(SystemExit) as stopped:
                main([*args, "--stages", "curate", "--iterations", "2"])
            steps["missing_judge"] = str(stopped.value)
            steps["first"] = main([*args, "--iterations", "1"])
            steps["scores_first"] = table(root, "scores")
            steps["plan_after_first"] = main([*args, "--dry-run"])
            steps["resumed"] = main(args)
            steps["candidates_before_drop"] = table(root, "candidates")
            steps["scores_before_drop"] = table(root, "scores")
            write_warc(corpus / "drop2.warc.gz", sample_pages(SAMPLE_PAGES[2:]))
            steps["incremental"] = main(args)
    finally:
        root_logger.removeHandler(handler)
        root_logger.setLevel(level)
    return root, steps, out.getvalue()


def test_dry_run_plans_every_step_and_writes_nothing(loop):
    _, steps, _ = loop
    plan = steps["plan_fresh"]
    assert [(s["stage"], s["iteration"]) for s in plan["steps"]] == FULL_ORDER
    assert steps["written_by_plan"] == []  # no table, no model directory
    step = {(s["stage"], s["iteration"]): s for s in plan["steps"]}
    assert step[("ingest", None)]["todo"] == {"new_or_changed_files": 1}
    assert step[("models", None)]["todo"] == {"build": ["M_yx"]}  # base and M0 are given
    assert step[("curate", 1)]["models"]["M0 (judge)"]["state"] == "present"
    assert (
        step[("train", 1)]["todo"] == {"train": "train"}
        and step[("curate", 2)]["models"]["M1 (judge)"]["state"] == "absent"
    )


def test_a_stage_whose_judge_is_not_trained_says_what_to_run_first(loop):
    _, steps, _ = loop
    assert steps["missing_judge"].startswith("cannot run: M1 is not at ")
    assert steps["missing_judge"].endswith("run the train (iteration 1) stage first")


def test_stopping_after_iteration_1_then_resuming_does_only_iteration_2(loop):
    root, steps, _ = loop
    first, resumed = by_stage(steps["first"]), by_stage(steps["resumed"])
    assert list(first) == [*FULL_ORDER[:6], ("calibrate", None)]
    n_pairs = first[("curate", 1)]["rows_written"]
    assert n_pairs == first[("augment", None)]["by_status"].get("ok") > 0

    after = {(s["stage"], s["iteration"]): s for s in steps["plan_after_first"]["steps"]}
    assert after[("augment", None)]["todo"] == {"generations": 0}
    assert after[("curate", 1)]["todo"] == {"pairs": 0} and after[("train", 1)]["todo"] == {"train": "none: up to date"}
    assert after[("curate", 2)]["models"]["M1 (judge)"]["state"] == "present" and after[("curate", 2)]["todo"] == {
        "pairs": n_pairs
    }
    assert after[("train", 2)]["todo"] == {"train": "train"}

    assert list(resumed) == FULL_ORDER
    assert [resumed[k]["rows_written"] for k in FULL_ORDER[:5]] == [0, 0, 0, 0, 0]
    assert resumed[("train", 1)]["extra"]["model_id"] == first[("train", 1)]["extra"]["model_id"]  # not retrained
    assert resumed[("curate", 2)]["rows_written"] == n_pairs
    assert resumed[("train", 2)]["extra"]["judge_model_id"] == first[("train", 1)]["extra"]["model_id"]
    assert (root / "models/m2/training_meta.json").is_file()


def test_a_new_corpus_drop_goes_through_every_stage_for_its_new_documents_only(loop):
    root, steps, _ = loop
    new, before = by_stage(steps["incremental"]), by_stage(steps["resumed"])
    docs, segments, candidates, scores = (table(root, t) for t in ("documents", "segments", "candidates", "scores"))
    old_candidates, old_scores = steps["candidates_before_drop"], steps["scores_before_drop"]
    new_docs = set(docs.loc[docs["source_path"].str.endswith("drop2.warc.gz"), "doc_id"])
    assert new[("ingest", None)]["rows_written"] == len(new_docs) == 2 and len(docs) == 4
    assert new[("segment", None)]["rows_in"] == 2  # only the new documents are segmented
    new_ok_segments = segments[segments["doc_id"].isin(new_docs) & (segments["status"] == "ok")]
    # augment generated for the new segments only; old candidates are untouched
    added = candidates[~candidates["generation_id"].isin(old_candidates["generation_id"])]
    assert (
        set(added["segment_id"]) == set(new_ok_segments["segment_id"])
        and new[("augment", None)]["rows_in"] == len(added) > 0
    )
    assert (
        candidates.set_index("generation_id").loc[old_candidates["generation_id"], "raw_text"].tolist()
        == old_candidates["raw_text"].tolist()
    )
    # iteration 1's judge (M0) did not change: it scored the new pairs only
    added_scores = scores[~scores["score_id"].isin(old_scores["score_id"])]
    iteration1 = added_scores[added_scores["iteration"] == 1]
    assert set(iteration1["generation_id"]) == set(added.loc[added["status"] == "ok", "generation_id"])
    assert new[("curate", 1)]["rows_written"] == len(iteration1)
    # M1 retrains on the grown A(1) (a new model), so iteration 2's judge is new and rescores the whole pool
    assert new[("train", 1)]["extra"]["model_id"] != before[("train", 1)]["extra"]["model_id"]
    iteration2 = added_scores[added_scores["iteration"] == 2]
    assert set(iteration2["judge_model_id"]) == {new[("train", 1)]["extra"]["model_id"]}
    assert set(iteration2["generation_id"]) == set(candidates.loc[candidates["status"] == "ok", "generation_id"])
    # each retrained model has its own complete lineage
    curated = table(root, "curated")
    for i in (1, 2):
        rows = curated[curated["trained_model_id"] == new[("train", i)]["extra"]["model_id"]]
        assert (
            len(rows)
            == new[("train", i)]["extra"]["examples_by_source"]["augmented"]
            == (candidates["status"] == "ok").sum()
        )


def test_a_credential_on_the_command_line_reaches_no_log_table_or_file(loop):
    root, steps, output = loop
    assert '"spark.hadoop.fs.s3a.secret.key": "***"' in output  # the resolved config was logged, masked
    assert SECRET not in output
    runs = table(root, "runs")
    # three runs, and the one stopped for want of a judge (a failed row: its config is masked alike)
    assert sorted(runs["status"]) == ["failed", "ok", "ok", "ok"]
    assert runs["config"].str.contains('"spark.hadoop.fs.s3a.secret.key": "\\*\\*\\*"').all()
    assert not runs.apply(lambda column: column.astype(str).str.contains(SECRET)).any().any()
    leaked = [str(p) for p in root.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaked == []
