"""An s3:// root on the delta-rs path, against a real local S3 server: Spark here has no Hadoop S3 connector, so
every file goes through the executors' pyarrow writers and readers and every commit through delta-rs."""

from deltalake import DeltaTable

from jobs.augment import main
from jobs.storage import Storage
from tests.conftest import ROOT, sample_pages, write_warc
from tests.spark.test_storage import race
from training.data import read_snapshot


def _keys(s3, bucket: str, prefix: str) -> set[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def test_append_read_version_and_pinned_read_on_s3(spark, s3_env):
    bucket = s3_env.bucket("storage-rs")
    storage = Storage(spark, f"s3://{bucket}/tables")
    assert (storage.engine, storage.root) == ("delta-rs", f"s3://{bucket}/tables")
    assert storage.read("t") is None and storage.version("t") is None

    rows = [(i, f"t{i}", "ok" if i % 2 else "dropped") for i in range(10)]
    first = spark.createDataFrame(rows, "id long, text string, status string")
    assert (storage.append_new("t", first, "id").rows, storage.version("t")) == (10, 0)
    assert storage.append_new("t", first, "id").rows == 0  # re-run: nothing new, no commit
    more = spark.createDataFrame([(i, f"t{i}", "ok") for i in range(5, 15)], "id long, text string, status string")
    assert (storage.append_new("t", more, "id").rows, storage.version("t")) == (5, 1)

    assert sorted(r.id for r in storage.read("t").collect()) == list(range(15))
    assert storage.read("t", version=0).count() == 10
    # any Delta reader opens it: delta-rs with the same credentials (from the environment)
    assert sorted(DeltaTable(storage.path("t"), storage_options=storage.options).to_pandas()["id"]) == list(range(15))
    # the training set's pinned read, as the train stage passes it (no Spark with Delta here: delta-rs)
    pinned, version = read_snapshot(storage.path("t"), 0, None, ["id", "text"])
    assert (sorted(pinned["id"]), version) == ([1, 3, 5, 7, 9], 0)
    # every object is the log or a file the log references: nothing was staged through a local disk
    table = DeltaTable(storage.path("t"), storage_options=storage.options)
    data = {k for k in _keys(s3_env, bucket, "tables/t/") if "/_delta_log/" not in k}
    assert data == {u.removeprefix(f"s3://{bucket}/") for u in table.file_uris()}


def test_ingest_and_segment_on_an_s3_root_match_a_local_root(spark, s3_env, tmp_path):
    bucket = s3_env.bucket("storage-job")
    warc = write_warc(tmp_path / "crawl.warc.gz", sample_pages())
    common = [
        "--config",
        str(ROOT / "conf/tiny.yaml"),
        "--set",
        f"input.corpus={warc}",
        "--set",
        f"models.dir={tmp_path}/models",
        "--set",
        "report.after_run=false",
        "--log-dir",
        str(tmp_path / "logs"),
        "--stages",
        "ingest,segment",
    ]
    for root in (f"s3://{bucket}/tables", str(tmp_path / "tables")):
        main([*common, "--set", f"storage.root={root}"])
    local, remote = Storage(spark, str(tmp_path / "tables")), Storage(spark, f"s3://{bucket}/tables")
    for name, key in (("documents", "doc_id"), ("segments", "segment_id")):
        here = local.read(name).select(key, "status").toPandas().sort_values(key, ignore_index=True)
        there = remote.read(name).select(key, "status").toPandas().sort_values(key, ignore_index=True)
        assert len(there) > 0 and there.equals(here), name
    main([*common, "--set", f"storage.root=s3://{bucket}/tables"])  # a re-run adds nothing
    assert remote.read("segments").count() == local.read("segments").count()
    assert remote.version("segments") == 0


def test_two_racing_runs_on_s3_write_each_key_once(spark, s3_env, monkeypatch):
    """With S3's conditional writes (what delta-rs needs for concurrent writers) the check holds on S3 too."""
    monkeypatch.delenv("AWS_S3_ALLOW_UNSAFE_RENAME")
    monkeypatch.setenv("AWS_CONDITIONAL_PUT", "etag")
    root = f"s3://{s3_env.bucket('storage-race')}/tables"
    results = race(spark, root, spark.createDataFrame([(i,) for i in range(12)], "id long"), "id")
    assert sorted((r.rows, r.concurrent) for r in results) == [(0, 12), (12, 0)]
    table = DeltaTable(f"{root}/t", storage_options=s3_env.env)
    assert sorted(table.to_pandas()["id"]) == list(range(12)) and table.version() == 0
