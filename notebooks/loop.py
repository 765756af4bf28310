# Databricks notebook source
# MAGIC %md
# MAGIC # Instruction backtranslation: the whole loop
# MAGIC ingest -> segment -> models -> augment -> (curate -> train) per iteration -> calibrate,
# MAGIC as `spark-submit jobs/augment.py` runs it.
# MAGIC
# MAGIC A thin shell over `jobs.augment.main`. Widgets: `config` (YAML from the project root), `overrides`
# MAGIC (`key=value ...`), `stages` (a comma-separated subset), `iterations` (empty: all) and `dry_run`.
# MAGIC Re-running resumes where a run stopped.

# COMMAND ----------

from jobs.notebook import run_from_widgets

summary = run_from_widgets(dbutils)  # noqa: F821 (dbutils is Databricks')
