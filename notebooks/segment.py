# Databricks notebook source
# MAGIC %md
# MAGIC # Segment
# MAGIC `documents` -> `segments`: sections under HTML headers, the paper's filters, dedup.
# MAGIC
# MAGIC A thin shell over `jobs.augment.main --stages segment`: the same code, tables and config as `spark-submit`.
# MAGIC Widgets: `config` (YAML from the project root), `overrides` (`key=value ...`) and `dry_run`.
# MAGIC Safe to re-run: done keys are skipped.

# COMMAND ----------

from jobs.notebook import run_from_widgets

summary = run_from_widgets(dbutils, "segment")  # noqa: F821 (dbutils is Databricks')
