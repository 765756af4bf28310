"""TorchDistributor with an integer GPU amount of its own (``training.spark_distributor``), on a cluster whose
CPU stages share each GPU executor in fractions (databricks.yml: 0.0625) or take no GPU (conf/spark-gpu.conf)."""

from __future__ import annotations

import pytest
from pyspark.ml.torch.distributor import TorchDistributor

from training import spark_profiles
from training.spark_distributor import GpuTaskDistributor, ProfiledSession

KEY = "spark.task.resource.gpu.amount"


@pytest.fixture
def task_share(spark):
    """Set the session's default task GPU share as a cluster would (runtime conf: what TorchDistributor reads)."""

    def set_share(value):
        if value is None:
            spark.conf.unset(KEY)
        else:
            spark.conf.set(KEY, value)

    yield set_share
    spark.conf.unset(KEY)


@pytest.mark.parametrize(("share", "error"), [(None, RuntimeError), ("0.0625", ValueError)])
def test_pyspark_cannot_start_on_the_clusters_shares_but_ours_can(spark, task_share, share, error):
    task_share(share)
    with pytest.raises(error):  # why: int("0.0625") in TorchDistributor._get_num_tasks, or "was unset"
        TorchDistributor(num_processes=4, local_mode=False, use_gpu=True)
    assert GpuTaskDistributor(4, task_gpus=1).num_tasks == 4
    assert GpuTaskDistributor(4, task_gpus=2).num_tasks == 2  # one process per GPU a task holds
    assert spark.conf.get(KEY, None) == share  # the CPU stages' share is left as it is


def test_task_gpus_must_divide_the_processes(spark):
    with pytest.raises(ValueError, match="divide num_processes"):
        GpuTaskDistributor(3, task_gpus=2)


def test_on_a_cluster_the_barrier_job_runs_under_a_whole_gpu_profile(spark, monkeypatch):
    monkeypatch.setattr(spark_profiles, "profile_unavailable", lambda session: None)  # as on a standalone/k8s cluster
    distributor = GpuTaskDistributor(4, task_gpus=2)
    assert isinstance(distributor.spark, ProfiledSession)
    assert distributor.spark.conf.get("spark.master").startswith("local")  # everything else: the session's
    # TorchDistributor maps its barrier job over range(num_tasks): that mapInArrow carries the profile
    df = distributor.spark.range(0, distributor.num_tasks, 1, distributor.num_tasks)
    profile = df.mapInArrow.keywords["profile"]
    assert profile.taskResources["gpu"].amount == 2
    assert "spark" not in distributor._create_input_params()  # what is pickled to the tasks stays picklable


def test_where_spark_has_no_profiles_the_session_is_left_alone(spark):
    assert not isinstance(GpuTaskDistributor(2).spark, ProfiledSession)  # local mode: Spark rejects profiles
