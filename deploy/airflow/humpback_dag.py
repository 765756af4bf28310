"""Airflow DAG: the Humpback pipeline on your own Spark cluster, scheduled weekly like databricks.yml's job.

One SparkSubmitOperator task per stage and iteration, in run order (ingest, segment, models, augment, then
curate and train once per iteration, in turn, then calibrate), each depending on the one before; a failed task
is retried or re-run on its own, and every stage skips the keys its table already has, so a re-run resumes.

Setup: put this file in Airflow's dags folder (Airflow 2.7+ or 3; pip install apache-airflow-providers-apache-spark);
check the project out on the Airflow workers at HUMPBACK_PROJECT (spark-submit runs jobs/augment.py and reads
conf/ from it; client deploy mode, as the driver fine-tunes and needs a GPU); install the wheel on the cluster
nodes (pip install 'humpback-spark[gpu]'); point the Airflow connection ``spark_default`` at the master
(spark://..., yarn, k8s://...); set HUMPBACK_OVERRIDES to your corpus, seed, storage root and models.

TASKS is checked against the stage registry (jobs.stages) by ``python -m deploy.check``, which ``--write``
regenerates after a change of stages or of iterations.count in conf/cluster.yaml.
"""

from __future__ import annotations

import os
import shlex
from datetime import datetime, timedelta

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

try:
    from airflow.sdk import DAG  # Airflow 3
except ImportError:  # Airflow 2
    from airflow import DAG

PROJECT = os.environ.get("HUMPBACK_PROJECT", "/opt/humpback-spark")
CONFIG = "conf/cluster.yaml"
PROPERTIES = "conf/spark-gpu.conf"  # one GPU per executor; Delta; the LLM stages' GPU profile needs Spark >= 4.0
OVERRIDES = shlex.split(
    os.environ.get(
        "HUMPBACK_OVERRIDES",
        "storage.root=s3://humpback/tables input.corpus=s3://humpback/corpus/*.warc.gz "
        "input.seed=/mnt/humpback/seed.jsonl models.dir=/mnt/humpback/models "
        "models.base=/mnt/humpback/models/Llama-2-7b-hf report.dir=/mnt/humpback/reports",
    )
)
SCHEDULE = "0 3 * * 0"  # weekly, Sunday 03:00 UTC (databricks.yml: quartz "0 0 3 ? * SUN")
# (stage, iteration) in run order: jobs.stages.schedule(STAGE_NAMES, 1..iterations.count) for CONFIG
TASKS = [
    ("ingest", None),
    ("segment", None),
    ("models", None),
    ("augment", None),
    ("likelihood", None),
    ("curate", 1),
    ("rewrite", 1),
    ("train", 1),
    ("curate", 2),
    ("rewrite", 2),
    ("train", 2),
    ("calibrate", None),
]
RETRIES = {
    "augment": 2,
    "likelihood": 2,
    "curate": 2,
    "rewrite": 2,
}  # LLM stages: a retry redoes at most the chunk in flight (engine.commit_rows)


def task_id(stage: str, iteration: int | None) -> str:
    return stage if iteration is None else f"{stage}_{iteration}"


def job_args(stage: str, iteration: int | None) -> list[str]:
    """jobs/augment.py's command line for one stage (of one iteration)."""
    args = ["--config", f"{PROJECT}/{CONFIG}", "--stages", stage]
    if iteration is not None:
        args += ["--iterations", str(iteration)]
    for override in OVERRIDES:
        args += ["--set", override]
    return args


with DAG(
    dag_id="humpback",
    description="Instruction backtranslation (Humpback): one spark-submit per stage and iteration",
    schedule=SCHEDULE,
    start_date=datetime(2026, 1, 4),
    catchup=False,
    max_active_runs=1,  # two runs would generate the same missing keys twice
    default_args={"retry_delay": timedelta(minutes=5)},
    tags=["humpback", "spark", "gpu"],
) as dag:
    previous = None
    for stage, iteration in TASKS:
        task = SparkSubmitOperator(
            task_id=task_id(stage, iteration),
            conn_id="spark_default",
            application=f"{PROJECT}/jobs/augment.py",
            properties_file=f"{PROJECT}/{PROPERTIES}",
            application_args=job_args(stage, iteration),
            name=f"humpback-{task_id(stage, iteration)}",
            retries=RETRIES.get(stage, 0),
        )
        if previous is not None:
            previous >> task
        previous = task
