"""Where a run's logs, report and models go for each kind of storage.root: ``dbfs:/`` through Databricks'
/dbfs FUSE mount (never a local folder named ``dbfs:``), a /Volumes path as itself, a Unity Catalog schema
in its volumes, and an object store root with logs and reports on the driver and models where models.dir says
(refused without one: the executors could not load models from the driver's disk)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs import console
from jobs.catalog import driver_path
from jobs.config import load_pipeline_config
from tests.conftest import ROOT
from udfs.config import ConfigError

CLUSTER = str(ROOT / "conf/cluster.yaml")


def cfg(root: str, *overrides: str):
    return load_pipeline_config(CLUSTER, [f"storage.root={root}", "models.dir=null", *overrides])


@pytest.mark.parametrize(
    ("root", "logs", "reports", "models"),
    [
        (
            "dbfs:/humpback/tables",
            "/dbfs/humpback/tables/logs",
            "/dbfs/humpback/tables/reports",
            "/dbfs/humpback/tables/models",
        ),
        (
            "dbfs:/humpback/tables/",
            "/dbfs/humpback/tables/logs",
            "/dbfs/humpback/tables/reports",
            "/dbfs/humpback/tables/models",
        ),
        (
            "/Volumes/main/humpback/tables",
            "/Volumes/main/humpback/tables/logs",
            "/Volumes/main/humpback/tables/reports",
            "/Volumes/main/humpback/tables/models",
        ),
        ("main.humpback", "work/logs", "/Volumes/main/humpback/reports", "/Volumes/main/humpback/models"),
    ],
)
def test_logs_reports_and_models_of_a_root(root, logs, reports, models):
    config = cfg(root)
    folder = console.log_folder(root)
    expected = Path(logs) if logs.startswith("/") else Path.cwd() / logs
    assert folder.parent == expected and "dbfs:" not in str(folder)
    assert config.reports_dir == reports
    assert config.models_dir == models and config.model_path("backward") == f"{models}/myx"


def test_an_object_store_root_logs_and_reports_on_the_driver_and_needs_models_dir():
    root = "s3://bucket/humpback/tables"
    with pytest.raises(ConfigError, match=r"models\.dir: storage\.root s3://bucket/humpback/tables is an object store"):
        cfg(root)
    config = cfg(root, "models.dir=/data/models")
    assert config.model_path("seed_model") == "/data/models/m0"  # not <cwd>/s3:/bucket/...
    assert console.log_folder(root).parent == Path.cwd() / "work/logs"
    assert config.reports_dir == "work/reports"
    assert "s3:" not in str(Path(config.reports_dir).absolute())


@pytest.mark.parametrize(
    ("root", "path"),
    [
        ("dbfs:/x", "/dbfs/x"),
        ("dbfs:///x/y", "/dbfs/x/y"),
        ("/data/t", "/data/t"),
        ("work/t", "work/t"),
        ("s3://b/t", None),
        ("abfss://c@a.dfs.core.windows.net/t", None),
        ("gs://b/t", None),
        ("main.humpback", None),
    ],
)
def test_driver_path(root, path):
    assert driver_path(root) == path
