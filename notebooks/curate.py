# Databricks notebook source
# MAGIC %md
# MAGIC # Curate
# MAGIC Iteration i's judge (M0, then M1, ...) grades every (instruction, segment) pair on the paper's 5-point rubric
# MAGIC -> `scores`.
# MAGIC
# MAGIC A thin shell over `jobs.augment.main --stages curate`: the same code, tables and config as `spark-submit`.
# MAGIC Widgets: `config` (YAML from the project root), `overrides` (`key=value ...`), `iterations` (`2`; empty: all)
# MAGIC and `dry_run`. Safe to re-run: done keys are skipped.

# COMMAND ----------

from jobs.notebook import run_from_widgets

summary = run_from_widgets(dbutils, "curate")  # noqa: F821 (dbutils is Databricks')
