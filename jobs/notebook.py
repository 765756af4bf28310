"""What every Databricks notebook in ``notebooks/`` does: widgets -> ``jobs.augment.main`` arguments -> run.

A notebook is a shell of two lines, ``from jobs.notebook import run_from_widgets`` and
``run_from_widgets(dbutils, "ingest")`` (or no stage: the whole loop, with a ``stages`` widget). Its widgets:

- ``config``: the pipeline YAML, relative to the project root (default ``conf/cluster.yaml``);
- ``overrides``: ``dotted.key=value`` items separated by spaces, shell-quoted when a value has one
  (widgets and job parameters are single-line), e.g. ``storage.root=main.humpback input.corpus='/Volumes/x/*.warc.gz'``;
- ``iterations`` (the loop, curate and train): comma-separated iterations, empty for all (``iterations.count``);
- ``dry_run``: ``true`` prints the plan and what is already done, and runs nothing.

Job parameters and task parameters of the same names (``databricks.yml``) fill the widgets in a job run.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from jobs.augment import main
from jobs.stages import ITERATION_STAGES, STAGE_NAMES

DEFAULT_CONFIG = "conf/cluster.yaml"


def project_root(start: Path) -> Path | None:
    """The nearest of ``start`` and its parents that holds ``conf/``, or None."""
    return next((folder for folder in (start, *start.parents) if (folder / "conf").is_dir()), None)


def job_args(config: str, overrides: str, stages: str, iterations: str = "", dry_run: bool = False) -> list[str]:
    """The ``jobs.augment`` command line for these widget values."""
    args = ["--config", config, "--stages", stages]
    if iterations.strip():
        args += ["--iterations", iterations.strip()]
    for item in shlex.split(overrides):
        args += ["--set", item]
    return [*args, "--dry-run"] if dry_run else args


def run_from_widgets(dbutils, stage: str | None = None) -> dict:
    """Declare the widgets, read them and run ``stage`` (None: the stages named by the ``stages`` widget)."""
    widgets = dbutils.widgets
    widgets.text("config", DEFAULT_CONFIG, "Config file")
    widgets.text("overrides", "", "Overrides (key=value ...)")
    iterated = stage is None or stage in ITERATION_STAGES
    if stage is None:
        widgets.text("stages", ",".join(STAGE_NAMES), "Stages")
    if iterated:
        widgets.text("iterations", "", "Iterations (empty: all)")
    widgets.dropdown("dry_run", "false", ["false", "true"], "Dry run")
    # Databricks starts a notebook in its own folder; config files name conf/ paths from the project root.
    root = project_root(Path.cwd())
    if root is not None and root != Path.cwd():
        os.chdir(root)
    iterations = widgets.get("iterations") if iterated else ""
    stages = stage or widgets.get("stages")
    return main(
        job_args(widgets.get("config"), widgets.get("overrides"), stages, iterations, widgets.get("dry_run") == "true")
    )
