from jobs.stages.base import keyed_id as spark_keyed_id
from udfs.ids import keyed_id


def test_spark_and_python_derive_the_same_ids(spark):
    keys = ["seg-1", "seg-2", "ünïcode ✓"]
    df = spark.createDataFrame([(k,) for k in keys], "segment_id string")
    got = {
        r.segment_id: r.id
        for r in df.select("segment_id", spark_keyed_id("segment_id", "salt-1").alias("id")).collect()
    }
    assert got == {k: keyed_id(k, "salt-1") for k in keys}
    assert len(set(got.values())) == 3 and keyed_id("seg-1", "salt-2") != got["seg-1"]
