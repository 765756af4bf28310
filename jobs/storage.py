"""Delta tables by name under one root: the only module that knows how tables are read and written.

``storage.root`` is either a path (a folder, ``/Volumes/...``, ``dbfs:/``, ``s3://``, ``abfss://``, ``gs://``:
table ``t`` is ``<root>/t``) or a Unity Catalog schema ``catalog.schema`` (table ``t`` is ``catalog.schema.t``,
written with ``saveAsTable``; delta-rs readers open it as ``uc://catalog.schema.t``). A relative folder whose
name is two identifiers joined by a dot (``tables.v2``) reads as a schema: write ``./tables.v2``.

Two engines give the same Delta tables, and every read, version lookup and write goes through the one chosen:

- ``delta-spark`` when the Delta jars are on the classpath (Databricks, clusters started with ``--packages
  io.delta:delta-spark``): ``format("delta")`` with ``versionAsOf``, versions from ``DESCRIBE HISTORY``, and
  keyed writes as ``MERGE`` (insert when the key is absent). Spark's own filesystems reach every root.
- ``delta-rs``: the embedded default, no JVM package. The executors write each partition as one Parquet file
  with pyarrow (local paths, or the object store itself: no Hadoop connector needed) and return the file's
  path, size and rows; the driver commits all of them with delta-rs in one transaction. A crash before the
  commit leaves only unreferenced files (invisible to readers, removed by VACUUM), never half a write.
  ``dbfs:/x`` is the Databricks mount ``/dbfs/x``; a local root must be one filesystem for the driver and the
  executors (one machine, or a shared mount). It writes paths only: a Unity Catalog root needs delta-spark.

Credentials come from the environment (AWS_*, AZURE_STORAGE_*, GOOGLE_*) or the Spark conf's Hadoop settings
(``jobs.catalog.storage_options``); they are passed to delta-rs and the executors, never logged.

Every keyed append is an insert-if-absent, safe against a concurrent run on the same root: rows whose key is
already in the table are skipped, and a commit made by another run after this one read the table is detected
(delta-spark: MERGE's conflict check; delta-rs: the commit must be the version after the one read) and its
keys are dropped before committing again (STYLE.md, "keyed, append-only artefacts"; README, "Storage").
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import DeltaError
from deltalake.transaction import AddAction, CommitProperties, create_table_with_add_actions
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
from pyspark.sql.types import StructType

from jobs.catalog import delta_rs_uri, is_object_store, parse_catalog_schema, storage_options, uc_table
from udfs.config import ConfigError

log = logging.getLogger(__name__)

Engine = Literal["auto", "delta-spark", "delta-rs"]

# Commits of one keyed append tried in all: each retry follows a concurrent run's commit and drops its keys,
# so only a root busy with more than this many concurrent writers of one table gives up (with an error).
COMMIT_ATTEMPTS = 10
# What delta-spark raises when a concurrent transaction committed something this one read (its error
# classes and, on older releases, its exception class names).
_CONFLICTS = ("DELTA_CONCURRENT_", "ConcurrentAppendException", "ConcurrentWriteException", "ProtocolChanged")
# What delta-spark says when a path holds no Delta table (as opposed to, say, a denied credential).
_NOT_A_TABLE = ("DELTA_MISSING_DELTA_TABLE", "DELTA_TABLE_NOT_FOUND", "PATH_NOT_FOUND", "is not a Delta table")
# What an executor returns for each Parquet file it wrote (chunk: the work-file chunk it holds, else null).
_FILE_SCHEMA = "path string, size long, rows long, chunk long"
WORK_CHUNK = "_chunk"  # the column ``write_work`` splits its files by


class BrokenTable(RuntimeError):
    """A table's path holds something that is not a readable Delta table (a plain file, a folder without a log,
    a log that cannot be read): the message names the table, the path and what is wrong, in one line."""


@dataclass(frozen=True)
class WriteResult:
    table: str
    rows: int
    version: int | None  # table version after the write (None: nothing to write and no table yet)
    concurrent: int = 0  # rows not written because a concurrent run committed their keys first


@dataclass(frozen=True)
class WorkFiles:
    """Rows computed once and written by ``Storage.write_work``: Parquet files under ``folder``, by chunk."""

    folder: str
    schema: StructType
    chunks: dict[int, list[str]]  # chunk -> its files (absolute); a chunk with no row has none
    rows: int


@dataclass(frozen=True)
class NewRows:
    """The rows of a keyed write whose key was absent when the table was read at ``read_version``."""

    df: DataFrame
    key: str
    read_version: int | None  # None: the table did not exist


class Storage:
    """Read and append the pipeline's Delta tables, by name, under ``root`` (a path or ``catalog.schema``)."""

    def __init__(self, spark: SparkSession, root: str, engine: Engine = "auto"):
        self.spark = spark
        self.engine = resolve_engine(spark) if engine == "auto" else engine
        self.catalog_schema = parse_catalog_schema(root)
        if self.catalog_schema is not None and self.engine == "delta-rs":
            raise ConfigError(
                f"storage.root={root!r} is a Unity Catalog schema (catalog.schema), but the storage engine is "
                "delta-rs, which writes to paths only: run where delta-spark is available (Databricks, or Spark "
                "with the Delta package, storage.engine=delta-spark) or set storage.root to a path"
            )
        self.options: dict[str, str] = {}  # delta-rs storage options: credentials, so never logged
        if self.engine == "delta-rs":
            root = delta_rs_uri(root)
            self.options = storage_options(dict(spark.sparkContext.getConf().getAll()))
            if not is_object_store(root):
                Path(root).mkdir(parents=True, exist_ok=True)
        self.root = root.rstrip("/")
        log.info("storage: %s tables under %s", self.engine, self.root)

    @functools.cached_property
    def work(self) -> str:
        """Where stage work files go (``write_work``), written and read by the executors with pyarrow: beside
        the tables, or in the schema's ``work`` volume under Unity Catalog (whose tables have no folder)."""
        if self.catalog_schema is not None:
            return f"/Volumes/{self.catalog_schema.catalog}/{self.catalog_schema.schema}/work"
        return f"{delta_rs_uri(self.root)}/_work"

    @functools.cached_property
    def work_options(self) -> dict[str, str]:
        """pyarrow storage options of the work files: credentials, so never logged."""
        return self.options or storage_options(dict(self.spark.sparkContext.getConf().getAll()))

    def path(self, name: str) -> str:
        """Where table ``name`` is: the path (or ``uc://`` URI) a reader outside this module opens."""
        if self.catalog_schema is not None:
            return self.catalog_schema.uri(name)
        return f"{self.root}/{name}"

    def exists(self, name: str) -> bool:
        with self._broken_table(name):
            if self.engine == "delta-spark":
                return spark_table_exists(self.spark, self.path(name))
            return DeltaTable.is_deltatable(self.path(name), storage_options=self.options)

    def version(self, name: str) -> int | None:
        """Current version of table ``name``, or None if it does not exist yet."""
        if not self.exists(name):
            return None
        with self._broken_table(name):
            if self.engine == "delta-spark":
                return int(_last_commit(self.spark, self.path(name))["version"])
            return self._delta_rs(name, without_files=True).version()

    def read(self, name: str, version: int | None = None) -> DataFrame | None:
        """Table ``name`` (at ``version`` if given) as a DataFrame, or None if it does not exist."""
        if not self.exists(name):
            return None
        with self._broken_table(name):
            if self.engine == "delta-spark":
                return read_delta(self.spark, self.path(name), version)
            table = self._delta_rs(name, version=version)
            schema = from_arrow_schema(_arrow_schema(table))
        return self._read_files(table.file_uris(), schema)

    @contextlib.contextmanager
    def _broken_table(self, name: str) -> Iterator[None]:
        """Errors of opening table ``name`` as ``BrokenTable``s that say which table, where and what is wrong
        (delta-rs says "Generic LocalFileSystem error" of a plain file where a table's folder should be)."""
        try:
            yield
        except Exception as exc:
            raise BrokenTable(f"table {name} at {self.path(name)} {_what_is_wrong(self.path(name), exc)}") from exc

    def new_rows(
        self, name: str, df: DataFrame, key: str, absent_at: int | None = None, own: frozenset[int] = frozenset()
    ) -> NewRows:
        """The rows of ``df`` whose ``key`` is not in table ``name`` yet, one per key, and the version read.

        ``absent_at``: every key of ``df`` was absent at that version (-1: before the table existed; the caller
        anti-joined it then), so only the versions committed since are checked, less ``own``: versions whose
        keys cannot be in ``df`` (a chunked stage's other chunks). With delta-rs the check then reads nothing
        unless a concurrent run committed; delta-spark's MERGE checks the whole table anyway."""
        version = self.version(name)
        new = df.dropDuplicates([key])
        if version is None:
            return NewRows(new, key, version)
        if absent_at is None or self.engine == "delta-spark":
            return NewRows(new.join(self.read(name, version).select(key), on=key, how="left_anti"), key, version)
        added: set[str] = set()
        for v in sorted(set(range(absent_at + 1, version + 1)) - own):
            added |= set(self._files(name, v)) - set(self._files(name, v - 1))
        if added:
            keys = StructType([from_arrow_schema(_arrow_schema(self._delta_rs(name, version=version)))[key]])
            new = new.join(self._read_files(sorted(added), keys), on=key, how="left_anti")
        return NewRows(new, key, version)

    def append_new(self, name: str, df: DataFrame, key: str) -> WriteResult:
        """Append the rows of ``df`` whose ``key`` is new (one transaction): re-runs, retries and concurrent
        runs add nothing twice."""
        return self.insert(name, self.new_rows(name, df, key))

    def insert(self, name: str, new: NewRows) -> WriteResult:
        """Commit ``new`` (from ``new_rows``) in one transaction, without the keys a concurrent run committed
        since ``new.read_version``. Pass ``new.df`` cached: a conflict reads it again."""
        read_version = self._add_columns(name, new.df, new.read_version)
        if self.engine == "delta-spark":
            return self._merge(name, new)
        return self._write_delta_rs(name, new.df, new.key, read_version)

    def append(self, name: str, df: DataFrame) -> WriteResult:
        """Append all of ``df`` in one transaction, unkeyed (the keyed writes are ``append_new``/``insert``)."""
        read_version = self._add_columns(name, df, self.version(name))
        if self.engine == "delta-rs":
            return self._write_delta_rs(name, df, None, read_version)
        self._write_spark(name, df)
        last = _last_commit(self.spark, self.path(name))
        return WriteResult(name, int((last["operationMetrics"] or {}).get("numOutputRows", 0)), int(last["version"]))

    def write_work(self, df: DataFrame, key: str, chunk_rows: int) -> WorkFiles:
        """``df`` computed once and written by the executors as work files, in chunks of about ``chunk_rows``
        rows: chunk ``c`` of ``n = ceil(rows / chunk_rows)`` holds the rows with ``pmod(xxhash64(key), n) == c``
        (a deterministic split that needs no sort), one file per chunk. ``read_work`` reads a chunk's files
        only, ``drop_work`` deletes them. Each call writes a fresh folder: a run never reads another's
        (or a crashed run's) work files, which only take space until deleted."""
        folder = f"{self.work}/{uuid.uuid4().hex}"
        schema = df.schema
        whole = self._write_work_files(df, folder, "rows", None)
        rows = sum(f["rows"] for f in whole)
        chunks = max(1, -(-rows // chunk_rows))
        if chunks == 1:  # the rows as computed are the one chunk
            return WorkFiles(folder, schema, {0: [f"{folder}/{f['path']}" for f in whole]} if rows else {}, rows)
        # Split what was written (the input's lineage is not evaluated again): a shuffle by chunk, so each task
        # holds whole chunks and writes one file per chunk.
        written = self._read_files([f"{folder}/{f['path']}" for f in whole], schema, folder)
        bucketed = written.withColumn(WORK_CHUNK, F.pmod(F.xxhash64(key), F.lit(chunks)))
        by_chunk: dict[int, list[str]] = {}
        for f in self._write_work_files(
            bucketed.repartition(WORK_CHUNK).sortWithinPartitions(WORK_CHUNK), folder, "chunks", WORK_CHUNK
        ):
            by_chunk.setdefault(f["chunk"], []).append(f"{folder}/{f['path']}")
        fs, base = arrow_filesystem(folder, self.work_options)
        fs.delete_dir(f"{base}/rows")
        return WorkFiles(folder, schema, by_chunk, rows)

    def read_work(self, work: WorkFiles, chunk: int) -> DataFrame:
        """The rows of chunk ``chunk`` of ``work`` (none for a chunk with no files)."""
        return self._read_files(work.chunks.get(chunk, []), work.schema, work.folder)

    def drop_work(self, work: WorkFiles) -> None:
        """Delete ``work``'s files. A failure only leaves files no run reads again: logged, not raised."""
        try:
            fs, base = arrow_filesystem(work.folder, self.work_options)
            fs.delete_dir(base)
        except OSError as exc:
            log.warning(
                "work files %s left behind (%s): no run reads them again; delete them at will", work.folder, exc
            )

    def _write_work_files(self, df: DataFrame, folder: str, sub: str, split: str | None) -> list:
        """The executors write ``df`` as Parquet files under ``folder/sub`` (one per partition, or per ``split``
        value of a partition sorted by it); the files' rows of ``_FILE_SCHEMA``."""
        schema = arrow_schema(df.drop(split).schema if split else df.schema)
        return df.mapInArrow(_file_writer(folder, sub, self.work_options, schema, split), _FILE_SCHEMA).collect()

    def _add_columns(self, name: str, df: DataFrame, read_version: int | None) -> int | None:
        """Add to table ``name`` the columns of ``df`` it lacks (a newer release's columns, e.g. ``runs.status``),
        as nullable: old rows read them as null. Returns the version to commit after: the ALTER's own when no
        other run committed in between, else ``read_version`` (the commit then finds the concurrent commits)."""
        if read_version is None:
            return None
        if self.engine == "delta-spark":
            have = set(self.read(name, read_version).columns)
        else:  # from the log: a DataFrame over the table would stat every file of it at each chunk's commit
            have = set(_arrow_schema(self._delta_rs(name, version=read_version, without_files=True)).names)
        if set(df.columns) <= have:
            return read_version
        missing = [f for f in df.schema.fields if f.name not in have]
        log.warning("%s: adding columns %s (written by a newer release)", name, ", ".join(f.name for f in missing))
        if self.engine == "delta-spark":
            columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in missing)
            self.spark.sql(f"ALTER TABLE {_sql_name(self.path(name))} ADD COLUMNS ({columns})")
        else:
            arrow = arrow_schema(StructType(missing))
            nullable = pa.schema([f.with_nullable(True) for f in arrow])
            self._delta_rs(name).alter.add_columns(DeltaSchema.from_arrow(nullable).fields)
        latest = self.version(name)
        return latest if latest == read_version + 1 else read_version

    # delta-spark

    def _write_spark(self, name: str, df: DataFrame) -> None:
        writer = df.write.format("delta").mode("append")
        if self.catalog_schema is not None:
            writer.saveAsTable(self.catalog_schema.table(name))
        else:
            writer.save(self.path(name))

    def _merge(self, name: str, new: NewRows) -> WriteResult:
        """MERGE inserting the rows whose key is absent. Delta checks that no transaction committed since this
        one read the table added files it read (all of it: the key is not a partition), so of two runs merging
        at once one fails with a concurrent-append conflict and merges again against the other's rows."""
        if not self.exists(name):
            try:  # an empty append creates the table with the rows' schema; MERGE needs a table to merge into
                self._write_spark(name, new.df.limit(0))
            except Exception:
                if not self.exists(name):  # not a concurrent run creating it first
                    raise
        rows = new.df.count()
        if rows == 0:
            return WriteResult(name, 0, self.version(name))
        view = f"humpback_new_{uuid.uuid4().hex}"
        new.df.createOrReplaceTempView(view)
        key = f"`{new.key}`"
        statement = (
            f"MERGE INTO {_sql_name(self.path(name))} AS t USING {view} AS s ON t.{key} = s.{key} "
            "WHEN NOT MATCHED THEN INSERT *"
        )
        try:
            for attempt in range(1, COMMIT_ATTEMPTS + 1):
                try:
                    inserted = int(self.spark.sql(statement).first()["num_inserted_rows"])
                    break
                except Exception as exc:
                    if not any(mark in str(exc) for mark in _CONFLICTS) or attempt == COMMIT_ATTEMPTS:
                        raise
                    log.warning(
                        "%s: a concurrent run committed during MERGE (attempt %d): merging again", name, attempt
                    )
        finally:
            self.spark.catalog.dropTempView(view)
        return WriteResult(name, inserted, self.version(name), rows - inserted)

    # delta-rs

    def _delta_rs(self, name: str, **kwargs) -> DeltaTable:
        return DeltaTable(self.path(name), storage_options=self.options, **kwargs)

    def _read_files(self, files: list[str], schema: StructType, root: str | None = None) -> DataFrame:
        """The Parquet ``files`` of a table (or of work files under ``root``) as one DataFrame of ``schema``."""
        root = root or self.root
        if not files:
            return self.spark.createDataFrame([], schema)
        if not is_object_store(root):
            return self.spark.read.schema(schema).parquet(*files)
        # Spark has no connector for the store without Hadoop's jars: the executors read it with pyarrow.
        tasks = min(len(files), self.spark.sparkContext.defaultParallelism)
        listing = self.spark.createDataFrame([(f,) for f in files], "file string").repartition(tasks)
        options = self.options if root == self.root else self.work_options
        return listing.mapInArrow(_file_reader(root, options, schema), schema)

    def _write_files(self, name: str, df: DataFrame) -> list[AddAction]:
        """Each non-empty partition of ``df`` as one Parquet file in a fresh folder of table ``name``, written
        by the executors; the add actions that commit them."""
        folder = f"w-{uuid.uuid4().hex}"
        writer = _file_writer(self.path(name), folder, self.options, arrow_schema(df.schema))
        now = int(time.time() * 1000)
        return [
            AddAction(
                path=f["path"],
                size=f["size"],
                partition_values={},
                modification_time=now,
                data_change=True,
                stats=json.dumps({"numRecords": f["rows"]}),
            )
            for f in sorted(df.mapInArrow(writer, _FILE_SCHEMA).collect(), key=lambda f: f["path"])
        ]

    def _write_delta_rs(self, name: str, df: DataFrame, key: str | None, read_version: int | None) -> WriteResult:
        """Write ``df``'s files, then commit them as version ``read_version + 1`` exactly (0: the table's
        creation). If another run committed first: unkeyed (``key`` None), commit after it; keyed, drop the
        rows whose key its commits added, rewrite and try again."""
        schema = DeltaSchema.from_arrow(arrow_schema(df.schema))
        actions = self._write_files(name, df)
        offered = _rows(actions)
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            if not actions and read_version is not None:
                return WriteResult(name, 0, read_version, offered)
            try:
                if read_version is None:
                    create_table_with_add_actions(
                        self.path(name), schema, actions, mode="error", name=name, storage_options=self.options
                    )
                else:
                    self._delta_rs(name, version=read_version).create_write_transaction(
                        actions, mode="append", schema=schema, commit_properties=CommitProperties(max_commit_retries=0)
                    )
                version = 0 if read_version is None else read_version + 1
                return WriteResult(name, _rows(actions), version, offered - _rows(actions))
            except DeltaError:
                latest = self.version(name)
                if latest is None or latest == read_version or attempt == COMMIT_ATTEMPTS:
                    raise  # not (only) a concurrent commit
                if key is not None:  # the files may hold keys the other run committed: rewrite without them
                    log.warning(
                        "%s: versions %d..%d were committed by a concurrent run after this one read the table: "
                        "dropping the keys they added and committing again",
                        name,
                        0 if read_version is None else read_version + 1,
                        latest,
                    )
                    added = sorted(set(self._delta_rs(name).file_uris()) - set(self._files(name, read_version)))
                    done = self._read_files(added, df.select(key).schema)
                    self._remove(name, actions)
                    df = df.join(done, on=key, how="left_anti")
                    actions = self._write_files(name, df)
                read_version = latest
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _files(self, name: str, version: int | None) -> list[str]:
        return [] if version is None or version < 0 else self._delta_rs(name, version=version).file_uris()

    def _remove(self, name: str, actions: list[AddAction]) -> None:
        """Delete the files of a commit that did not happen (unreferenced anyway: this only saves VACUUM work)."""
        fs, base = arrow_filesystem(self.path(name), self.options)
        for action in actions:
            fs.delete_file(f"{base}/{action.path}")


def _what_is_wrong(path: str, exc: Exception) -> str:
    """What a table path that failed to open holds instead of a Delta table, as the end of a sentence."""
    if "://" not in path:  # a local path (dbfs:/ is its mount): look at what is there
        local = Path(path)
        if local.is_file():
            return "is a file, not a table's folder (a bad copy or a half-deleted table?): move it aside or restore it"
        if local.is_dir() and not (local / "_delta_log").is_dir():
            return "is a folder without a _delta_log: not a Delta table (move it aside or restore the table)"
    message = (str(exc) or type(exc).__name__).replace("\n", " ")[:300]
    return f"cannot be opened as a Delta table ({type(exc).__name__}: {message})"


def resolve_engine(spark: SparkSession) -> Engine:
    """delta-spark when the session has Delta's extension (or runs on Databricks), else delta-rs."""
    extensions = spark.conf.get("spark.sql.extensions", "") or ""
    if "DeltaSparkSessionExtension" in extensions or "DATABRICKS_RUNTIME_VERSION" in os.environ:
        return "delta-spark"
    return "delta-rs"


def spark_table_exists(spark: SparkSession, location: str) -> bool:
    """Whether ``location`` (a path, or ``uc://catalog.schema.table``) is a Delta table, asked of delta-spark."""
    table = uc_table(location)
    if table is not None:
        return spark.catalog.tableExists(table)
    if getattr(spark, "_jvm", None) is not None:
        return bool(spark._jvm.io.delta.tables.DeltaTable.isDeltaTable(spark._jsparkSession, location))
    try:  # Spark Connect (Databricks shared and serverless compute) has no JVM gateway: ask in SQL
        _last_commit(spark, location)
        return True
    except Exception as exc:
        if any(mark in str(exc) for mark in _NOT_A_TABLE):
            return False
        raise


def read_delta(spark: SparkSession, location: str, version: int | None = None) -> DataFrame:
    """Delta table ``location`` (a path, or ``uc://catalog.schema.table``) at ``version`` through delta-spark."""
    table = uc_table(location)
    if table is not None:
        if version is None:
            return spark.table(table)
        return spark.sql(f"SELECT * FROM {table} VERSION AS OF {int(version)}")
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", int(version))
    return reader.load(location)


def pinned_version(spark: SparkSession, location: str, version: int | None, as_of: datetime | None) -> int:
    """The version a pinned read of ``location`` reads through delta-spark: ``version``, the latest committed
    at or before ``as_of``, or the current one."""
    if version is not None:
        return int(version)
    history = spark.sql(f"DESCRIBE HISTORY {_sql_name(location)}").select("version", "timestamp").collect()
    if as_of is not None:
        # DESCRIBE HISTORY gives session-local naive timestamps: compare in the session's zone
        as_of_local = as_of.astimezone().replace(tzinfo=None)
        history = [h for h in history if h["timestamp"] <= as_of_local]
        if not history:
            raise ValueError(f"{location} has no version committed at or before {as_of.isoformat()}")
    return max(int(h["version"]) for h in history)


def _sql_name(location: str) -> str:
    """How Spark SQL names Delta table ``location``."""
    return uc_table(location) or f"delta.`{location}`"


def _last_commit(spark: SparkSession, location: str):
    """The newest ``DESCRIBE HISTORY`` row (version, operationMetrics, ...) of a delta-spark table."""
    return spark.sql(f"DESCRIBE HISTORY {_sql_name(location)} LIMIT 1").first()


def _rows(actions: list[AddAction]) -> int:
    return sum(json.loads(a.stats)["numRecords"] for a in actions)


def _arrow_schema(table: DeltaTable) -> pa.Schema:
    return pa.schema(table.schema().to_arrow())


def arrow_filesystem(uri: str, options: dict[str, str]) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem of ``uri`` (a ``delta_rs_uri``) with delta-rs storage ``options``, and the path
    of ``uri`` in it. Executors write and read table files through it."""
    if uri.startswith("s3://"):
        endpoint = options.get("AWS_ENDPOINT_URL")
        s3 = pafs.S3FileSystem(
            access_key=options.get("AWS_ACCESS_KEY_ID"),
            secret_key=options.get("AWS_SECRET_ACCESS_KEY"),
            session_token=options.get("AWS_SESSION_TOKEN"),
            region=options.get("AWS_REGION") or options.get("AWS_DEFAULT_REGION"),
            endpoint_override=endpoint.split("://", 1)[-1] if endpoint else None,
            scheme=endpoint.split("://", 1)[0] if endpoint and "://" in endpoint else "https",
        )
        return s3, _arrow_path(uri)
    if uri.startswith("abfss://"):
        account = uri.removeprefix("abfss://").partition("@")[2].split(".", 1)[0]
        azure = pafs.AzureFileSystem(
            account_name=options.get("AZURE_STORAGE_ACCOUNT_NAME", account),
            account_key=options.get("AZURE_STORAGE_ACCOUNT_KEY"),
        )
        return azure, _arrow_path(uri)
    if uri.startswith("gs://"):  # credentials: GOOGLE_APPLICATION_CREDENTIALS or the machine's identity
        return pafs.GcsFileSystem(), _arrow_path(uri)
    return pafs.LocalFileSystem(), _arrow_path(uri)


def _arrow_path(uri: str) -> str:
    """``uri``'s path in its pyarrow filesystem: ``bucket/key``, ``container/path``, or the local path."""
    if uri.startswith(("s3://", "gs://")):
        return uri.split("://", 1)[1]
    if uri.startswith("abfss://"):
        container, _, rest = uri.removeprefix("abfss://").partition("@")
        return f"{container}/{rest.partition('/')[2]}"
    return uri.removeprefix("file://")


def _file_writer(table_uri: str, folder: str, options: dict[str, str], schema: pa.Schema, split: str | None = None):
    """mapInArrow function: the partition's rows as one Parquet file under ``table_uri/folder`` -> its path
    (relative to ``table_uri``), size, rows and chunk (null). With ``split``, a partition sorted by that integer
    column gives one file per value, without the column, and the value as its chunk. An empty partition writes
    nothing."""

    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        fs, base = arrow_filesystem(table_uri, options)
        task = TaskContext.get().partitionId()
        file = None  # [chunk, relative path, output stream, ParquetWriter, rows] of the file being written
        for chunk, part in _runs(batches, split):
            if file is not None and file[0] != chunk:
                yield _close(fs, base, file)
                file = None
            if file is None:
                if isinstance(fs, pafs.LocalFileSystem):  # object stores have no folders to make
                    fs.create_dir(f"{base}/{folder}", recursive=True)
                # unique per task attempt: a retried or speculative attempt never overwrites a committed file
                relative = f"{folder}/part-{task:05d}-{uuid.uuid4().hex}.parquet"
                out = fs.open_output_stream(f"{base}/{relative}")
                file = [chunk, relative, out, pq.ParquetWriter(out, schema), 0]
            file[3].write_batch(part.cast(schema))
            file[4] += part.num_rows
        if file is not None:
            yield _close(fs, base, file)

    return write


def arrow_schema(schema: StructType) -> pa.Schema:
    """``schema`` in Arrow, timestamps in UTC, by pyspark's own (private) conversion, whose keyword for that
    changed between releases: ``timestamp_utc=True`` on Spark 4.0 and 4.1, ``timezone="UTC"`` on 4.2."""
    parameters = inspect.signature(to_arrow_schema).parameters
    if "timezone" in parameters:
        return to_arrow_schema(schema, timezone="UTC")
    if "timestamp_utc" in parameters:
        return to_arrow_schema(schema, timestamp_utc=True)
    return to_arrow_schema(schema)  # releases before either keyword: UTC was the only behaviour


def _runs(batches: Iterator[pa.RecordBatch], split: str | None) -> Iterator[tuple[int | None, pa.RecordBatch]]:
    """The non-empty ``batches`` as (value of ``split``, run of rows with that value, without the column);
    without ``split`` each batch is one run of value None."""
    for batch in batches:
        if not batch.num_rows:
            continue
        if split is None:
            yield None, batch
            continue
        values = batch.column(split).to_numpy()
        rest = batch.drop_columns([split])
        starts = [0, *(np.flatnonzero(values[1:] != values[:-1]) + 1).tolist(), len(values)]
        for start, end in itertools.pairwise(starts):
            yield int(values[start]), rest.slice(start, end - start)


def _close(fs: pafs.FileSystem, base: str, file: list) -> pa.RecordBatch:
    chunk, relative, out, parquet, rows = file
    parquet.close()
    out.close()
    size = fs.get_file_info(f"{base}/{relative}").size
    return pa.RecordBatch.from_pylist(
        [{"path": relative, "size": size, "rows": rows, "chunk": chunk}],
        schema=pa.schema([("path", pa.string()), ("size", pa.int64()), ("rows", pa.int64()), ("chunk", pa.int64())]),
    )


def _file_reader(root: str, options: dict[str, str], schema: StructType):
    """mapInArrow function: the rows of the table files named in column ``file``, as ``schema``."""
    arrow = arrow_schema(schema)

    def read(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        fs, _ = arrow_filesystem(root, options)
        for batch in batches:
            for uri in batch.column("file").to_pylist():
                with fs.open_input_file(_arrow_path(uri)) as f:
                    parquet = pq.ParquetFile(f)
                    present = set(parquet.schema_arrow.names)  # files from before a column was added lack it
                    for part in parquet.iter_batches(columns=[n for n in arrow.names if n in present]):
                        columns = [
                            part.column(n) if n in present else pa.nulls(part.num_rows, arrow.field(n).type)
                            for n in arrow.names
                        ]
                        yield pa.RecordBatch.from_arrays(columns, names=arrow.names).cast(arrow)

    return read
