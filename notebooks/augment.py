# Databricks notebook source
# MAGIC %md
# MAGIC # Augment
# MAGIC M_yx writes one instruction per ok segment with vLLM on the workers' GPUs -> `candidates`.
# MAGIC
# MAGIC A thin shell over `jobs.augment.main --stages augment`: the same code, tables and config as `spark-submit`.
# MAGIC Widgets: `config` (YAML from the project root), `overrides` (`key=value ...`) and `dry_run`.
# MAGIC Safe to re-run: done keys are skipped.

# COMMAND ----------

from jobs.notebook import run_from_widgets

summary = run_from_widgets(dbutils, "augment")  # noqa: F821 (dbutils is Databricks')
