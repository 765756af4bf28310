"""Whether a Spark session can schedule stage-level resource profiles: what the LLM stages' GPU profile
(``jobs.stages.base.gpu_profile``) and training's whole-GPU barrier job (``training.spark_distributor``) both
ask before they request one."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pyspark

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

PROFILE_MIN_SPARK = (4, 0)  # DataFrame.mapInPandas(profile=) is new in Spark 4.0


def profile_unavailable(spark: SparkSession) -> str | None:
    """Why this session cannot run a task-level resource profile, or None when it can."""
    for side, version in (("pyspark", pyspark.__version__), ("Spark", spark.version)):
        if version_tuple(version) < PROFILE_MIN_SPARK:
            return f"{side} {version} has no stage-level profiles for mapInPandas (Spark >= 4.0)"
    if spark.conf.get("spark.dynamicAllocation.enabled", "false").strip().lower() == "true":
        # A task-only profile shares the running executors only without dynamic allocation; with it Spark
        # asks for new executors of that profile, which GPUs held by the idle default executors can block.
        return "spark.dynamicAllocation.enabled is true"
    master = spark.conf.get("spark.master", "")
    if master == "local" or master.startswith("local["):
        # Spark rejects task profiles in local mode ("only supported for Standalone, Yarn and Kubernetes").
        return f"master {master} (local mode)"
    return None


def version_tuple(version: str) -> tuple[int, int]:
    """(major, minor) of a Spark version string such as ``4.0.0``, ``3.5.2-databricks`` or ``4.1.0.dev0``."""
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        raise ValueError(f"not a Spark version: {version!r}")
    return int(match[1]), int(match[2])
