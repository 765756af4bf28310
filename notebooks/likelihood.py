# Databricks notebook source
# MAGIC %md
# MAGIC # Likelihood
# MAGIC IFD and the conditional loss of every candidate pair under a scorer model (prompt log-probabilities, no
# MAGIC generation) -> `likelihoods`. Off unless `likelihood.enabled`.
# MAGIC
# MAGIC A thin shell over `jobs.augment.main --stages likelihood`: the same code, tables and config as `spark-submit`.
# MAGIC Widgets: `config` (YAML from the project root), `overrides` (`key=value ...`) and `dry_run`.
# MAGIC Safe to re-run: done keys are skipped.

# COMMAND ----------

from jobs.notebook import run_from_widgets

summary = run_from_widgets(dbutils, "likelihood")  # noqa: F821 (dbutils is Databricks')
