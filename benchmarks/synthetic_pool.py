"""Curate over a synthetic pool written directly as tables (fake engine): stage time and driver peak memory.

    python benchmarks/synthetic_pool.py [--pairs 1000000] [--commit-rows 20000] [--work /tmp/synthetic-pool]

``write_pool`` writes ``segments`` (one ok segment per pair) and ``candidates`` (one ok instruction per
segment) with Spark, no crawl, no LLM; ``judge_dir`` makes a model directory the fake engine accepts as the
judge M0. The stage is ``jobs.stages.run_stage(ctx, "curate", 1)`` on ``conf/tiny.yaml`` with
``engine.name: fake``. Driver peak memory: the driver's Python (``ru_maxrss`` of this process) and its JVM
(VmHWM of the gateway JVM, a child of this process).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pyspark.sql import DataFrame, SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from jobs.config import PipelineConfig, load_pipeline_config  # noqa: E402
from jobs.stages import Context, run_stage  # noqa: E402
from jobs.storage import Storage  # noqa: E402
from udfs.tables import CANDIDATES, SEGMENTS, Table, ddl_types  # noqa: E402

_TEXT = "Lists hold items in order; append adds one at the end and pop removes the last one of them."


def pool_config(root: Path, commit_rows: int, judge: Path) -> PipelineConfig:
    """``conf/tiny.yaml`` with the fake engine, tables under ``root``, ``judge`` as M0."""
    overrides = {
        "storage.root": str(root / "tables"),
        "models.dir": str(root / "models"),
        "models.seed_model": str(judge),
        "engine.name": "fake",
        "engine.commit_rows": str(commit_rows),
        "report.after_run": "false",
    }
    return load_pipeline_config(str(ROOT / "conf/tiny.yaml"), [f"{k}={v}" for k, v in overrides.items()])


def judge_dir(path: Path) -> Path:
    """A model directory the fake engine takes as a judge (it loads nothing but needs a whole model's
    config.json, as ``jobs.stages.base.model_ready`` checks)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"model_type": "fake"}))
    return path


def write_pool(spark: SparkSession, storage: Storage, pairs: int) -> None:
    """``pairs`` ok segments and one ok candidate each, as the segment and augment stages would leave them
    (the columns curate reads; the others null)."""
    ids = spark.range(pairs).select(F.col("id"), F.substring(F.sha2(F.col("id").cast("string"), 256), 1, 32).alias("h"))
    segments = ids.select(
        F.col("h").alias("segment_id"),
        F.concat(F.lit(_TEXT + " Segment "), F.col("id").cast("string")).alias("text"),
        F.lit("ok").alias("status"),
    )
    candidates = ids.select(
        F.concat(F.lit("g"), F.col("h")).alias("generation_id"),
        F.col("h").alias("segment_id"),
        F.concat(F.lit("How do lists work, case "), F.col("id").cast("string"), F.lit("?")).alias("instruction"),
        F.lit("ok").alias("status"),
    )
    storage.append(SEGMENTS.name, _as_table(segments, SEGMENTS))
    storage.append(CANDIDATES.name, _as_table(candidates, CANDIDATES))


def _as_table(df: DataFrame, table: Table) -> DataFrame:
    """``df`` with every column of ``table`` in order, null where ``df`` has none."""
    return df.select(
        *[F.col(c) if c in df.columns else F.lit(None).cast(t).alias(c) for c, t in ddl_types(table.schema).items()]
    )


def driver_peak_mib(spark: SparkSession) -> dict[str, float]:
    """Peak resident memory of the driver's Python process and of its JVM, in MiB."""
    python = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    status = Path(f"/proc/{pid}/status").read_text()
    jvm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024
    return {"driver_python_mib": round(python, 1), "driver_jvm_mib": round(jvm, 1)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--commit-rows", type=int, default=20_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/synthetic-pool"))
    args = parser.parse_args(argv)
    shutil.rmtree(args.work, ignore_errors=True)
    cfg = pool_config(args.work, args.commit_rows, judge_dir(args.work / "judge"))
    from jobs.session import get_session

    spark = get_session(cfg.spark)
    spark.sparkContext.setLogLevel("ERROR")
    storage = Storage(spark, cfg.storage.root, cfg.storage.engine)
    start = time.monotonic()
    write_pool(spark, storage, args.pairs)
    written = time.monotonic() - start
    report = run_stage(Context(spark, storage, cfg), "curate", 1)
    figures = {
        "pairs": args.pairs,
        "commit_rows": args.commit_rows,
        "pool_write_s": round(written, 1),
        "curate_s": report.seconds,
        "curate_rows_written": report.rows_written,
        "pairs_per_s": round(report.rows_written / report.seconds, 1),
        **driver_peak_mib(spark),
    }
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
