"""Delta tables by name under one root: the only module that knows how tables are written.

``storage.root`` is either a path (a folder, ``dbfs:/``, ``s3://``, ...: table ``t`` is ``<root>/t``) or a
Unity Catalog schema ``catalog.schema`` (table ``t`` is ``catalog.schema.t``, written with ``saveAsTable`` and
versioned by ``DESCRIBE HISTORY``; delta-rs readers open it as ``uc://catalog.schema.t``). A relative folder
whose name is two identifiers joined by a dot (``tables.v2``) reads as a schema: write ``./tables.v2``.

Two engines give the same Delta tables (``deltalake.DeltaTable(storage.path(name))`` opens any of them):

- ``delta-spark``: native ``format("delta")`` when the Delta jars are on the classpath (Databricks,
  clusters started with ``--packages io.delta:delta-spark``).
- ``delta-rs``: the offline embedded default. Spark writes Parquet files into a fresh folder inside the
  table directory, then the driver commits all of them with delta-rs in one transaction. A crash before
  the commit leaves only unreferenced files (invisible to readers, removed by VACUUM), never half a write.
  The driver and the executors must see the same filesystem (one machine, or a shared mount). It writes
  paths only: a Unity Catalog root needs delta-spark.

Every append is keyed: rows whose key is already in the table are skipped, so re-running or retrying a
stage never duplicates rows (STYLE.md, "keyed, append-only artefacts").
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake import Schema as DeltaSchema
from deltalake.transaction import AddAction, create_table_with_add_actions
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

from jobs.catalog import parse_catalog_schema
from udfs.config import ConfigError

log = logging.getLogger(__name__)

Engine = Literal["auto", "delta-spark", "delta-rs"]


@dataclass(frozen=True)
class WriteResult:
    table: str
    rows: int
    version: int | None  # table version after the write (None: nothing to write and no table yet)


class Storage:
    """Read and append the pipeline's Delta tables, by name, under ``root`` (a path or ``catalog.schema``)."""

    def __init__(self, spark: SparkSession, root: str, engine: Engine = "auto"):
        self.spark = spark
        self.engine = _resolve_engine(spark) if engine == "auto" else engine
        self.catalog_schema = parse_catalog_schema(root)
        if self.catalog_schema is not None and self.engine == "delta-rs":
            raise ConfigError(
                f"storage.root={root!r} is a Unity Catalog schema (catalog.schema), but the storage engine is "
                "delta-rs, which writes to paths only: run where delta-spark is available (Databricks, or Spark "
                "with the Delta package, storage.engine=delta-spark) or set storage.root to a path"
            )
        if self.engine == "delta-rs":  # the embedded default: a local folder, shared by Spark and delta-rs
            root = os.path.abspath(root.removeprefix("file://"))
            Path(root).mkdir(parents=True, exist_ok=True)
        self.root = root.rstrip("/")
        log.info("storage: %s tables under %s", self.engine, self.root)

    def path(self, name: str) -> str:
        """Where a reader outside Spark (delta-rs, training) opens table ``name``."""
        if self.catalog_schema is not None:
            return self.catalog_schema.uri(name)
        return f"{self.root}/{name}"

    def version(self, name: str) -> int | None:
        """Current version of table ``name``, or None if it does not exist yet."""
        if self.catalog_schema is not None:
            table = self.catalog_schema.table(name)
            return int(self._last_commit(table)["version"]) if self.spark.catalog.tableExists(table) else None
        if not DeltaTable.is_deltatable(self.path(name)):
            return None
        return DeltaTable(self.path(name), without_files=True).version()

    def read(self, name: str, version: int | None = None) -> DataFrame | None:
        """Table ``name`` (at ``version`` if given) as a DataFrame, or None if it does not exist."""
        if self.catalog_schema is not None:
            table = self.catalog_schema.table(name)
            if not self.spark.catalog.tableExists(table):
                return None
            if version is None:
                return self.spark.table(table)
            return self.spark.sql(f"SELECT * FROM {table} VERSION AS OF {int(version)}")
        path = self.path(name)
        if not DeltaTable.is_deltatable(path):
            return None
        if self.engine == "delta-spark":
            reader = self.spark.read.format("delta")
            if version is not None:
                reader = reader.option("versionAsOf", version)
            return reader.load(path)
        table = DeltaTable(path, version=version)
        schema = from_arrow_schema(_arrow_schema(table))
        files = table.file_uris()
        if not files:
            return self.spark.createDataFrame([], schema)
        return self.spark.read.schema(schema).parquet(*files)

    def new_rows(self, name: str, df: DataFrame, key: str) -> DataFrame:
        """The rows of ``df`` whose ``key`` is not in table ``name`` yet, one per key."""
        existing = self.read(name)
        new = df.dropDuplicates([key])
        return new if existing is None else new.join(existing.select(key), on=key, how="left_anti")

    def append_new(self, name: str, df: DataFrame, key: str) -> WriteResult:
        """Append the rows of ``df`` whose ``key`` is new (one transaction): re-runs and retries add nothing twice."""
        return self.append(name, self.new_rows(name, df, key))

    def append(self, name: str, df: DataFrame) -> WriteResult:
        """Append all of ``df`` in one transaction (callers pass keyed new rows: see ``new_rows``)."""
        if self.engine == "delta-spark":
            writer = df.write.format("delta").mode("append")
            if self.catalog_schema is not None:
                table = self.catalog_schema.table(name)
                writer.saveAsTable(table)
            else:
                writer.save(self.path(name))
                table = f"delta.`{self.path(name)}`"
            last = self._last_commit(table)
            rows = int((last["operationMetrics"] or {}).get("numOutputRows", 0))
            return WriteResult(name, rows, int(last["version"]))
        path = self.path(name)
        folder = f"w-{uuid.uuid4().hex}"
        df.write.mode("errorifexists").parquet(f"{path}/{folder}")
        actions = [
            _add_action(path, f"{folder}/{f}") for f in sorted(os.listdir(f"{path}/{folder}")) if f.endswith(".parquet")
        ]
        rows = sum(json.loads(a.stats)["numRecords"] for a in actions)
        actions = [a for a in actions if json.loads(a.stats)["numRecords"] > 0]
        if not actions:  # Spark writes a schema-only file for an empty DataFrame: nothing to commit
            shutil.rmtree(f"{path}/{folder}")
        schema = DeltaSchema.from_arrow(to_arrow_schema(df.schema, timezone="UTC"))
        if not DeltaTable.is_deltatable(path):
            create_table_with_add_actions(path, schema, actions, mode="append", name=name)
        elif actions:
            DeltaTable(path).create_write_transaction(actions, mode="append", schema=schema)
        return WriteResult(name, rows, self.version(name))

    def _last_commit(self, table: str):
        """The newest ``DESCRIBE HISTORY`` row (version, operationMetrics, ...) of a delta-spark table."""
        return self.spark.sql(f"DESCRIBE HISTORY {table} LIMIT 1").first()


def _resolve_engine(spark: SparkSession) -> Engine:
    extensions = spark.conf.get("spark.sql.extensions", "") or ""
    if "DeltaSparkSessionExtension" in extensions or "DATABRICKS_RUNTIME_VERSION" in os.environ:
        return "delta-spark"
    return "delta-rs"


def _arrow_schema(table: DeltaTable):
    import pyarrow as pa

    return pa.schema(table.schema().to_arrow())


def _add_action(table_path: str, relative: str) -> AddAction:
    full = f"{table_path}/{relative}"
    stat = os.stat(full)
    rows = pq.read_metadata(full).num_rows
    return AddAction(
        path=relative,
        size=stat.st_size,
        partition_values={},
        modification_time=int(stat.st_mtime * 1000),
        data_change=True,
        stats=json.dumps({"numRecords": rows}),
    )
