"""pyspark's ``TorchDistributor`` with whole GPUs of its own, on a cluster whose other tasks share GPUs.

``TorchDistributor`` sizes its barrier job by ``int(spark.task.resource.gpu.amount)``, the cluster-wide task
share: unset (conf/spark-gpu.conf: only the LLM stages take GPUs, through a stage-level profile) it raises
RuntimeError, and a fractional share that lets CPU stages run many tasks per GPU executor (databricks.yml:
"0.0625") raises ValueError in ``int()``. Here the training job has its own integer ``task_gpus``: the barrier
job has ``num_processes / task_gpus`` tasks and runs under a stage-level profile that gives each task that many
whole GPUs (each task starts one process per GPU it holds), so the CPU stages keep their share. Where Spark
cannot schedule a profile (local mode, dynamic allocation, Spark < 4.0: ``training.spark_profiles``)
the tasks run under the default task resources, as TorchDistributor's own would.
"""

from __future__ import annotations

import functools
import logging

from pyspark.ml.torch.distributor import TorchDistributor
from pyspark.resource import ResourceProfileBuilder, TaskResourceRequests

from training import spark_profiles

log = logging.getLogger(__name__)


class GpuTaskDistributor(TorchDistributor):
    def __init__(self, num_processes: int, task_gpus: int = 1, local_mode: bool = False, use_gpu: bool = True):
        if task_gpus < 1 or num_processes % task_gpus:
            raise ValueError(f"task_gpus must be >= 1 and divide num_processes ({num_processes}), got {task_gpus}")
        self.task_gpus = task_gpus  # read by _get_num_tasks, which TorchDistributor.__init__ calls
        super().__init__(num_processes=num_processes, local_mode=local_mode, use_gpu=use_gpu)
        if use_gpu and not local_mode:
            reason = spark_profiles.profile_unavailable(self.spark)
            if reason is None:
                self.spark = ProfiledSession(self.spark, task_gpus)
            else:
                log.warning("training tasks run without a %d-GPU profile (%s)", task_gpus, reason)

    def _get_num_tasks(self) -> int:
        if self.use_gpu and not self.local_mode:  # the one place TorchDistributor reads the cluster's share
            return self.num_processes // self.task_gpus
        return super()._get_num_tasks()


class ProfiledSession:
    """The active session for TorchDistributor, except that the barrier job it maps over ``range()`` runs
    under a profile of ``task_gpus`` GPUs per task (TorchDistributor has no profile argument of its own)."""

    def __init__(self, spark, task_gpus: int):
        self._spark = spark
        self.profile = ResourceProfileBuilder().require(TaskResourceRequests().resource("gpu", task_gpus)).build

    def __getattr__(self, name: str):
        return getattr(self._spark, name)

    def range(self, *args, **kwargs):
        df = self._spark.range(*args, **kwargs)
        df.mapInArrow = functools.partial(df.mapInArrow, profile=self.profile)
        return df
