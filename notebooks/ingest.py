# Databricks notebook source
# MAGIC %md
# MAGIC # Ingest
# MAGIC Web pages (WARC, WET, HTML, JSONL, Parquet) -> the `documents` table, one row per record with its status.
# MAGIC
# MAGIC A thin shell over `jobs.augment.main --stages ingest`: the same code, tables and config as `spark-submit`.
# MAGIC Widgets: `config` (YAML from the project root), `overrides` (`key=value ...`) and `dry_run`.
# MAGIC Safe to re-run: done keys are skipped.

# COMMAND ----------

from jobs.notebook import run_from_widgets

summary = run_from_widgets(dbutils, "ingest")  # noqa: F821 (dbutils is Databricks')
