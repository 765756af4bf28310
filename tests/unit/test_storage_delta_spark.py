"""The delta-spark branch of ``jobs.storage``, without the Delta jars (no Maven here): a fake session that
answers the calls that branch makes (``format("delta")`` with ``versionAsOf``, ``DESCRIBE HISTORY``, ``MERGE``,
``isDeltaTable``) from real Delta tables through delta-rs, and records them. It checks that the branch is chosen
by configuration, that every read, version and write goes through Spark, and that a MERGE that loses to a
concurrent run is merged again without duplicating a key."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable, write_deltalake

from jobs.storage import Storage
from training import data

EXTENSION = {"spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension"}
SCHEMA = pa.schema([("id", pa.int64()), ("text", pa.string()), ("status", pa.string())])


class Frame:
    """The few DataFrame methods the delta-spark branch calls, over an Arrow table."""

    def __init__(self, spark: FakeSpark, table: pa.Table):
        self.spark, self.table = spark, table

    @property
    def columns(self):
        return self.table.column_names

    def dropDuplicates(self, keys):
        return Frame(
            self.spark, pa.Table.from_pandas(self.table.to_pandas().drop_duplicates(keys), preserve_index=False)
        )

    def join(self, other: Frame, on: str, how: str):
        assert how == "left_anti"
        return Frame(self.spark, self.table.filter(pc.invert(pc.is_in(self.table[on], other.table[on]))))

    def select(self, *columns):
        return Frame(self.spark, self.table.select(list(columns)))

    def where(self, condition: str):
        column, value = re.fullmatch(r"(\w+) = '(.*)'", condition).groups()
        return Frame(self.spark, self.table.filter(pc.equal(self.table[column], value)))

    def limit(self, n):
        return Frame(self.spark, self.table.slice(0, n))

    def count(self):
        return self.table.num_rows

    def collect(self):
        return self.table.to_pylist()

    def first(self):
        return self.table.to_pylist()[0]

    def toPandas(self):
        return self.table.to_pandas()

    def createOrReplaceTempView(self, name):
        self.spark.views[name] = self

    @property
    def write(self):
        frame = self

        class Writer:
            def format(self, fmt):
                assert fmt == "delta"
                return self

            def mode(self, mode):
                assert mode == "append"
                return self

            def save(self, location):
                frame.spark.calls.append(("save", location))
                write_deltalake(frame.spark.local(location), frame.table, mode="append")

            def saveAsTable(self, name):
                frame.spark.calls.append(("saveAsTable", name))
                write_deltalake(frame.spark.local(name), frame.table, mode="append")

        return Writer()


class FakeSpark:
    """A session with delta-spark, as far as ``jobs.storage`` asks: Delta tables live in ``base`` (``dbfs:/x``
    is ``base/x``, a Unity Catalog table ``base/catalog.schema.table``), read and written with delta-rs."""

    def __init__(self, base, conf=EXTENSION):
        self.base, self.views, self.calls = base, {}, []
        self.concurrent: list[pa.Table] = []  # rows another run commits just before each of the next MERGEs
        self.conf = SimpleNamespace(get=lambda key, default=None: conf.get(key, default))
        is_delta = SimpleNamespace(isDeltaTable=lambda _, location: DeltaTable.is_deltatable(self.local(location)))
        self._jvm = SimpleNamespace(
            io=SimpleNamespace(delta=SimpleNamespace(tables=SimpleNamespace(DeltaTable=is_delta)))
        )
        self._jsparkSession = None
        self.catalog = SimpleNamespace(
            tableExists=lambda name: DeltaTable.is_deltatable(self.local(name)),
            dropTempView=lambda name: self.views.pop(name),
        )

    def local(self, location: str) -> str:
        """Where the fake keeps table ``location`` (a path, ``delta.`path```, or a quoted three-part name)."""
        location = re.sub(r"^delta\.`(.*)`$", r"\1", location)
        if location.startswith("`"):
            return f"{self.base}/{location.replace('`', '')}"
        return f"{self.base}/{location.removeprefix('dbfs:/')}"

    def _frame(self, location, version=None):
        return Frame(self, DeltaTable(self.local(location), version=version).to_pyarrow_table())

    @property
    def read(self):
        spark, options = self, {}

        class Reader:
            def format(self, fmt):
                assert fmt == "delta"
                return self

            def option(self, key, value):
                options[key] = value
                return self

            def load(self, location):
                spark.calls.append(("load", location, dict(options)))
                return spark._frame(location, options.get("versionAsOf"))

        return Reader()

    def table(self, name):
        self.calls.append(("table", name))
        return self._frame(name)

    def sql(self, statement: str) -> Frame:
        self.calls.append(("sql", statement))
        if match := re.fullmatch(r"DESCRIBE HISTORY (.+?)( LIMIT 1)?", statement):
            if not DeltaTable.is_deltatable(self.local(match.group(1))):
                raise RuntimeError(f"[DELTA_MISSING_DELTA_TABLE] {match.group(1)} is not a Delta table.")
            history = DeltaTable(self.local(match.group(1))).history(1 if match.group(2) else None)
            rows = [
                {
                    "version": h["version"],
                    "timestamp": datetime.fromtimestamp(h["timestamp"] / 1000),  # Spark: session-local, naive
                    "operationMetrics": {"numOutputRows": str(h.get("operationMetrics", {}).get("num_added_rows", 0))},
                }
                for h in history
            ]
            return Frame(self, pa.Table.from_pylist(rows))
        if match := re.fullmatch(r"SELECT \* FROM (.+) VERSION AS OF (\d+)", statement):
            return self._frame(match.group(1), int(match.group(2)))
        match = re.fullmatch(
            r"MERGE INTO (.+) AS t USING (\w+) AS s ON t\.`(\w+)` = s\.`\3` WHEN NOT MATCHED THEN INSERT \*", statement
        )
        assert match, statement
        target, view, key = match.groups()
        if self.concurrent:  # the other run's MERGE commits first: Delta's conflict check fails this one
            write_deltalake(self.local(target), self.concurrent.pop(0), mode="append")
            raise RuntimeError(
                "[DELTA_CONCURRENT_APPEND] Files were added to the root of the table by a concurrent update"
            )
        new = self.views[view].join(self._frame(target), on=key, how="left_anti")
        write_deltalake(self.local(target), new.table, mode="append")
        return Frame(self, pa.Table.from_pylist([{"num_affected_rows": new.count(), "num_inserted_rows": new.count()}]))


def rows(spark, ids, status="ok"):
    return Frame(spark, pa.Table.from_pylist([{"id": i, "text": f"t{i}", "status": status} for i in ids], SCHEMA))


def ids(spark, location, version=None):
    return sorted(spark._frame(location, version).table["id"].to_pylist())


def test_the_engine_is_chosen_by_the_session_or_the_config(tmp_path):
    assert Storage(FakeSpark(tmp_path), "dbfs:/humpback/tables").engine == "delta-spark"  # the Delta extension
    assert Storage(FakeSpark(tmp_path, conf={}), "dbfs:/x", engine="delta-spark").engine == "delta-spark"
    # a path root stays Spark's: no delta-rs mapping of dbfs:/, no local folder made for it
    storage = Storage(FakeSpark(tmp_path), "dbfs:/humpback/tables/")
    assert storage.path("documents") == "dbfs:/humpback/tables/documents"
    assert not (tmp_path / "humpback").exists()


def test_reads_versions_and_keyed_writes_go_through_spark(tmp_path):
    spark = FakeSpark(tmp_path)
    storage = Storage(spark, "dbfs:/tables")
    assert storage.read("t") is None and storage.version("t") is None
    assert (storage.append_new("t", rows(spark, range(10)), "id").rows, storage.version("t")) == (10, 1)
    assert storage.append_new("t", rows(spark, range(10)), "id").rows == 0  # re-run: nothing new
    result = storage.append_new("t", rows(spark, [*range(5, 15), 7]), "id")
    assert (result.rows, result.concurrent) == (5, 0)
    assert ids(spark, "dbfs:/tables/t") == list(range(15))
    assert sorted(storage.read("t", version=1).table["id"].to_pylist()) == list(range(10))

    loads = [c for c in spark.calls if c[0] == "load"]
    assert ("load", "dbfs:/tables/t", {"versionAsOf": 1}) in loads  # format("delta") with versionAsOf
    statements = [c[1] for c in spark.calls if c[0] == "sql"]
    assert "DESCRIBE HISTORY delta.`dbfs:/tables/t` LIMIT 1" in statements
    merges = [s for s in statements if s.startswith("MERGE")]
    assert merges[0] == (
        "MERGE INTO delta.`dbfs:/tables/t` AS t USING "
        + merges[0].split(" USING ")[1].split(" ")[0]
        + " AS s ON t.`id` = s.`id` WHEN NOT MATCHED THEN INSERT *"
    )
    assert ("save", "dbfs:/tables/t") in spark.calls  # the empty append that creates the table MERGE needs
    assert spark.views == {}  # every temporary view dropped


def test_a_merge_that_loses_to_a_concurrent_run_merges_again_without_its_keys(tmp_path):
    spark = FakeSpark(tmp_path)
    storage = Storage(spark, "dbfs:/tables")
    storage.append_new("t", rows(spark, [0]), "id")
    spark.concurrent = [rows(spark, range(1, 10)).table]  # the other run wrote keys 1..9 after this one read
    spark.calls.clear()
    result = storage.append_new("t", rows(spark, range(15)), "id")
    assert ids(spark, "dbfs:/tables/t") == list(range(15))  # every key once
    assert (result.rows, result.concurrent) == (5, 9)
    assert sum(c[1].startswith("MERGE") for c in spark.calls if c[0] == "sql") == 2


def test_a_catalog_schema_is_read_and_merged_by_table_name(tmp_path):
    spark = FakeSpark(tmp_path)
    storage = Storage(spark, "main.humpback")
    storage.append_new("t", rows(spark, range(3)), "id")
    storage.append_new("t", rows(spark, range(5)), "id")
    assert storage.read("t").count() == 5 and storage.read("t", version=1).count() == 3
    assert ("saveAsTable", "`main`.`humpback`.`t`") in spark.calls
    statements = [c[1] for c in spark.calls if c[0] == "sql"]
    assert "SELECT * FROM `main`.`humpback`.`t` VERSION AS OF 1" in statements
    assert any(s.startswith("MERGE INTO `main`.`humpback`.`t` AS t") for s in statements)


def test_training_reads_the_pinned_snapshot_through_spark_when_the_job_does(tmp_path, monkeypatch):
    spark = FakeSpark(tmp_path)
    storage = Storage(spark, "dbfs:/tables")
    storage.append_new("t", rows(spark, range(4)), "id")  # version 1 (0 is the empty creation)
    storage.append_new("t", rows(spark, range(4, 8), status="dropped"), "id")
    storage.append_new("t", rows(spark, range(8, 10)), "id")
    monkeypatch.setattr(data, "_active_session", lambda: spark)
    frame, version = data.read_snapshot(storage.path("t"), 2, None, ["id", "text"])
    assert (sorted(frame["id"]), version, list(frame.columns)) == (list(range(4)), 2, ["id", "text"])
    frame, version = data.read_snapshot(storage.path("t"), None, None, ["id"])
    assert (sorted(frame["id"]), version) == ([0, 1, 2, 3, 8, 9], 3)
    assert ("load", "dbfs:/tables/t", {"versionAsOf": 2}) in spark.calls
    with pytest.raises(ValueError, match="no version committed at or before"):
        data.read_snapshot(storage.path("t"), None, datetime.now(timezone.utc) - timedelta(days=1), ["id"])
    frame, version = data.read_snapshot(storage.path("t"), None, datetime.now(timezone.utc), ["id"])
    assert version == 3


def test_without_a_jvm_gateway_tables_are_found_in_sql(tmp_path):
    """Spark Connect (Databricks shared and serverless compute) has no ``_jvm``: existence is asked in SQL."""
    spark = FakeSpark(tmp_path)
    spark._jvm = None
    storage = Storage(spark, "dbfs:/tables")
    assert storage.version("t") is None
    storage.append_new("t", rows(spark, range(3)), "id")
    assert storage.version("t") == 1 and storage.read("t").count() == 3
