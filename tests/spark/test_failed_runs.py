"""The ledger of failures: an engine that hangs fails its task within the batch deadline, one that dies fails it
with its own error, and either way the job exits non-zero and leaves a ``failed`` runs row saying what it had
committed; the same command without the fault then resumes."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from pyspark.sql import functions as F

from jobs.augment import main
from jobs.config import load_pipeline_config
from jobs.report import RunTables, failed_runs
from jobs.stages import Context
from jobs.storage import Storage
from tests.conftest import ROOT, sample_pages, write_warc

DEADLINE = 5


def job_args(tmp_path, tiny_model, *overrides: str) -> list[str]:
    corpus = write_warc(tmp_path / "corpus.warc.gz", sample_pages())
    sets = [
        f"input.corpus={corpus}",
        f"storage.root={tmp_path / 'tables'}",
        f"models.dir={tmp_path / 'models'}",
        f"models.base={tiny_model}",
        f"models.backward={tiny_model}",
        f"models.seed_model={tiny_model}",
        "engine.name=fake",
        "report.after_run=false",
        *overrides,
    ]
    args = ["--config", str(ROOT / "conf/tiny.yaml"), "--stages", "ingest,segment,augment"]
    return args + [a for s in sets for a in ("--set", s)]


def runs(spark, tmp_path) -> list[dict]:
    table = Storage(spark, str(tmp_path / "tables")).read("runs")
    return [] if table is None else [r.asDict() for r in table.orderBy("started_at").collect()]


def test_a_hanging_engine_fails_its_task_within_the_deadline(spark, tmp_path, tiny_model):
    args = job_args(tmp_path, tiny_model, "engine.fake_fault=hang", f"engine.batch_deadline_seconds={DEADLINE}")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYSPARK_PYTHON": sys.executable}
    start = time.monotonic()
    # A subprocess with a timeout: were the deadline not kept, the test would stop instead of hanging with the job.
    done = subprocess.run(
        [sys.executable, "-m", "jobs.augment", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    elapsed = time.monotonic() - start
    assert done.returncode != 0, done.stdout
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("error: EngineStalled: augment: batch of "), error
    assert f"deadline of {DEADLINE} s (engine.batch_deadline_seconds)" in error
    assert "failed in stage augment_v1" in done.stdout

    (failed,) = [r for r in runs(spark, tmp_path) if r["status"] == "failed"]
    assert failed["failed_stage"] == "augment_v1"
    assert failed["reason"] == error.removeprefix("error: ").split(" (traceback: ")[0]
    assert [s["stage"] for s in json.loads(failed["stages"])] == ["ingest_v2", "segment_v1"]
    committed = json.loads(failed["committed"])
    storage = Storage(spark, str(tmp_path / "tables"))
    assert set(committed) == {"files", "documents", "segments"}  # and no candidates: the batch never finished
    for table, c in committed.items():
        assert c["version_before"] is None and c["version"] == storage.version(table)
        assert c["rows"] == storage.read(table).count() > 0
    # The augment stage itself took about the deadline: the run's time less the stages that finished.
    finished = sum(s["seconds"] for s in json.loads(failed["stages"]))
    assert DEADLINE <= failed["seconds"] - finished < DEADLINE + 90, (failed["seconds"], finished, elapsed)


def test_a_dying_engine_fails_the_run_which_then_resumes(spark, tmp_path, tiny_model):
    with pytest.raises(SystemExit) as stop:
        main(job_args(tmp_path, tiny_model, "engine.fake_fault=raise"))
    line = str(stop.value.code)
    assert line.startswith("error: RuntimeError: fake engine died generating "), line
    (failed,) = runs(spark, tmp_path)
    assert failed["status"] == "failed" and failed["reason"].startswith("RuntimeError: fake engine died generating ")
    assert set(json.loads(failed["committed"])) == {"files", "documents", "segments"}

    summary = main(job_args(tmp_path, tiny_model))  # the fault gone, the same command resumes
    ok = [r for r in runs(spark, tmp_path) if r["status"] == "ok"]
    assert [r["run_id"] for r in ok] == [summary["run_id"]] and ok[0]["reason"] is None
    assert [s["stage"] for s in summary["stages"]] == ["ingest_v2", "segment_v1", "augment_v1"]
    assert [s["rows_written"] for s in summary["stages"]][:2] == [0, 0]  # ingest and segment were committed already
    storage = Storage(spark, str(tmp_path / "tables"))
    candidates = storage.read("candidates")
    assert candidates.where(F.col("status") == "ok").count() > 0

    # The report lists the failed run and reports on the one that finished.
    ctx = Context(spark, storage, load_pipeline_config(str(ROOT / "conf/tiny.yaml")))
    shown, total = failed_runs(ctx)
    assert total == 1 and shown[0].run_id == failed["run_id"] and shown[0].stage == "augment_v1"
    assert shown[0].committed == {t: c["rows"] for t, c in json.loads(failed["committed"]).items()}
    assert RunTables(ctx, None).run["run_id"] == summary["run_id"]


def test_generated_instructions_that_contain_an_evaluation_prompt_are_dropped_on_spark(spark, tmp_path, tiny_model):
    main(job_args(tmp_path, tiny_model))
    storage = Storage(spark, str(tmp_path / "tables"))
    copied = next(
        r["instruction"]
        for r in storage.read("candidates").where("status = 'ok'").orderBy("generation_id").collect()
        if len(r["instruction"].split()) >= 5
    )
    prompts = tmp_path / "eval.jsonl"
    prompts.write_text(json.dumps({"prompt": copied}) + "\n")
    shutil.rmtree(tmp_path / "tables" / "candidates")  # the same generations again, now checked against the set
    sets = f"segment.decontamination=[{{name: probe, path: {prompts}, field: prompt}}]"
    main(job_args(tmp_path, tiny_model, sets))
    rows = storage.read("candidates").where(F.col("instruction").contains(copied)).collect()
    assert rows and {(r["status"], r["reason"]) for r in rows} == {("dropped", "eval_overlap:probe")}


def test_a_table_path_that_is_a_plain_file_is_named_in_one_line_and_the_failed_run_recorded(
    spark, tmp_path, tiny_model, capsys
):
    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / "segments").write_text("a bad copy\n")  # a plain file where the segments table's folder should be
    with pytest.raises(SystemExit) as stop:
        main(job_args(tmp_path, tiny_model))
    line = str(stop.value.code)
    assert line.startswith(f"error: BrokenTable: table segments at {tables / 'segments'} is a file, not a table's "), (
        line
    )
    assert "\n" not in line and "Generic LocalFileSystem error" not in line
    assert "failed at its start, reading the tables (recorded in runs with status failed)" in capsys.readouterr().out
    (failed,) = runs(spark, tmp_path)
    assert (failed["status"], failed["failed_stage"]) == ("failed", "start")
    assert failed["reason"] == line.removeprefix("error: ").split(" (traceback: ")[0]
    assert json.loads(failed["committed"]) == {} and json.loads(failed["stages"]) == []
    assert json.loads(failed["tables"])["segments"] is None
