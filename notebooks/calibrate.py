# Databricks notebook source
# MAGIC %md
# MAGIC # Calibrate
# MAGIC Each iteration's judge rates the labelled pairs of `report.judge_labels` -> `calibration` (the paper's Table 7).
# MAGIC
# MAGIC A thin shell over `jobs.augment.main --stages calibrate`: the same code, tables and config as `spark-submit`.
# MAGIC Widgets: `config` (YAML from the project root), `overrides` (`key=value ...`) and `dry_run`.
# MAGIC Safe to re-run: done keys are skipped.

# COMMAND ----------

from jobs.notebook import run_from_widgets

summary = run_from_widgets(dbutils, "calibrate")  # noqa: F821 (dbutils is Databricks')
