"""The storage module on the delta-rs path: real Spark writes, real Delta commits, re-runs add nothing."""

import os

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
