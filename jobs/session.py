"""Build or reuse the SparkSession: under spark-submit or in a notebook, their settings win over ours."""

from __future__ import annotations

import os

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

from jobs import console
from jobs.config import SparkConfig
from udfs.hardware import usable_cores

# Defaults that suit every stage; any of them set by spark-submit --conf or the cluster is left alone.
DEFAULTS = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",  # readable by delta-rs (not INT96)
    "spark.python.worker.reuse": "true",  # keeps each worker's LLM engine alive across tasks
}


def local_defaults(master: str, cores: int | None = None) -> dict[str, str]:
    """Settings a local master takes from the machine it runs on (``cores``: this process's usable cores).
    Spark gives Python workers OMP_NUM_THREADS=1 (or its task's cores); the one LLM task (``engine.partitions:
    1``) should use every core: measured on 2 cores, the Spark path ran at 0.65x of bare vLLM without it, 1.15x
    with it."""
    if not master.startswith("local"):
        return {}
    return {"spark.executorEnv.OMP_NUM_THREADS": str(cores or usable_cores())}


def get_session(cfg: SparkConfig, logs: console.RunLogs | None = None) -> SparkSession:
    """The session; with ``logs`` the JVM and local Python workers log into the run's log folder."""
    active = SparkSession.getActiveSession()
    if active is not None:  # Databricks notebooks and jobs: the platform owns the session
        return active
    if "PYSPARK_GATEWAY_PORT" in os.environ:
        # Under spark-submit the JVM is up with its --master/--conf, but SparkConf() reads them only once Python
        # is connected to it (before that it is an empty dict, and cfg.master would replace the cluster's master).
        SparkContext._ensure_initialized()
        if logs is not None:  # the JVM started before us: reconfigure its log4j2 before the SparkContext logs
            console.reconfigure_jvm(SparkContext, logs)
    conf = SparkConf()
    builder = SparkSession.builder.appName(cfg.app_name)
    if not conf.contains("spark.master"):
        builder = builder.master(cfg.master)
    master = conf.get("spark.master", cfg.master)
    logging_conf = console.session_conf(logs, master) if logs is not None else {}
    for key, value in {**DEFAULTS, **local_defaults(master), **logging_conf, **cfg.conf}.items():
        if not conf.contains(key):
            builder = builder.config(key, str(value))
    return builder.getOrCreate()
