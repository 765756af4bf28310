"""Start one training run in N processes from Python: in this process, with torchrun's launcher on this machine,
or with pyspark's TorchDistributor on a cluster (the job's train stage and Databricks use it).

``training.distributed`` is what each of those processes runs; this module only starts them.
"""

from __future__ import annotations

import logging
import os
import uuid

import torch

from training.config import TrainConfig
from training.train import TrainResult, train


def launch(
    cfg: TrainConfig,
    num_processes: int = 1,
    spark: bool = False,
    use_gpu: bool | None = None,
    local_mode: bool = True,
    task_gpus: int = 1,
) -> TrainResult:
    """``train(cfg)`` in ``num_processes`` processes, each joining the group as under torchrun; rank 0's result.

    ``spark``: started by pyspark's ``TorchDistributor`` on the active Spark session (a cluster's GPUs, e.g.
    Databricks with ``distributed.strategy: fsdp`` for big models; ``local_mode`` runs them on the driver), each
    Spark task holding ``task_gpus`` whole GPUs of its own (``training.spark_distributor``).
    Otherwise one process runs in this one, and several are started by torchrun's launcher on this machine.
    ``use_gpu`` defaults to whether this machine has CUDA. Every process must see ``cfg``'s paths.
    """
    if num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    if use_gpu is None:
        use_gpu = torch.cuda.is_available()
    if spark:
        from training.spark_distributor import GpuTaskDistributor

        distributor = GpuTaskDistributor(num_processes, task_gpus, local_mode=local_mode, use_gpu=use_gpu)
        return distributor.run(train_logged, cfg)
    if num_processes == 1:
        return train(cfg)
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # The c10d rendezvous on port 0 picks a free port, so concurrent launches on one machine do not collide.
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=num_processes,
        run_id=uuid.uuid4().hex,
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
    )
    return elastic_launch(config, train_logged)(cfg)[0]


def train_logged(cfg: TrainConfig) -> TrainResult:
    """One process of ``launch``: a fresh interpreter, so logging is set up here (rank 0 at INFO)."""
    level = logging.INFO if int(os.environ.get("RANK", "0")) == 0 else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return train(cfg)
