"""The LLM stages' GPU resource profile: applied where Spark can schedule it, else a clean fallback (logged once).

Local mode is checked on the real local session, where Spark itself rejects a task profile; dynamic allocation
and Spark before 4.0 by a session's conf and a monkeypatched pyspark version."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from pyspark.resource import ResourceProfileBuilder, TaskResourceRequests

from jobs.stages import base
from training import spark_profiles


class FakeSession:
    """The two things ``profile_unavailable`` reads of a session: its version and its conf."""

    def __init__(self, version: str = "4.0.0", **conf: str):
        self.version = version
        self.conf = SimpleNamespace(get=lambda key, default=None: conf.get(key, default))


CLUSTER = {
    "spark.master": "spark://10.0.0.1:7077",
    "spark.executor.instances": "3",
    "spark.executor.resource.gpu.amount": "2",
}


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(base, "_profile_warned", set())


def rows_in(spark):
    return spark.createDataFrame([(i,) for i in range(6)], "id long")


def doubler():
    """A batch function defined in a function, so Spark's workers unpickle it by value (not this module)."""

    def double(batches):
        for batch in batches:
            yield batch.assign(id=batch["id"] * 2)

    return double


def test_spark_itself_rejects_a_task_profile_in_local_mode(spark):
    """Why the fallback exists: the profile the LLM stages used to pass unconditionally fails the job here."""
    profile = ResourceProfileBuilder().require(TaskResourceRequests().resource("gpu", 1)).build
    with pytest.raises(Exception, match="TaskResourceProfiles are only supported"):
        rows_in(spark).mapInPandas(doubler(), "id long", profile=profile).count()


def test_local_mode_runs_the_llm_map_without_the_profile_and_says_why_once(spark, caplog):
    ctx = SimpleNamespace(spark=spark, cfg=SimpleNamespace(engine=SimpleNamespace(partitions=2, task_gpus=1)))
    with caplog.at_level(logging.WARNING, logger=base.log.name):
        first = base.llm_map(ctx, rows_in(spark), doubler(), "id long")
        second = base.llm_map(ctx, rows_in(spark), doubler(), "id long")
    assert sorted(r.id for r in first.collect()) == sorted(r.id for r in second.collect()) == [0, 2, 4, 6, 8, 10]
    warnings = [r.getMessage() for r in caplog.records if "engine.task_gpus" in r.getMessage()]
    assert len(warnings) == 1 and "local mode" in warnings[0] and "local[2]" in warnings[0], warnings


def test_a_cluster_on_spark_4_without_dynamic_allocation_gets_the_gpu_profile(spark):
    profile = base.gpu_profile(FakeSession("4.0.0", **CLUSTER), 0.5)
    assert profile is not None and profile.taskResources["gpu"].amount == 0.5
    assert base.gpu_profile(FakeSession("4.0.0", **CLUSTER), None) is None  # CPU stages: no profile at all
    local_cluster = FakeSession("4.0.0", **{"spark.master": "local-cluster[2,1,1024]"})
    assert spark_profiles.profile_unavailable(local_cluster) is None


@pytest.mark.parametrize(
    "session, expected",
    [
        (FakeSession("4.0.0", **CLUSTER, **{"spark.dynamicAllocation.enabled": "true"}), "dynamicAllocation"),
        (FakeSession("4.1.0", **CLUSTER, **{"spark.dynamicAllocation.enabled": " TRUE"}), "dynamicAllocation"),
        (FakeSession("3.5.2", **CLUSTER), "Spark 3.5.2 has no stage-level profiles"),
        (FakeSession("4.0.0", **{"spark.master": "local[*, 4]"}), "local mode"),  # a single-node Databricks cluster
        (FakeSession("4.0.0", **{"spark.master": "local"}), "local mode"),
    ],
)
def test_where_spark_cannot_schedule_a_profile_there_is_none_and_a_reason(session, expected, caplog):
    with caplog.at_level(logging.WARNING, logger=base.log.name):
        assert base.gpu_profile(session, 1) is None
        assert base.gpu_profile(session, 1) is None
    (warning,) = [r.getMessage() for r in caplog.records]
    assert expected in warning and "engine.task_gpus=1" in warning


def test_pyspark_before_4_gets_no_profile_keyword_at_all(monkeypatch):
    """pyspark 3.5's mapInPandas has no ``profile`` parameter: passing profile=None would raise TypeError."""
    monkeypatch.setattr(spark_profiles.pyspark, "__version__", "3.5.2")
    assert "pyspark 3.5.2" in spark_profiles.profile_unavailable(FakeSession("4.0.0", **CLUSTER))
    calls = []

    class Rows:
        def repartition(self, n):
            return self

        def mapInPandas(self, fn, schema, **kwargs):
            calls.append(kwargs)
            return "mapped"

    ctx = SimpleNamespace(
        spark=FakeSession("3.5.2", **CLUSTER), cfg=SimpleNamespace(engine=SimpleNamespace(partitions=4, task_gpus=1))
    )
    assert base.llm_map(ctx, Rows(), doubler(), "id long") == "mapped" and calls == [{}]


@pytest.mark.parametrize("text, expected", [("4.0.0", (4, 0)), ("3.5.2-databricks", (3, 5)), ("4.1.0.dev0", (4, 1))])
def test_version_tuple(text, expected):
    assert spark_profiles.version_tuple(text) == expected
    with pytest.raises(ValueError, match="not a Spark version"):
        spark_profiles.version_tuple("unknown")


class Rows:
    """What ``llm_map`` does to its rows: the partitions it asks for, and the profile it maps under."""

    def __init__(self):
        self.partitions, self.profile = None, "unset"

    def repartition(self, n):
        self.partitions = n
        return self

    def mapInPandas(self, fn, schema, profile=None):
        self.profile = profile
        return self


def mapped(session, partitions, task_gpus) -> Rows:
    ctx = SimpleNamespace(
        spark=session, cfg=SimpleNamespace(engine=SimpleNamespace(partitions=partitions, task_gpus=task_gpus))
    )
    return base.llm_map(ctx, Rows(), doubler(), "id long")


def test_null_partitions_give_one_llm_task_per_engine_slot_of_the_cluster():
    """3 executors x 2 GPUs: 6 engines of one GPU, 3 of two; before, null left the map on whatever partitions
    the input had (1-2 after a filter) and most GPUs idle."""
    assert mapped(FakeSession("4.0.0", **CLUSTER), None, 1).partitions == 6
    assert mapped(FakeSession("4.0.0", **CLUSTER), None, 2).partitions == 3
    with_profile = mapped(FakeSession("4.0.0", **CLUSTER), 24, 1)
    assert with_profile.partitions == 24 and with_profile.profile is not None  # the profile places them
    assert mapped(FakeSession("4.0.0", **CLUSTER), None, None).partitions is None  # CPU runs: Spark's default


@pytest.mark.parametrize(
    "session, slots",
    [
        (FakeSession("4.0.0", **CLUSTER, **{"spark.dynamicAllocation.enabled": "true"}), 6),
        (FakeSession("4.0.0", **{"spark.master": "local[*, 4]"}), 1),  # single node, one GPU
        (FakeSession("4.0.0", **{"spark.master": "local[8]", "spark.driver.resource.gpu.amount": "4"}), 4),
    ],
)
def test_without_a_profile_llm_tasks_are_capped_at_one_engine_per_gpu(session, slots):
    """Without a profile each LLM task would take the default share (0.0625: 16 engines per GPU)."""
    capped = mapped(session, 64, 1)
    assert capped.partitions == slots and capped.profile is None
    assert mapped(session, None, 1).partitions == slots
