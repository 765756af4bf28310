# Databricks notebook source
# MAGIC %md
# MAGIC # Instruction backtranslation: the whole pipeline
# MAGIC A thin shell over `jobs/augment.py`: the same stages, tables and config as `spark-submit`.
# MAGIC Widgets: the config file, `key=value` overrides (one per line) and the stages to run.

# COMMAND ----------

dbutils.widgets.text("config", "conf/cluster.yaml", "Config file")  # noqa: F821 (dbutils is Databricks')
dbutils.widgets.text("overrides", "", "Overrides (key=value per line)")  # noqa: F821
dbutils.widgets.text("stages", "ingest,segment,models,augment,curate,train", "Stages")  # noqa: F821

# COMMAND ----------

from jobs.augment import main

args = ["--config", dbutils.widgets.get("config"), "--stages", dbutils.widgets.get("stages")]  # noqa: F821
for line in dbutils.widgets.get("overrides").splitlines():  # noqa: F821
    if line.strip():
        args += ["--set", line.strip()]
summary = main(args)

# COMMAND ----------

display(spark.createDataFrame([(s["stage"], s["rows_written"], s["seconds"]) for s in summary["stages"]], "stage string, rows long, seconds double"))  # noqa: F821
