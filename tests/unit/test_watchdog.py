"""The engine watchdog and the failure ledger's pure parts: deadlines, the fake engine's faults, the one-line
error of a failed run and what the console prints for it. No Spark."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest

from jobs.config import load_pipeline_config
from jobs.run_summary import failure_reason, format_failure
from tests.conftest import ROOT
from udfs.config import ConfigError
from udfs.engine import EngineConfig, SamplingConfig, engine_args
from udfs.fake_engine import FakeEngine
from udfs.llm_rows import augment_batch
from udfs.prompts import PromptTemplate
from udfs.watchdog import STARTUP_SECONDS, EngineStalled, batch_deadline, call_with_deadline

SAMPLING = SamplingConfig(max_tokens=16)
BACKWARD = PromptTemplate.load("conf/prompts/backtranslate_v1.txt")
ROWS = pd.DataFrame({"generation_id": ["0" * 32], "segment_id": ["s0"], "text": ["A tuple is an immutable sequence."]})


def fake(fault: str) -> FakeEngine:
    return FakeEngine(engine_args("/models/fake", EngineConfig(name="fake", fake_fault=fault)))


def augment(engine: FakeEngine) -> pd.DataFrame:
    return augment_batch(engine, ROWS, "m", BACKWARD, SAMPLING, EngineConfig(name="fake"), 2000)


def test_a_call_within_its_deadline_returns_its_result():
    assert call_with_deadline(lambda: augment(fake("none")), 30, "augment: batch of 1 rows")["status"].tolist() == [
        "ok"
    ]


def test_a_hanging_engine_is_stalled_at_the_deadline_with_a_message_naming_stage_batch_and_deadline():
    start = time.monotonic()
    with pytest.raises(EngineStalled) as stalled:
        call_with_deadline(lambda: augment(fake("hang")), 0.5, "augment: batch of 1 rows")
    assert 0.5 <= time.monotonic() - start < 5
    message = str(stalled.value)
    assert (
        message.startswith("augment: batch of 1 rows: ")
        and "deadline of 0.5 s (engine.batch_deadline_seconds)" in message
    )
    stuck = [t for t in threading.enumerate() if t.name == "engine-call: augment: batch of 1 rows"]
    assert stuck and all(t.daemon for t in stuck)  # the worker process can still exit


def test_a_dying_engine_raises_its_own_error_through_the_watchdog():
    with pytest.raises(RuntimeError, match=r"fake engine died generating 1 prompts \(engine.fake_fault=raise\)"):
        call_with_deadline(lambda: augment(fake("raise")), 30, "augment: batch of 1 rows")


def test_the_default_deadline_scales_with_the_batch_and_is_longer_on_cpu():
    assert batch_deadline(1024, 256, "gpu", configured=42.0) == 42.0
    small, big = batch_deadline(1, 256, "cpu"), batch_deadline(1024, 256, "cpu")
    assert small > STARTUP_SECONDS["cpu"] and big > small
    assert batch_deadline(1024, 256, "cpu") > batch_deadline(1024, 256, "gpu")
    # The embedded default's largest batch stays under a few hours on CPU: a stall is found the same day.
    assert batch_deadline(1024, 96, "cpu") < 4 * 3600


@pytest.mark.parametrize(
    "override, message",
    [
        (["engine.fake_fault=hang"], r"engine: fake_fault='hang' is for the fake engine"),
        (["engine.name=fake", "engine.fake_fault=stall"], r"engine\.fake_fault: must be one of"),
        (["engine.batch_deadline_seconds=0"], r"engine: batch_deadline_seconds must be > 0"),
    ],
)
def test_bad_watchdog_settings_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_pipeline_config(str(ROOT / "conf/local.yaml"), override)


def test_the_fault_is_only_an_argument_of_a_faulty_fake_engine():
    assert "fault" not in engine_args("/m", EngineConfig())
    assert engine_args("/m", EngineConfig(name="fake", fake_fault="hang"))["fault"] == "hang"


SPARK_TEXT = """[PYTHON_EXCEPTION] An exception was thrown from the Python worker. Please see the stack trace below.
Traceback (most recent call last):
  File "/x/pyspark/worker.py", line 3400, in main
    process()
  File "/w/udfs/watchdog.py", line 60, in call_with_deadline
    raise EngineStalled(
udfs.watchdog.EngineStalled: augment: batch of 3 rows: the engine returned nothing within the deadline of 5 s
"""


class FakeSparkError(Exception):
    """What the driver gets from a failed Spark job: the executor's traceback in the message."""


def test_the_reason_of_a_failed_run_is_one_line_and_the_executors_own_error():
    assert failure_reason(FakeSparkError(SPARK_TEXT)) == (
        "EngineStalled: augment: batch of 3 rows: the engine returned nothing within the deadline of 5 s"
    )
    assert failure_reason(ValueError("bad value\nmore detail")) == "ValueError: bad value"
    assert failure_reason(KeyError()) == "KeyError"
    long = failure_reason(RuntimeError("x" * 2000))
    assert len(long) == 500 and long.endswith("...") and "\n" not in long


def test_the_console_says_the_run_failed_where_and_what_it_had_committed():
    summary = {
        "run_id": "abc",
        "failed_stage": "augment_v1",
        "reason": "EngineStalled: augment: batch of 3 rows: ...",
        "stages": [
            {
                "stage": "ingest_v2",
                "iteration": None,
                "rows_in": 1,
                "rows_written": 4,
                "by_status": {"ok": 4},
                "seconds": 1.0,
            }
        ],
        "committed": {
            "documents": {"version_before": None, "version": 0, "rows": 4},
            "segments": {"version_before": 2, "version": 3, "rows": 10},
        },
        "runs_row_written": True,
    }
    text = format_failure(summary)
    assert text.splitlines()[:2] == [
        "run abc failed in stage augment_v1 (recorded in runs with status failed)",
        "  EngineStalled: augment: batch of 3 rows: ...",
    ]
    assert "  documents: +4 rows (new table -> v0)" in text and "  segments: +10 rows (v2 -> v3)" in text
    assert "ingest_v2" in text
    assert "committed before the failure: nothing" in format_failure(summary | {"stages": [], "committed": {}})


def test_every_llm_stage_of_the_spark_adapter_keeps_the_deadline_likelihood_too():
    from udfs import spark_udfs  # imports pyspark, needs no Spark session: outside a task there is no GPU

    cfg = EngineConfig(name="fake", fake_fault="hang", batch_deadline_seconds=0.5)
    pairs = ROWS.assign(likelihood_id=["l0"], instruction=["What is a tuple?"])
    start = time.monotonic()
    with pytest.raises(EngineStalled, match=r"^likelihood \(pool\): batch of 1 rows: .*deadline of 0\.5 s"):
        list(spark_udfs.likelihood("/models/fake-hang", "m", cfg, "pool")(iter([pairs])))
    assert time.monotonic() - start < 5
    ok = spark_udfs.likelihood("/models/fake", "m", EngineConfig(name="fake"), "pool")(iter([pairs]))
    assert next(ok)["status"].tolist() == ["ok"]
