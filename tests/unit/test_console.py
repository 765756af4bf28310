"""The quiet console (jobs.console), the progress line (jobs.progress) and the run summary (jobs.run_summary)."""

import io
import logging
import re
from types import SimpleNamespace

from jobs import console, progress, run_summary
from jobs.report_render import JudgeCalibration
from udfs.calibration import PrecisionRecall


def record(name, level, message):
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_console_keeps_our_info_and_actionable_warnings_only():
    keep = console.ConsoleFilter().filter
    assert keep(record("jobs.stages", logging.INFO, "stage segment: 245 rows in 14.0s"))
    assert not keep(record("jobs.stages", logging.INFO, "stage segment: start"))  # the progress line says it
    assert not keep(record("jobs.stages", logging.DEBUG, "detail"))
    assert not keep(record("vllm.v1.worker.cpu_worker", logging.WARNING, "libtcmalloc is not found in LD_PRELOAD."))
    assert keep(record("vllm.engine", logging.WARNING, "KV cache is full, preempting requests"))
    assert not keep(record("transformers.tokenization", logging.INFO, "loading file vocab.json"))
    assert keep(record("transformers.modeling", logging.ERROR, "weights not loaded"))
    assert not keep(record("py4j.clientserver", logging.WARNING, "Answer received"))
    file_only = record("jobs.augment", logging.ERROR, "run failed")
    file_only.console = False
    assert not keep(file_only)
    assert console.ConsoleFilter(verbose=True).filter(file_only)
    step_line = record("training.train", logging.INFO, "step 7/60 loss 2.1 lr 1e-5 padding 2 % 900 tokens/s")
    assert keep(step_line)  # nothing else shows training steps
    with progress.stage(None, "models", stream=io.StringIO()):
        progress.training_step(7, 60, 2.1)
        assert not keep(step_line)  # the progress display does


def test_setup_logging_writes_everything_to_the_log_folder(tmp_path, monkeypatch, capsys):
    for name in console.ENVIRONMENT:  # restored after the test
        monkeypatch.delenv(name, raising=False)
    logs = console.setup_logging(str(tmp_path / "tables"))
    try:
        assert logs.dir.parent == tmp_path / "tables" / "logs"
        assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", logs.dir.name)
        logging.getLogger("jobs.test").info("ours")
        logging.getLogger("vllm.x").warning("libtcmalloc is not found in LD_PRELOAD")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("jobs.test").error("failed", exc_info=True, extra=console.FILE_ONLY)
        err = capsys.readouterr().err
        assert "ours" in err and "LD_PRELOAD" not in err and "Traceback" not in err
        text = logs.job_log.read_text()
        assert "ours" in text and "LD_PRELOAD" in text and "Traceback" in text and "ValueError: boom" in text
        assert "appender.file.fileName = " + str(logs.spark_log) in (logs.dir / "log4j2.properties").read_text()
        assert (logs.dir / "vllm_logging.json").is_file()
        assert console.session_conf(logs, "local[2]")["spark.python.daemon.module"] == "jobs.log_daemon"
        assert "spark.python.daemon.module" not in console.session_conf(logs, "spark://h:7077")
    finally:
        for handler in [h for h in logging.getLogger().handlers if getattr(h, "_humpback", False)]:
            logging.getLogger().removeHandler(handler)
            handler.close()


def test_a_catalog_root_logs_under_work_logs():
    assert console.log_folder("main.humpback").parent.name == "logs"
    assert console.log_folder("main.humpback").parent.parent.name == "work"


def test_progress_line_has_counts_rates_and_eta():
    p = progress.StageProgress("augment", started=0.0)
    p.rows_base, p.tokens_base = (0.0, 0), (0.0, 0)
    p.rows_done, p.rows_total, p.tokens = 100, 400, 5000
    line = p.describe(now=50.0)
    assert "100/400 rows" in line and "2.0 rows/s" in line and "100 tokens/s" in line and "ETA 2m30s" in line
    t = progress.StageProgress("train 1", started=0.0)
    t.step, t.steps_total, t.loss = 10, 40, 2.5
    assert "step 10/40  loss 2.500  ETA 1m30s" in t.describe(now=30.0)


def test_progress_off_a_terminal_is_plain_lines(monkeypatch):
    monkeypatch.setenv("HUMPBACK_PROGRESS_SECONDS", "0.2")
    out = io.StringIO()  # not a TTY
    with progress.stage(None, "curate (iteration 1)", stream=out):
        for done in range(1, 4):
            progress.update("curate", done=done * 10, total=30, tokens=done * 100)
            progress.training_step(done, 3, 1.0 / done)
            import time

            time.sleep(0.6)
    text = out.getvalue()
    assert text.startswith("> curate (iteration 1)\n")
    assert "/30 rows" in text and "step " in text
    assert "\x1b" not in text and "\r" not in text
    progress.update("curate", 1, 2)  # no stage running: a no-op


def test_summary_table_drops_and_places():
    summary = {
        "run_id": "r1",
        "stages": [
            {
                "stage": "segment_v1",
                "iteration": None,
                "rows_in": 27,
                "rows_written": 245,
                "seconds": 14.0,
                "by_status": {
                    "ok": 184,
                    "dropped:too_short": 45,
                    "dropped:too_long": 4,
                    "dropped:a": 3,
                    "dropped:b": 1,
                },
            },
            {
                "stage": "curate_v1",
                "iteration": 1,
                "rows_in": 10,
                "rows_written": 10,
                "seconds": 3.0,
                "by_status": {"ok": 10},
            },
        ],
        "curation": [
            {"iteration": 1, "rule": "score >= 5", "pairs": 10, "curated": 4, "yield": 0.4, "mean_expected_score": 3.1}
        ],
    }
    pr = PrecisionRecall(k=5, pairs=48, good=12, kept=8, good_kept=6, precision=0.75, recall=0.5)
    text = run_summary.format_run(
        summary, [JudgeCalibration(1, "m0", pr, [])], {"tables": "/t", "logs": "/l"}, "spark-submit jobs/export.py"
    )
    assert "too_short 45, too_long 4, a 3, other 1" in text
    assert "curate_v1 1" in text
    assert "iteration 1: 4 of 10 pairs curated (40.0 %, score >= 5, mean expected score 3.10)" in text
    assert "precision 75 %, recall 50 % at k=5" in text
    assert "  logs    /l" in text and text.endswith("spark-submit jobs/export.py")
    command = run_summary.next_command("conf/local.yaml", ["spark.conf.spark.hadoop.fs.s3a.secret.key=s3cr3t"])
    assert "s3cr3t" not in command and "jobs/export.py --config conf/local.yaml" in command
    places = run_summary.places(SimpleNamespace(models_dir="/m", storage=SimpleNamespace(root="/t")), "/l", "/r.html")
    assert places["mlflow"] == "mlflow ui --backend-store-uri sqlite:////m/mlruns/mlflow.db"


def test_the_summary_counts_the_seed_pairs_left_out_for_evaluation_overlap():
    models = {"stage": "models_v1", "iteration": None, "rows_in": 0, "rows_written": 0, "seconds": 9.0}
    models["by_status"] = {}
    models["extra"] = {"backward": {"seed_excluded": {"eval_overlap:a": 2}}, "seed_model": {"seed_excluded": {}}}
    train = {
        **models,
        "stage": "train_v1",
        "iteration": 1,
        "extra": {"seed_excluded": {"eval_overlap:a": 2, "eval_overlap:b": 1}},
    }
    summary = {"run_id": "r1", "stages": [models, train], "curation": []}
    assert run_summary.seed_excluded(summary) == {"eval_overlap:a": 2, "eval_overlap:b": 1}
    text = run_summary.format_run(summary, [], {"tables": "/t"}, "next")
    assert "seed pairs left out of training: 3 (eval_overlap:a 2, eval_overlap:b 1)" in text
    clean = {**summary, "stages": [{**models, "extra": {}}]}
    assert "seed pairs left out" not in run_summary.format_run(clean, [], {"tables": "/t"}, "next")


def test_summary_prints_the_judge_calls_the_cascade_saved_and_its_recall():
    figures = {"sample": 100, "sample_kept": 40, "threshold": 0.125, "sample_recall": 0.95}
    summary = {
        "run_id": "r1",
        "stages": [
            {
                "stage": "curate_v1",
                "iteration": 1,
                "rows_in": 1000,
                "rows_written": 1000,
                "seconds": 3.0,
                "by_status": {"ok": 300, "dropped:cascade_rejected": 700},
                "extra": {"cascade": figures},
            },
        ],
        "curation": [
            {
                "iteration": 1,
                "rule": "score >= 5",
                "pairs": 1000,
                "curated": 90,
                "yield": 0.09,
                "cascade_rejected": 700,
            },
            {"iteration": 2, "rule": "score >= 5", "pairs": 1000, "curated": 90, "yield": 0.09, "cascade_rejected": 0},
        ],
    }
    text = run_summary.format_run(summary, [], {"tables": "/t"}, "next")
    assert (
        "cascade: 700 of 1,000 judge calls saved (70.0 %), 300 LLM-judged; recall of the judge's kept pairs on the "
        "held-out sample 95.0 % (40 kept of 100, threshold 0.125)" in text
    )
    assert text.count("cascade:") == 1  # iteration 2 judged every pair
