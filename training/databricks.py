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

from typing import Sequence

from training.config import TrainConfig
from training.launch import launch
from training.train import TrainResult
from udfs.config import load_config


def train_distributed(
    config_path: str,
    overrides: Sequence[str] = (),
    num_processes: int = 1,
    use_gpu: bool = True,
    local_mode: bool = False,
) -> TrainResult:
    """Train with ``num_processes`` processes started by TorchDistributor on the active Spark session."""
    # A config error fails here, before any GPU is claimed.
    cfg = load_config(TrainConfig, config_path, overrides)
    return launch(cfg, num_processes, spark=True, use_gpu=use_gpu, local_mode=local_mode)
