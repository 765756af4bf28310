"""The storage module on the delta-rs path: real Spark writes, real Delta commits, re-runs and concurrent runs
add nothing twice."""

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from deltalake import DeltaTable

from jobs.augment import main
from jobs.storage import Storage
from tests.conftest import ROOT
from udfs.config import ConfigError


def test_append_new_is_keyed_and_transactional(spark, tmp_path):
    storage = Storage(spark, str(tmp_path / "tables"))
    assert storage.engine == "delta-rs"
    first = spark.createDataFrame([(i, f"t{i}") for i in range(10)], "id long, text string")
    assert storage.append_new("t", first, "id").rows == 10
    assert storage.append_new("t", first, "id").rows == 0  # re-run: nothing new, no commit
    assert storage.version("t") == 0

    overlap = spark.createDataFrame([(i, f"t{i}") for i in range(5, 15)] * 2, "id long, text string")
    result = storage.append_new("t", overlap, "id")
    assert (result.rows, result.version) == (5, 1)

    table = DeltaTable(storage.path("t"))  # any Delta reader sees the same table
    assert sorted(table.to_pandas()["id"]) == list(range(15))
    assert storage.read("t").count() == 15
    assert storage.read("t", version=0).count() == 10


def test_empty_write_creates_an_empty_table_without_files(spark, tmp_path):
    storage = Storage(spark, str(tmp_path / "tables"))
    result = storage.append_new("e", spark.createDataFrame([], "id string, n int"), "id")
    assert (result.rows, result.version) == (0, 0)
    assert storage.read("e").schema.simpleString() == "struct<id:string,n:int>"
    assert [p for p in os.listdir(storage.path("e")) if p.startswith("w-")] == []


def test_uncommitted_files_are_invisible(spark, tmp_path):
    """A crash between Spark's write and the Delta commit leaves files no reader sees."""
    storage = Storage(spark, str(tmp_path / "tables"))
    storage.append_new("t", spark.createDataFrame([(1, "a")], "id long, text string"), "id")
    spark.createDataFrame([(2, "b")], "id long, text string").write.parquet(storage.path("t") + "/w-crashed")
    assert [r.id for r in storage.read("t").collect()] == [1]
    assert storage.read("missing") is None and storage.version("missing") is None


def test_a_catalog_schema_root_needs_delta_spark(spark, tmp_path):
    """Here Spark has no Delta package, so "auto" is delta-rs: a UC root stops the job before any stage runs."""
    with pytest.raises(ConfigError, match=r"Unity Catalog schema.*delta-spark"):
        Storage(spark, "main.humpback")
    # the job says it in one line (the traceback goes to the log folder)
    with pytest.raises(SystemExit, match=r"storage\.root='main\.humpback'.*delta-spark"):
        main(
            [
                "--config",
                str(ROOT / "conf/tiny.yaml"),
                "--set",
                "storage.root=main.humpback",
                "--set",
                f"models.dir={tmp_path}/models",
                "--stages",
                "ingest",
            ]
        )
    assert Storage(spark, str(tmp_path / "tables.v2")).path("t") == f"{tmp_path}/tables.v2/t"  # a path with a dot


class RacingStorage(Storage):
    """Two of these on one root read the table, then wait for each other before committing: the overlap of
    two runs started together, made certain."""

    def __init__(self, spark, root, barrier: threading.Barrier):
        super().__init__(spark, root)
        self.barrier = barrier

    def insert(self, name, new):
        new = replace(new, df=new.df.cache())
        new.df.count()  # computed against the version read, before the other run commits
        self.barrier.wait(timeout=120)
        return super().insert(name, new)


def race(spark, root: str, df, key: str) -> list:
    barrier = threading.Barrier(2)
    runs = [RacingStorage(spark, root, barrier) for _ in range(2)]
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda s: s.append_new("t", df, key), runs))


@pytest.mark.parametrize("existing", [False, True], ids=["new table", "existing table"])
def test_two_runs_appending_the_same_keys_at_once_write_each_key_once(spark, tmp_path, existing):
    root = str(tmp_path / "tables")
    if existing:
        Storage(spark, root).append_new("t", spark.createDataFrame([(0, "t0")], "id long, text string"), "id")
    df = spark.createDataFrame([(i, f"t{i}") for i in range(20)], "id long, text string")
    results = race(spark, root, df, "id")
    ids = DeltaTable(f"{root}/t").to_pandas()["id"]
    assert sorted(ids) == list(range(20))  # each key exactly once
    new = 19 if existing else 20
    assert sorted(r.rows for r in results) == [0, new]  # one run wrote them, the other found them written
    assert sorted(r.concurrent for r in results) == [0, new]
    assert [r.version for r in results] == [int(existing)] * 2  # one commit; the other run found nothing to add


def test_a_concurrent_run_with_other_keys_loses_nothing(spark, tmp_path):
    """The commit that follows a concurrent one keeps every key the other did not write."""
    root = str(tmp_path / "tables")
    barrier = threading.Barrier(2)
    runs = [RacingStorage(spark, root, barrier) for _ in range(2)]
    frames = [spark.createDataFrame([(i,) for i in range(lo, lo + 10)], "id long") for lo in (0, 5)]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda a: a[0].append_new("t", a[1], "id"), zip(runs, frames)))
    assert sorted(DeltaTable(f"{root}/t").to_pandas()["id"]) == list(range(15))
    assert sorted((r.rows, r.concurrent) for r in results) == [(5, 5), (10, 0)]


def test_a_newer_release_adds_its_columns_and_old_rows_read_null(spark, tmp_path):
    """A table written before a column existed (e.g. ``runs`` before ``status``) takes rows that have it."""
    storage = Storage(spark, str(tmp_path / "t"), "delta-rs")
    storage.append_new("runs", spark.createDataFrame([("a", 1)], "run_id string, n int"), "run_id")
    newer = spark.createDataFrame([("b", 2, "failed")], "run_id string, n int, status string")
    assert storage.append_new("runs", newer, "run_id").rows == 1
    assert sorted(tuple(r) for r in storage.read("runs").collect()) == [("a", 1, None), ("b", 2, "failed")]
    assert storage.append_new("runs", newer, "run_id").rows == 0
