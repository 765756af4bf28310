"""jobs/export.py: an iteration's training set as a dataset the `datasets` library loads, with lineage.

Small pool tables are written through Storage, a model directory gets a training_meta.json made by the
training code's own loader (so its sha256 is real), and the curated table holds the model's lineage.
"""

import json
import logging

import datasets
import pytest

from jobs import console, export
from jobs.config import load_pipeline_config
from jobs.preflight import UsageError
from jobs.storage import Storage
from tests.conftest import ROOT
from training.config import AugmentedData, SeedData, TrainConfig
from training.data import load_examples
from udfs.config import to_dict
from udfs.ids import model_fingerprint

SEED = [
    {"instruction": "What is a list?", "output": "A mutable sequence."},
    {"instruction": "What is a tuple?", "output": "An immutable sequence."},
]
SCORES = (
    "score_id string, generation_id string, judge_model_id string, score double, expected_score double, status string"
)


def build_run(spark, tmp_path, judge="m0-judge"):
    root = tmp_path / "tables"
    storage = Storage(spark, str(root))
    segments = [(f"s{i}", f"doc{i}", f"Segment text {i}.", "ok", None) for i in range(3)]
    segments.append(("s9", "doc9", "dropped text", "dropped", "too_short"))
    storage.append(
        "segments",
        spark.createDataFrame(segments, "segment_id string, doc_id string, text string, status string, reason string"),
    )
    candidates = [(f"g{i}", f"s{i}", f"Instruction {i}?", "ok") for i in range(3)]
    storage.append(
        "candidates",
        spark.createDataFrame(candidates, "generation_id string, segment_id string, instruction string, status string"),
    )
    # g0 and g1 pass k=3, g2 does not.
    scores = [(f"c{i}", f"g{i}", judge, float(s), float(s) - 0.2, "ok") for i, s in enumerate((5, 4, 2))]
    storage.append("scores", spark.createDataFrame(scores, SCORES))
    seed = tmp_path / "seed.jsonl"
    seed.write_text("".join(json.dumps(r) + "\n" for r in SEED), encoding="utf-8")
    model = tmp_path / "models" / "m1"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}", encoding="utf-8")
    aug = AugmentedData(
        segments_table=str(root / "segments"),
        candidates_table=str(root / "candidates"),
        scores_table=str(root / "scores"),
        judge_model_id=judge,
        score_column="score",
        min_score=3.0,
    )
    cfg = TrainConfig(
        base_model=str(tmp_path / "base"), output_dir=str(model), seed=SeedData(path=str(seed)), augmented=aug
    )
    examples, provenance = load_examples(cfg)
    (model / "training_meta.json").write_text(
        json.dumps({"config": to_dict(cfg), "provenance": provenance}, default=str), encoding="utf-8"
    )
    trained_id = model_fingerprint(str(model))
    curated = [
        (trained_id, f"https://example.org/{i}", f"doc{i}", f"s{i}", f"g{i}", f"c{i}", judge, float(s), float(s) - 0.2)
        for i, s in enumerate((5, 4))
    ]
    storage.append(
        "curated",
        spark.createDataFrame(
            curated,
            "trained_model_id string, url string, doc_id string, "
            "segment_id string, generation_id string, score_id "
            "string, judge_model_id string, score double, "
            "expected_score double",
        ),
    )
    pipeline = load_pipeline_config(
        str(ROOT / "conf/tiny.yaml"),
        [f"storage.root={root}", f"models.dir={tmp_path / 'models'}", "iterations.count=1", f"input.seed={seed}"],
    )
    # Appended later (iteration 2's scores): the export still gives the pinned training set.
    storage.append("scores", spark.createDataFrame([("c9", "g2", judge, 5.0, 4.8, "ok")], SCORES))
    return pipeline, examples


@pytest.fixture
def restore_logging(monkeypatch):
    """export.main sets up the job's logging: undo it after the test."""
    for name in console.ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    yield
    for handler in [h for h in logging.getLogger().handlers if getattr(h, "_humpback", False)]:
        logging.getLogger().removeHandler(handler)
        handler.close()


def test_export_loads_with_datasets_in_the_chat_schema(spark, tmp_path, restore_logging):
    cfg, examples = build_run(spark, tmp_path)
    out = tmp_path / "export"
    export.main(
        [
            "--config",
            str(ROOT / "conf/tiny.yaml"),
            "--set",
            f"storage.root={cfg.storage.root}",
            "--set",
            f"models.dir={cfg.models.dir}",
            "--set",
            "iterations.count=1",
            "--set",
            f"input.seed={cfg.input.seed}",
            "--out",
            str(out),
        ]
    )
    for kind, name in (("json", "train.jsonl"), ("parquet", "train.parquet")):
        ds = datasets.load_dataset(kind, data_files=str(out / name), split="train")
        assert len(ds) == len(examples) == 4
        assert set(ds.features["messages"].feature) == {"role", "content"}
        rows = ds.to_list()
        assert [r["source"] for r in rows] == ["seed", "seed", "augmented", "augmented"]
        assert [m["role"] for m in rows[0]["messages"]] == ["system", "user", "assistant"]
        assert rows[0]["messages"][0]["content"] == "Answer in the style of an AI Assistant."
        aug = rows[2]
        assert aug["messages"][0]["content"] == "Answer with knowledge from web search."
        assert aug["messages"][1]["content"] == "Instruction 0?" and aug["messages"][2]["content"] == "Segment text 0."
        assert (aug["url"], aug["segment_id"], aug["judge_model_id"], aug["score"]) == (
            "https://example.org/0",
            "s0",
            "m0-judge",
            5.0,
        )
        assert rows[0]["url"] is None
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "2 seed, 2 augmented, 4 in all" in card and "`score >= 3.0`" in card and "`scores` v0" in card


def test_export_refuses_a_model_that_was_not_trained(spark, tmp_path):
    cfg, _ = build_run(spark, tmp_path)
    (tmp_path / "models" / "m1" / "training_meta.json").unlink()
    with pytest.raises(UsageError, match="run the job's train stage first"):
        export.export(cfg, 1, str(tmp_path / "out"), None)


def test_export_without_lineage_rows_says_what_to_do(spark, tmp_path):
    cfg, _ = build_run(spark, tmp_path)
    with pytest.raises(UsageError, match="no row in the curated table"):
        export.export(cfg, 1, str(tmp_path / "out"), None)
