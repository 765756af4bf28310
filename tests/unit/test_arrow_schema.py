"""jobs.storage's Arrow schemas come from pyspark's private ``to_arrow_schema``, whose keyword for UTC
timestamps is ``timestamp_utc`` on Spark 4.0/4.1 and ``timezone`` on 4.2: the delta-rs path works on both."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pyspark.sql.pandas import types as spark_types
from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

from jobs import storage

SCHEMA = StructType(
    [StructField("run_id", StringType()), StructField("at", TimestampType()), StructField("rows", LongType())]
)
REAL = spark_types.to_arrow_schema  # pyspark 4.2 here: the timezone keyword


def spark_40(schema, *, error_on_duplicated_field_names_in_struct=False, timestamp_utc=True, prefers_large_types=False):
    """Spark 4.0's signature (branch-4.0 python/pyspark/sql/pandas/types.py), converting as it does."""
    return REAL(schema, timezone="UTC" if timestamp_utc else None)


def spark_35(schema, *, error_on_duplicated_field_names_in_struct=False):
    return REAL(schema, timezone="UTC")


@pytest.mark.parametrize("conversion", [REAL, spark_40, spark_35], ids=["spark-4.2", "spark-4.0", "spark-3.5"])
def test_the_delta_rs_paths_schema_is_utc_on_every_spark(monkeypatch, conversion):
    monkeypatch.setattr(storage, "to_arrow_schema", conversion)
    arrow = storage.arrow_schema(SCHEMA)
    assert arrow.field("at").type == pa.timestamp("us", tz="UTC")
    assert arrow.names == ["run_id", "at", "rows"]
    storage._file_reader("/tmp/none", {}, SCHEMA)  # the executors' reader builds its schema the same way
