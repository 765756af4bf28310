"""The report and the calibrate stage on small hand-built tables: real Spark, Delta (delta-rs), vLLM on CPU, spaCy."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
from deltalake import DeltaTable

from jobs.config import load_pipeline_config
from jobs.report import build_report, write_report
from jobs.stages import Context, run_stage
from jobs.storage import Storage
from jobs.summary import summarize
from tests.conftest import ROOT
from udfs.tables import CANDIDATES, DOCUMENTS, RUNS, SCORES, SEGMENT_ROWS_SCHEMA
from udfs.ids import model_fingerprint

pytestmark = pytest.mark.slow

SCRIPT = "<script>alert('x')</script>"
SEED = [
    {"instruction": "How do I sort a list?", "output": "Use sorted(items) or items.sort()."},
    {"instruction": "What is a tuple?", "output": "An immutable sequence."},
    {"instruction": "Write a haiku.", "output": "Old pond, a frog jumps."},
]


def frame(spark, schema: str, rows: list[dict]):
    columns = [c.split()[0] for c in schema.split(", ")]
    return spark.createDataFrame([tuple(r.get(c) for c in columns) for r in rows], schema)


def write_tables(spark, storage: Storage, judge: str, iterations: bool = False) -> None:
    """3 documents -> 4 segments -> 3 candidates -> 2 judged pairs, one curated under "score >= 5"."""
    storage.append(
        "documents",
        frame(
            spark,
            DOCUMENTS.schema,
            [
                {"doc_id": "d1", "url": "https://a.example/1", "status": "ok"},
                {"doc_id": "d2", "url": "https://a.example/2", "status": "ok"},
                {"doc_id": "d3", "url": "https://a.example/logo.png", "status": "dropped", "reason": "not_html"},
            ],
        ),
    )
    sea = f"The sea in poems. {SCRIPT} Waves, salt and tides in verse."
    storage.append(
        "segments",
        frame(
            spark,
            SEGMENT_ROWS_SCHEMA,
            [
                {"segment_id": "s1", "doc_id": "d1", "text": sea, "status": "ok"},
                {"segment_id": "s2", "doc_id": "d1", "text": "The bisect module keeps lists sorted.", "status": "ok"},
                {"segment_id": "s3", "doc_id": "d2", "text": "Colour conversions.", "status": "ok"},
                {"segment_id": "s4", "doc_id": "d2", "text": "Short.", "status": "dropped", "reason": "too_short"},
            ],
        ),
    )
    storage.append(
        "candidates",
        frame(
            spark,
            CANDIDATES.schema,
            [
                {
                    "generation_id": "g1",
                    "segment_id": "s1",
                    "instruction": f"{SCRIPT} Write a poem about the sea.",
                    "status": "ok",
                },
                {
                    "generation_id": "g2",
                    "segment_id": "s2",
                    "instruction": "Explain the bisect module.",
                    "status": "ok",
                },
                {"generation_id": "g3", "segment_id": "s3", "status": "dropped", "reason": "empty_instruction"},
            ],
        ),
    )
    scores = [
        {
            "score_id": "c1",
            "generation_id": "g1",
            "segment_id": "s1",
            "score": 5,
            "expected_score": 4.6,
            "iteration": 1,
        },
        {
            "score_id": "c2",
            "generation_id": "g2",
            "segment_id": "s2",
            "parse_failure": "no_score",
            "expected_score": 2.1,
            "iteration": 1,
        },
    ]
    if iterations:  # a second iteration's scores, and the curated lineage table
        scores += [{**s, "score_id": s["score_id"] + "-2", "iteration": 2, "score": 4} for s in scores]
        storage.append(
            "curated",
            frame(
                spark,
                "iteration int, generation_id string",
                [
                    {"iteration": 1, "generation_id": "g1"},
                    {"iteration": 2, "generation_id": "g1"},
                    {"iteration": 2, "generation_id": "g2"},
                ],
            ),
        )
    storage.append(
        "scores",
        frame(
            spark,
            SCORES.schema,
            [{**s, "judge_model_id": judge, "prompt_version": "score_v1", "status": "ok"} for s in scores],
        ),
    )


def write_run(spark, storage: Storage, run_id: str, tables: dict, judges: dict[int, str]) -> None:
    """A ``runs`` row whose summary counted the scores of ``judges`` (iteration -> judge model id)."""
    stages = [
        {
            "stage": "curate_v1",
            "rows_in": 2,
            "rows_written": 2,
            "seconds": 2.0,
            "extra": {"tokens": {"prompt_tokens": 400, "cached_tokens": 0, "output_tokens": 100}},
        }
    ]
    storage.append(
        "runs",
        frame(
            spark,
            RUNS.schema,
            [
                {
                    "run_id": run_id,
                    "finished_at": "2026-01-01T00:00:00+00:00",
                    "config": "{}",
                    "stages": json.dumps(stages),
                    "tables": json.dumps(tables),
                    "curation": json.dumps([{"iteration": i, "judge_model_id": j} for i, j in judges.items()]),
                }
            ],
        ),
    )


def context(spark, tmp_path, tiny_model, *extra: str) -> Context:
    seed = tmp_path / "seed.jsonl"
    seed.write_text("".join(json.dumps(r) + "\n" for r in SEED))
    cfg = load_pipeline_config(
        ROOT / "conf/tiny.yaml",
        [
            f"storage.root={tmp_path}/tables",
            f"models.dir={tmp_path}/models",
            f"models.base={tiny_model}",
            f"models.seed_model={tiny_model}",
            f"input.seed={seed}",
            "iterations.score_column=score",
            "iterations.min_score=5",
            "curate.sampling.max_tokens=8",
            *extra,
        ],
    )
    return Context(spark, Storage(spark, cfg.storage.root, "delta-rs"), cfg)


def cell_row(*cells) -> str:
    return "".join(f"<td>{c}</td>" for c in cells)


def test_calibration_and_report_from_the_tables(spark, tmp_path, tiny_model):
    labels = [line for line in (ROOT / "data/sample/judge_labels.jsonl").read_text().splitlines()]
    few = [line for line in labels if '"good"' in line][:2] + [line for line in labels if '"bad"' in line][:2]
    (tmp_path / "labels.jsonl").write_text("\n".join(few) + "\n")
    ctx = context(spark, tmp_path, tiny_model, f"report.judge_labels={tmp_path}/labels.jsonl")
    judge = model_fingerprint(tiny_model)
    write_tables(spark, ctx.storage, judge)
    write_run(
        spark,
        ctx.storage,
        "run-1",
        {t: ctx.storage.version(t) for t in ("documents", "segments", "candidates", "scores")},
        {1: judge},
    )
    # a later run's candidate: the report of run-1 reads the tables at run-1's versions and must not count it
    ctx.storage.append(
        "candidates",
        frame(
            spark,
            CANDIDATES.schema,
            [{"generation_id": "g9", "segment_id": "s3", "instruction": "Later?", "status": "ok"}],
        ),
    )

    first = run_stage(ctx, "calibrate")
    assert (first.rows_in, first.rows_written, first.by_status) == (4, 4, {"ok": 4})
    assert run_stage(ctx, "calibrate").rows_written == 0  # keyed: a re-run judges nothing again
    calibration = DeltaTable(str(tmp_path / "tables/calibration")).to_pandas()
    assert calibration["calibration_id"].is_unique and set(calibration["judge_model_id"]) == {judge}
    assert sorted(calibration["label"]) == ["bad", "bad", "good", "good"] and calibration["iteration"].eq(1).all()
    assert (calibration["score"].notna() | calibration["parse_failure"].notna()).all() and calibration[
        "expected_score"
    ].between(1, 5).all()

    path = write_report(ctx, out_dir=str(tmp_path / "out"))
    html = path.read_text()
    assert path.name == "report-run-1.html"
    assert html.count('src="data:image/png;base64,') == 7
    assert (
        "<script>alert" not in html and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; Write a poem" in html
    )  # instruction
    assert "in poems. &lt;script&gt;" in html  # web text of the example's segment
    for step, rows in [
        ("documents", 3),
        ("documents ok", 2),
        ("segments", 4),
        ("segments kept", 3),
        ("candidates ok", 2),
        ("scored (iteration 1)", 2),
        ("curated (iteration 1)", 1),
    ]:
        assert re.search(rf"<td>{re.escape(step)}</td><td>{rows}</td>", html), step
    assert cell_row("dropped:too_short", 1) in html and cell_row("no_score", 1) in html
    pool_chars = (len(f"{SCRIPT} Write a poem about the sea.") + len("Explain the bisect module.")) / 2
    assert re.search(rf"<td>pool</td><td>2</td><td>{pool_chars:,.0f} ± \d+ \(\d+\)</td>", html)
    assert re.search(r"<td>seed</td><td>3</td>(<td>[\d,]+ ± [\d,]+ \([\d,]+\)</td>){4}", html)  # chars and tokens
    assert cell_row("write", 1, "poem (1)") in html
    assert cell_row("curate_v1", 2, 2, 2.0, "1.00", 400, 100, 250) in html
    good = sum('"good"' in line for line in few)
    assert re.search(rf"<td>1</td><td>{judge}</td><td>4</td><td>{good}</td>", html)
    # the judge's set (g1) beside the longest (g1: the longer answer) and random sets of its size, with the AUC
    # of answer length and of the random draw over the labels
    assert re.search(r"<td>1</td><td>judge</td><td>1</td>(<td>[^<]+</td>){3}<td>[\d.]+</td>", html)
    assert re.search(r"<td>1</td><td>longest-k</td><td>1</td>(<td>[^<]+</td>){2}<td>1.00</td><td>[\d.]+</td>", html)
    assert re.search(r"<td>1</td><td>random-k</td><td>1</td>(<td>[^<]+</td>){3}<td>[\d.]+</td>", html)


def test_iterations_and_curated_lineage_table(spark, tmp_path, tiny_model):
    ctx = context(spark, tmp_path, tiny_model, "report.parsed_instructions=0", "report.judge_labels=null")
    write_tables(spark, ctx.storage, "m0-test", iterations=True)
    versions = {t: ctx.storage.version(t) for t in ("documents", "segments", "candidates", "scores", "curated")}
    write_run(
        spark,
        ctx.storage,
        "run-2",
        {"read": {"segments": versions["segments"]}, "written": versions},
        {1: "m0-test", 2: "m0-test"},
    )
    data = build_report(ctx)
    assert data.run_id == "run-2" and data.verbs is None and data.calibration == []
    assert data.score_counts == {1: {"5": 1, "none": 1}, 2: {"4": 2}}
    # curated comes from the lineage table, not from the rule (which would keep none in iteration 2)
    assert [(y.step, y.rows) for y in data.yields[-4:]] == [
        ("scored (iteration 1)", 2),
        ("curated (iteration 1)", 1),
        ("scored (iteration 2)", 2),
        ("curated (iteration 2)", 2),
    ]
    assert [s.name for s in data.lengths] == ["seed", "pool", "curated (iteration 1)", "curated (iteration 2)"]
    assert [(e.iteration, e.score) for e in data.examples] == [(1, 5), (2, 4), (2, 4)]
    # baselines beside the judge's own rule (not the lineage table): iteration 1 keeps g1, the longer answer;
    # iteration 2's judge keeps nothing (scores 4 < 5), so the baselines keep nothing either
    selection = {(s.iteration, s.rule): s for s in data.selection}
    assert {key: s.pairs for key, s in selection.items()} == {
        (1, "judge"): 1,
        (1, "longest-k"): 1,
        (1, "random-k"): 1,
        (2, "judge"): 0,
        (2, "longest-k"): 0,
        (2, "random-k"): 0,
    }
    assert selection[(1, "longest-k")].jaccard == 1.0 and selection[(2, "judge")].jaccard is None
    assert selection[(1, "judge")].auc is None  # no labels


def test_after_a_retrain_the_report_counts_the_scores_the_run_summary_counted(spark, tmp_path, tiny_model):
    """A corpus drop retrains M1 in place, so iteration 2 holds rows of the M1 before the drop and of the new
    one. The run used the new M1: its summary and the report count that judge's rows only."""
    ctx = context(spark, tmp_path, tiny_model, "report.parsed_instructions=0", "report.judge_labels=null")
    m1 = Path(ctx.cfg.iteration_model(1))
    m1.mkdir(parents=True)
    (m1 / "config.json").write_text(json.dumps({"model_type": "llama", "retrained": True}))
    write_tables(spark, ctx.storage, model_fingerprint(tiny_model))  # iteration 1: g1 scored 5, g2 unparsed
    before_drop = [("old-1", "g1", "s1", 5), ("old-2", "g2", "s2", 5)]
    ctx.storage.append(
        "scores",
        frame(
            spark,
            SCORES.schema,
            [
                {"score_id": i, "generation_id": g, "segment_id": s, "score": n, "expected_score": n - 0.2}
                | {"iteration": 2, "judge_model_id": judge, "prompt_version": "score_v1", "status": "ok"}
                for judge, rows in (
                    ("m1-before-the-drop", before_drop),
                    (model_fingerprint(str(m1)), [("new-1", "g1", "s1", 3)]),
                )
                for i, g, s, n in rows
            ],
        ),
    )
    summary = summarize(ctx, [], datetime.now(timezone.utc))
    curation = {c["iteration"]: c for c in summary["curation"]}
    assert [(curation[i]["judged"], curation[i]["curated"]) for i in (1, 2)] == [(2, 1), (1, 0)]

    data = build_report(ctx)
    assert data.run_id == summary["run_id"]
    rows = {y.step: y.rows for y in data.yields}
    for i in (1, 2):
        assert rows[f"scored (iteration {i})"] == sum(data.score_counts[i].values()) == curation[i]["judged"], i
        assert rows[f"curated (iteration {i})"] == curation[i]["curated"], i
    assert data.score_counts[2] == {"3": 1}
    assert {(s.iteration, s.rule): s.pairs for s in data.selection}[(2, "judge")] == 0


def test_spark_baselines_select_what_training_selects(spark):
    import pandas as pd

    from jobs.selection import baseline_pairs
    from udfs.curation import select_baseline

    pool = pd.DataFrame({"generation_id": [f"g{i:02d}" for i in range(60)], "length": [i % 7 for i in range(60)]})
    frame = spark.createDataFrame(pool)
    for rule in ("longest", "random"):
        for seed in (0, 3):
            chosen = [r["generation_id"] for r in baseline_pairs(frame, rule, 17, seed).collect()]
            assert sorted(chosen) == sorted(select_baseline(pool, rule, 17, seed)["generation_id"]), (rule, seed)
