# Databricks notebook source
# MAGIC %md
# MAGIC # Rewrite
# MAGIC Iteration i's curated segments rewritten by an aligned model into answers to their instructions, with their
# MAGIC faithfulness to the segment -> `rewrites` (optional: `rewrite.enabled`; off, the task runs nothing).
# MAGIC
# MAGIC A thin shell over `jobs.augment.main --stages rewrite`: the same code, tables and config as `spark-submit`.
# MAGIC Widgets: `config` (YAML from the project root), `overrides` (`key=value ...`), `iterations` (`2`; empty: all)
# MAGIC and `dry_run`. Safe to re-run: done keys are skipped.

# COMMAND ----------

from jobs.notebook import run_from_widgets

summary = run_from_widgets(dbutils, "rewrite")  # noqa: F821 (dbutils is Databricks')
