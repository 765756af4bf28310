"""The Databricks notebooks are source-format shells, one per stage plus the whole loop, over jobs.notebook."""

import ast
from pathlib import Path

import pytest

from jobs.stages import STAGE_NAMES
from jobs.notebook import job_args, project_root

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def shell_call(path: Path) -> ast.Call:
    """The notebook's one ``run_from_widgets(...)`` call."""
    calls = [
        n
        for n in ast.walk(ast.parse(path.read_text()))
        if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "run_from_widgets"
    ]
    assert len(calls) == 1, path.name
    return calls[0]


def test_every_notebook_is_databricks_source_format():
    notebooks = sorted(NOTEBOOKS.glob("*.py"))
    assert notebooks
    for path in notebooks:
        assert path.read_text().startswith("# Databricks notebook source\n"), path.name


def test_one_notebook_per_stage_runs_that_stage_and_the_loop_notebook_runs_them_all():
    assert {p.stem for p in NOTEBOOKS.glob("*.py")} == {*STAGE_NAMES, "loop", "export"}  # export: jobs/export.py
    for stage in STAGE_NAMES:
        call = shell_call(NOTEBOOKS / f"{stage}.py")
        assert [ast.literal_eval(a) for a in call.args[1:]] == [stage]
    assert len(shell_call(NOTEBOOKS / "loop.py").args) == 1  # stages from its widget


def test_overrides_widget_is_shell_split_into_set_arguments():
    overrides = "storage.root=main.humpback  input.corpus='/Volumes/main/raw/crawl 2024/*.warc.gz'\nmodels.base=/m"
    assert job_args("conf/cluster.yaml", overrides, "ingest,segment") == [
        "--config",
        "conf/cluster.yaml",
        "--stages",
        "ingest,segment",
        "--set",
        "storage.root=main.humpback",
        "--set",
        "input.corpus=/Volumes/main/raw/crawl 2024/*.warc.gz",
        "--set",
        "models.base=/m",
    ]
    assert job_args("c.yaml", "  ", "train") == ["--config", "c.yaml", "--stages", "train"]
    assert job_args("c.yaml", "", "curate", iterations=" 2 ", dry_run=True) == [
        "--config",
        "c.yaml",
        "--stages",
        "curate",
        "--iterations",
        "2",
        "--dry-run",
    ]
    with pytest.raises(ValueError, match="quotation"):
        job_args("c.yaml", "input.corpus='unclosed", "ingest")


def test_project_root_is_the_nearest_folder_with_conf(tmp_path):
    root = tmp_path / "project"
    for folder in ("conf", "notebooks"):
        (root / folder).mkdir(parents=True)
    assert project_root(root / "notebooks") == root  # where Databricks starts a notebook
    assert project_root(root) == root
    assert project_root(tmp_path) is None
