"""Every notebook in notebooks/ run as Databricks would run it, with a small ``dbutils.widgets`` shim.

The stage notebooks run one after the other on tiny data (the whole job, stage by stage, into real Delta
tables), then the whole-loop notebook runs over the same tables and must find nothing left to do. What is
tested is the shell (widgets -> job arguments -> stage); tests/spark/test_pipeline.py tests the stages'
work, so here every segment is too short and the LLM stages have nothing to generate (no engine to load).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from deltalake import DeltaTable

from jobs.stages import ITERATION_STAGES, STAGE_NAMES
from tests.conftest import ROOT, SAMPLE_SEED, sample_pages, write_warc

pytestmark = pytest.mark.slow


class Widgets:
    """``dbutils.widgets`` as a notebook sees it: values passed by the job win over declared defaults."""

    def __init__(self, params: dict[str, str]):
        self.params = params
        self.values: dict[str, str] = {}

    def text(self, name: str, default: str, label: str | None = None) -> None:
        self.values[name] = self.params.get(name, default)

    def dropdown(self, name: str, default: str, choices: list[str], label: str | None = None) -> None:
        value = self.params.get(name, default)
        if value not in choices:
            raise ValueError(f"widget {name}: {value!r} is not one of {choices}")
        self.values[name] = value

    def get(self, name: str) -> str:
        if name not in self.values:  # Databricks: InputWidgetNotDefined
            raise KeyError(f"no widget named {name!r} was declared")
        return self.values[name]


class DBUtils:
    def __init__(self, params: dict[str, str]):
        self.widgets = Widgets(params)


def run_notebook(name: str, params: dict[str, str], **globals_) -> dict:
    path = ROOT / "notebooks" / f"{name}.py"
    namespace = {"__name__": "__main__", "dbutils": DBUtils(params), **globals_}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return namespace["summary"]


def stages_run(summary: dict) -> list[str]:
    """Stage names without their version (``ingest_v2`` -> ``ingest``)."""
    return [s["stage"].rsplit("_v", 1)[0] for s in summary["stages"]]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("notebooks")


@pytest.fixture(scope="module")
def params(tiny_model, run_dir) -> dict[str, str]:
    """Job parameters, as databricks.yml passes them: the local config and overrides for tiny inputs."""
    warc = write_warc(run_dir / "crawl.warc.gz", sample_pages(("tutorial/appetite.html", "library/colorsys.html")))
    seed = run_dir / "seed.jsonl"
    seed.write_text("".join(SAMPLE_SEED.read_text().splitlines(keepends=True)[:8]))
    overrides = [
        f"input.corpus={warc}",
        f"input.seed={seed}",
        f"storage.root={run_dir}/tables",
        f"models.dir={run_dir}/models",
        *(f"models.{role}={tiny_model}" for role in ("base", "backward", "seed_model")),
        "'models.train_overrides=[optim.max_steps=2, optim.max_seq_len=256]'",
        "segment.min_chars=100000",
        "segment.max_chars=200000",
        "iterations.count=1",
        "rewrite.enabled=true",  # the optional stages on: every notebook then runs its stage
        "likelihood.enabled=true",
        "report.after_run=false",
        "report.judge_labels=null",  # the report and calibration have their own tests
    ]
    return {"config": "conf/tiny.yaml", "overrides": " ".join(overrides)}


def test_every_notebook_runs_its_stages_into_the_tables(spark, params, run_dir):
    for stage in STAGE_NAMES:
        # As the job's task for iteration 1 would run it; no `spark` global: the notebook must not need one.
        summary = run_notebook(stage, params | ({"iterations": "1"} if stage in ITERATION_STAGES else {}))
        assert stages_run(summary) == [stage]
    tables = {
        t: DeltaTable(str(run_dir / "tables" / t)).to_pandas()
        for t in ("documents", "segments", "candidates", "scores")
    }
    assert list(tables["documents"]["status"]) == ["ok", "ok"]
    assert len(tables["segments"]) > 0 and set(tables["segments"]["reason"]) == {"too_short"}
    assert tables["candidates"].empty and tables["scores"].empty
    assert (run_dir / "models/m1/config.json").is_file()

    plan = run_notebook("loop", params | {"dry_run": "true"})
    assert plan["dry_run"] and [step["stage"] for step in plan["steps"]] == list(STAGE_NAMES)

    # The loop notebook, with `spark` defined as on Databricks, over every stage but train (which retrains M1).
    stages = [s for s in STAGE_NAMES if s != "train"]
    again = run_notebook("loop", params | {"stages": ",".join(stages)}, spark=spark)
    assert stages_run(again) == stages
    assert all(s["rows_written"] == 0 for s in again["stages"])  # nothing left to do
