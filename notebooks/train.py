# Databricks notebook source
# MAGIC %md
# MAGIC # Train
# MAGIC M_i on the seed pairs plus iteration i's curated pairs, read from pinned Delta versions.
# MAGIC
# MAGIC A thin shell over `jobs.augment.main --stages train`: the same code, tables and config as `spark-submit`.
# MAGIC Widgets: `config` (YAML from the project root), `overrides` (`key=value ...`), `iterations` (`2`; empty: all)
# MAGIC and `dry_run`. Safe to re-run: done keys are skipped.

# COMMAND ----------

from jobs.notebook import run_from_widgets

summary = run_from_widgets(dbutils, "train")  # noqa: F821 (dbutils is Databricks')
