"""The main job on a real Spark standalone cluster (a master and two workers on 127.0.0.1), through
tests/cluster/standalone_cluster.sh: spark-submit --master spark://..., the project shipped as the wheel.

Deselect with ``-m "not cluster"``. Prebuilt tiny models keep it short: fine-tuning runs on the driver with
the same code as in local mode (tests/spark/test_pipeline.py); what only a cluster tests is executors in
their own JVMs and processes, on two workers, importing the project from the shipped wheel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.cluster

SCRIPT = ROOT / "tests/cluster/standalone_cluster.sh"


def test_the_job_runs_unchanged_on_a_standalone_cluster(tiny_model, tmp_path):
    work = tmp_path / "cluster"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHON=sys.executable, CLUSTER_DIR=str(work))
    args = [
        "--stages",
        "ingest,segment,models,augment,curate",
        "--iterations",
        "1",  # M0 judges; no M1 to train
        "--set",
        "augment.sampling.max_tokens=16",
        "--set",
        "curate.sampling.max_tokens=16",
        "--set",
        "report.after_run=false",
    ]  # the report runs on the driver only (tests/spark/test_report.py)
    for role in ("base", "backward", "seed_model"):
        args += ["--set", f"models.{role}={tiny_model}"]
    result = subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=900)
    print(result.stdout)  # the cluster's and the job's figures (pytest -s, or on failure)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    figures = json.loads(result.stdout.split("checks passed:")[1].splitlines()[0])
    assert figures["stages"] == ["augment", "curate", "ingest", "models", "segment"]
    assert (
        set(figures["tasks_per_worker"]) == {"worker-1", "worker-2"} and min(figures["tasks_per_worker"].values()) > 0
    )
    assert figures["rows"]["documents"] == 29 and figures["ok"]["documents"] == 27  # data/sample: 2 records not HTML
    assert figures["rows"]["candidates"] == figures["ok"]["segments"] > 0
    assert figures["rows"]["scores"] == figures["ok"]["candidates"]
    pids = [int(p) for p in result.stdout.split("cluster stopped (pids ")[1].split(")")[0].split()]
    assert len(pids) == 3  # master and two workers, started and stopped by the script
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
