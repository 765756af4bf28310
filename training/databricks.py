"""The training recipe on a Databricks (or any Spark) cluster's GPUs, through Spark's ``TorchDistributor``.

In a notebook or job on a GPU cluster (Databricks Runtime ML has pyspark's TorchDistributor and torch):

    from training.databricks import train_distributed
    result = train_distributed("conf/train/forward.yaml", ["output_dir=/Volumes/main/humpback/models/m0",
                               "distributed.strategy=fsdp"], num_processes=8)

``TorchDistributor(num_processes=8, use_gpu=True).run(...)`` starts one process per GPU across the workers
with the torchrun environment set (RANK, WORLD_SIZE, MASTER_ADDR, ...); ``training.distributed`` joins the
process group from it, so DDP and FSDP work exactly as under torchrun. ``output_dir`` (checkpoints, the model,
the default MLflow store) must be on storage every worker sees, such as a Unity Catalog volume; on Databricks
set ``tracking.uri=databricks`` to record in the workspace's MLflow. ``local_mode=True`` runs the processes on
the driver instead (a single-node cluster).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Sequence

from training.config import TrainConfig
from training.train import TrainResult, train
from udfs.config import load_config


def train_from_config(config_path: str, overrides: Sequence[str]) -> dict[str, Any]:
    """One process's part of the run; TorchDistributor returns the value of rank 0."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return dataclasses.asdict(train(load_config(TrainConfig, config_path, overrides)))


def train_distributed(
    config_path: str,
    overrides: Sequence[str] = (),
    num_processes: int = 1,
    use_gpu: bool = True,
    local_mode: bool = False,
) -> TrainResult:
    """Train with ``num_processes`` processes started by TorchDistributor on the active Spark session."""
    from pyspark.ml.torch.distributor import TorchDistributor

    load_config(TrainConfig, config_path, overrides)  # a config error fails here, before any GPU is claimed
    distributor = TorchDistributor(num_processes=num_processes, local_mode=local_mode, use_gpu=use_gpu)
    return TrainResult(**distributor.run(train_from_config, config_path, list(overrides)))
