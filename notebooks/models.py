# Databricks notebook source
# MAGIC %md
# MAGIC # Models
# MAGIC The base model, M_yx (trained on reversed seed pairs) and M0 (trained on seed pairs), on the driver.
# MAGIC
# MAGIC A thin shell over `jobs.augment.main --stages models`: the same code, tables and config as `spark-submit`.
# MAGIC Widgets: `config` (YAML from the project root), `overrides` (`key=value ...`) and `dry_run`.
# MAGIC Safe to re-run: done keys are skipped.

# COMMAND ----------

from jobs.notebook import run_from_widgets

summary = run_from_widgets(dbutils, "models")  # noqa: F821 (dbutils is Databricks')
