"""The whole job on tiny data: real Spark, real Delta (delta-rs path), real vLLM on CPU, real torch.

One full run, the paper's two iterations (M0 -> A(1) -> M1 -> A(2) -> M2), is shared by the tests of this
module (it builds five tiny models); the re-run test then checks that the same command adds no row anywhere.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable

from jobs.augment import main
from tests.conftest import ROOT, SAMPLE_PAGES as PAGES, SAMPLE_SEED, sample_pages, write_warc
from training.data import Example, examples_sha256, read_seed
from udfs.main_content import MAIN_CONTENT_REASONS

pytestmark = pytest.mark.slow

# Tiny models and few steps: the point is every data path, not model quality.
TINY = [
    "models.bootstrap.hidden_size=128",
    "models.bootstrap.num_heads=2",
    "models.bootstrap.intermediate_size=256",
    "models.bootstrap.num_layers=2",
    "models.bootstrap.steps=15",
    "models.bootstrap.warmup_steps=2",
    "models.train_overrides=[optim.max_steps=12, optim.max_seq_len=768]",
    "augment.sampling.max_tokens=48",
    "curate.sampling.max_tokens=24",
    "iterations.score_column=expected_score",
    "iterations.min_score=[1.0, 2.0]",  # iteration 1 curates every judged pair, so M1 sees augmented data
    "engine.batch_size=8",  # several batches per task: the engine must be reused
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    warc = write_warc(
        root / "crawl.warc.gz",
        sample_pages(),
        extra=[
            ("https://example.com/missing", "404 Not Found", "text/html", b"<html>gone</html>"),
            ("https://example.com/logo.png", "200 OK", "image/png", b"\x89PNG\r\n\x1a\n"),
        ],
    )
    seed = root / "seed.jsonl"
    seed.write_text("".join(SAMPLE_SEED.read_text().splitlines(keepends=True)[:24]))
    return warc, seed


def run(inputs, root: Path, *extra: str) -> dict:
    warc, seed = inputs
    args = [
        "--config",
        str(ROOT / "conf/tiny.yaml"),
        "--set",
        f"input.corpus={warc}",
        "--set",
        f"input.seed={seed}",
        "--set",
        f"storage.root={root}/tables",
        "--set",
        f"models.dir={root}/models",
    ]
    for item in [*TINY, *extra]:
        args += ["--set", item]
    start = time.monotonic()
    summary = main(args)
    summary["wall_seconds"] = time.monotonic() - start
    return summary


def table(root: Path, name: str):
    return DeltaTable(str(root / "tables" / name)).to_pandas()


@pytest.fixture(scope="module")
def first_run(spark, inputs, tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    return root, run(inputs, root)


def test_ingest_records_every_record_with_provenance(first_run):
    root, _ = first_run
    docs = table(root, "documents")
    assert len(docs) == len(PAGES) + 2
    reasons = dict(zip(docs["url"], docs["reason"]))
    assert reasons["https://example.com/missing"] == "http_status_not_200"
    assert reasons["https://example.com/logo.png"] == "not_html"
    ok = docs[docs["status"] == "ok"]
    assert len(ok) == len(PAGES) and ok["content_hash"].str.len().eq(64).all() and ok["fetch_date"].notna().all()
    assert docs["doc_id"].is_unique


def test_segments_follow_the_papers_rules(first_run):
    root, _ = first_run
    segments = table(root, "segments")
    ok = segments[segments["status"] == "ok"]
    assert len(ok) > 5 and segments["segment_id"].is_unique
    assert ok["n_chars"].between(600, 3000).all()
    reasons = set(segments.loc[segments["status"] == "dropped", "reason"])
    assert {r for r in reasons if not r.startswith(("gopher_", "eval_overlap:"))} <= {
        "too_short",
        "too_long",
        "empty_header",
        "uppercase_header",
        "navigation_header",
        "repeated_sentences",
        "no_header",
        "exact_duplicate",
        "near_duplicate",
        "wrong_language",
        "high_link_density",
        "boilerplate_lines",
        *MAIN_CONTENT_REASONS,
    }
    assert ok["measurements"].map(json.loads).map(bool).all() and set(ok["lang"]) == {"en"}
    assert ok["text_hash"].is_unique  # exact dedup


def test_every_ok_segment_gets_one_candidate_and_every_candidate_one_score_per_iteration(first_run):
    root, summary = first_run
    segments, candidates, scores = table(root, "segments"), table(root, "candidates"), table(root, "scores")
    assert set(candidates["segment_id"]) == set(segments.loc[segments["status"] == "ok", "segment_id"])
    assert candidates["generation_id"].is_unique
    assert (
        candidates["prompt_version"].eq("backtranslate_v1").all()
        and candidates["model_id"].str.startswith("myx-").all()
    )
    assert set(json.loads(candidates["sampling"].iloc[0])) == {"temperature", "top_p", "max_tokens"}
    ok_candidates = candidates[candidates["status"] == "ok"]
    assert scores["score_id"].is_unique
    for iteration, judge in ((1, "m0-"), (2, "m1-")):  # the same pool, rescored by each iteration's judge
        mine = scores[scores["iteration"] == iteration]
        assert set(mine["generation_id"]) == set(ok_candidates["generation_id"]) and mine["generation_id"].is_unique
        assert mine["judge_model_id"].str.startswith(judge).all() and mine["judge_model_id"].nunique() == 1
        judged = mine[mine["status"] == "ok"]
        # The tiny judge writes no parseable score: every null score has a failure kind, every row an expected score.
        assert (judged["score"].notna() | judged["parse_failure"].notna()).all()
        assert judged["expected_score"].between(1, 5).all()
        assert summary["curation"][iteration - 1]["judged"] == len(judged)


def test_each_model_is_trained_from_the_base_on_seed_and_its_iterations_curated_pairs(first_run):
    root, summary = first_run
    trains = [s for s in summary["stages"] if s["stage"] == "train_v1"]
    assert [t["iteration"] for t in trains] == [1, 2]
    scores, curated = table(root, "scores"), table(root, "curated")
    for t in trains:
        i = t["iteration"]
        meta = json.loads((root / f"models/m{i}/training_meta.json").read_text())
        assert meta["config"]["base_model"] == str(root / "models/base")  # from the base, not from M_{i-1}
        assert meta["provenance"]["examples_by_source"]["seed"] == 24
        assert {n: v["version"] for n, v in meta["provenance"]["augmented"]["tables"].items()} == t["reads"]
        judged = scores[(scores["iteration"] == i) & (scores["status"] == "ok")]
        k = (1.0, 2.0)[i - 1]
        rows = curated[curated["trained_model_id"] == t["extra"]["model_id"]]
        assert len(rows) == (judged["expected_score"] >= k).sum() == summary["curation"][i - 1]["curated"]
        assert meta["provenance"]["examples_by_source"].get("augmented", 0) == len(rows)
        assert (rows["iteration"] == i).all() and (rows["expected_score"] >= k).all() and (rows["min_score"] == k).all()
    for name in ("base", "myx", "m0", "m1", "m2"):
        assert (root / "models" / name / "config.json").is_file()


def test_lineage_rows_are_exactly_the_examples_each_model_was_trained_on(first_run, inputs):
    root, summary = first_run
    segments, candidates, curated = table(root, "segments"), table(root, "candidates"), table(root, "curated")
    docs = table(root, "documents")
    assert curated["curated_id"].is_unique and (curated["status"] == "ok").all()
    seed = read_seed(inputs[1], "Answer in the style of an AI Assistant.")
    for i, judge_prefix in ((1, "m0-"), (2, "m1-")):
        meta = json.loads((root / f"models/m{i}/training_meta.json").read_text())
        rows = curated[curated["iteration"] == i].sort_values("generation_id")
        assert (
            rows["judge_model_id"].str.startswith(judge_prefix).all()
            and rows["generation_model_id"].str.startswith("myx-").all()
        )
        assert (rows["judge_prompt_version"] == "score_v1").all() and (
            rows["augment_prompt_version"] == "backtranslate_v1"
        ).all()
        # every row traces to its segment and that segment's document URL
        joined = rows.merge(segments[["segment_id", "doc_id", "url"]], on="segment_id", suffixes=("", "_seg"))
        assert (
            len(joined) == len(rows)
            and (joined["url"] == joined["url_seg"]).all()
            and set(rows["doc_id"]) <= set(docs["doc_id"])
        )
        # the lineage rows rebuild the very training set: same content hash as training_meta.json
        texts = rows.merge(candidates[["generation_id", "instruction"]], on="generation_id").merge(
            segments[["segment_id", "text"]], on="segment_id"
        )
        augmented = [
            Example("Answer with knowledge from web search.", r.instruction, r.text, "augmented")
            for r in texts.itertuples()
        ]
        assert examples_sha256(seed + augmented) == meta["provenance"]["sha256"] == rows["training_data_sha256"].iloc[0]


def test_runs_table_has_the_summary(first_run):
    root, summary = first_run
    runs = table(root, "runs")
    assert list(runs["run_id"]) == [summary["run_id"]]
    stages = [(s["stage"], s["iteration"]) for s in json.loads(runs["stages"].iloc[0])]
    assert stages == [
        ("ingest_v2", None),
        ("segment_v1", None),
        ("models_v1", None),
        ("augment_v1", None),
        ("curate_v1", 1),
        ("train_v1", 1),
        ("curate_v1", 2),
        ("train_v1", 2),
        ("calibrate_v1", None),
    ]
    by_stage = {(s["stage"], s["iteration"]): s for s in json.loads(runs["stages"].iloc[0])}
    assert by_stage[("augment_v1", None)]["reads"]["segments"] == by_stage[("segment_v1", None)]["writes"]["segments"]
    assert by_stage[("curate_v1", 2)]["writes"]["scores"] > by_stage[("curate_v1", 1)]["writes"]["scores"]
    for key in (("augment_v1", None), ("curate_v1", 1), ("curate_v1", 2)):
        assert (
            by_stage[key]["extra"]["tokens"]["prompt_tokens"] > 0
            and by_stage[key]["extra"]["tokens"]["output_tokens"] > 0
        )
    assert all(s["seconds"] > 0 for s in by_stage.values())
    tables = json.loads(runs["tables"].iloc[0])
    on_disk = {t: str(root / "tables" / t) for t in tables}  # an optional stage's table may not exist (None)
    assert tables == {t: DeltaTable(p).version() if DeltaTable.is_deltatable(p) else None for t, p in on_disk.items()}
    assert tables["scores"] is not None
    calibration = table(root, "calibration")  # both iterations' judges over every labelled pair
    assert sorted(calibration.groupby("iteration").size().items()) == [(1, 48), (2, 48)]
    report = (root / "tables" / "reports" / f"report-{summary['run_id']}.html").read_text()
    assert "data:image/png;base64," in report and "Judge calibration" in report
    yields = json.loads(runs["yields"].iloc[0])
    assert yields["tables"]["documents"] == {"rows": len(PAGES) + 2, "ok": len(PAGES)}
    assert set(yields["curated"]) == {"1", "2"} and yields["curated"]["1"]["yield"] == 1.0
    config = json.loads(runs["config"].iloc[0])
    rule = {k: config["iterations"][k] for k in ("count", "score_column", "min_score")}
    assert rule == {"count": 2, "score_column": "expected_score", "min_score": [1.0, 2.0]}
    assert runs["seconds"].iloc[0] > 0


def test_rerun_adds_no_rows_and_is_faster(first_run, inputs):
    root, summary = first_run
    before = {
        t: DeltaTable(str(root / "tables" / t)).version()
        for t in ("files", "documents", "segments", "candidates", "scores", "curated", "runs")
    }
    again = run(inputs, root)
    after = {t: DeltaTable(str(root / "tables" / t)).version() for t in before}
    assert after == before
    assert all(s["rows_written"] == 0 for s in again["stages"])
    assert again["run_id"] == summary["run_id"] and not again["runs_row_written"]
    assert again["wall_seconds"] < summary["wall_seconds"] / 2


def test_any_crawl_style_warc_works(spark, tmp_path):
    """An uncompressed WARC of pages the sample never had, into a new storage root."""
    body = "".join(
        f"<p>Paragraph {i} about tidal energy, sediment transport and coastal engineering practice.</p>"
        for i in range(20)
    )
    pages = {f"https://other.example/{n}": f"<html><body><h2>Tides</h2>{body}</body></html>".encode() for n in range(3)}
    warc = write_warc(tmp_path / "other.warc", pages, gzip=False)
    summary = main(
        [
            "--config",
            str(ROOT / "conf/tiny.yaml"),
            "--set",
            f"input.corpus={warc}",
            "--set",
            f"storage.root={tmp_path}/tables",
            "--stages",
            "ingest,segment",
        ]
    )
    assert [s["rows_written"] for s in summary["stages"]][0] == 3
    segments = table(tmp_path, "segments")
    # the three pages share their text: one kept, the others are exact duplicates
    assert sorted(segments["reason"].fillna("ok")) == ["exact_duplicate", "exact_duplicate", "ok"]
