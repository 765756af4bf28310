# Databricks notebook source
# MAGIC %md
# MAGIC # Export
# MAGIC An iteration's training set (seed + curated pairs, exactly what M_N was trained on) as JSONL + Parquet in the
# MAGIC chat-messages schema, with lineage columns and a dataset card (`jobs/export.py`).
# MAGIC Widgets: `config`, `overrides` (`key=value ...`), `iteration` (empty: the last) and `out` (a folder,
# MAGIC e.g. a volume).

# COMMAND ----------

from jobs.export import export_from_widgets

folder = export_from_widgets(dbutils)  # noqa: F821 (dbutils is Databricks')
