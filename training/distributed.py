"""The processes of one training run: one process, or several started by torchrun or TorchDistributor.

    # one machine, 2 processes on CPU (gloo); on GPUs one process per GPU (nccl)
    torchrun --nproc_per_node 2 -m training --config conf/train/local_forward.yaml
    # parameters, gradients and optimizer state sharded across 8 GPUs, for models that do not fit one
    torchrun --nproc_per_node 8 -m training --config conf/train/forward.yaml --set distributed.strategy=fsdp
    # 2 machines of 8 GPUs (run on each; output_dir on storage both see)
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 \\
        -m training --config conf/train/forward.yaml
    # Databricks: see training/databricks.py; from Python, in N processes: training.launch.launch(cfg, N[, spark=True])

Every process builds the same sequence of global batches (same data, same seed) and trains on its own
contiguous slice of each batch; gradients are summed across processes before every optimizer step, so a
step sees the whole batch exactly as one process would. Rank 0 alone writes checkpoints, the model and the
MLflow records. The global batch must split into equal whole micro-batches per process
(``batch_size % (world_size * micro_batch_size) == 0``), because FSDP's forward is collective: every
process must run the same number of forward passes.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


T = TypeVar("T")


@dataclass(frozen=True)
class Runtime:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, batch: Sequence[T]) -> Sequence[T]:
        """This process's contiguous slice of a global batch (batches are sorted by length: less padding)."""
        per = len(batch) // self.world_size
        return batch[self.rank * per : (self.rank + 1) * per]

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over all processes."""
        if not self.distributed:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value``, in rank order."""
        if not self.distributed:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


@contextlib.contextmanager
def runtime() -> Iterator[Runtime]:
    """Join the process group that torchrun describes in the environment (WORLD_SIZE > 1), or run alone.

    A group this function started is destroyed when the run returns, after a barrier, so that no process tears
    down its connections while another still uses them (torch reports rare hangs in ``destroy_process_group``
    otherwise). After an exception it is not: the other processes may be inside a collective that would never
    complete, and the launcher (torchrun, TorchDistributor) stops them. One that a caller started is left alone.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = torch.device("cpu")
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    started = world_size > 1 and not dist.is_initialized()
    if started:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    yield Runtime(dist.get_rank() if world_size > 1 else 0, world_size, device)
    if started:
        dist.barrier()
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, rt: Runtime, strategy: str) -> torch.nn.Module:
    """The model as this process trains it: itself alone, a DDP replica, or FSDP shards."""
    if not rt.distributed:
        return model
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        # Each transformer block is its own shard group, so only one block's full parameters are gathered
        # at a time; Hugging Face models name their block classes in _no_split_modules.
        blocks = set(getattr(model, "_no_split_modules", None) or ())
        for module in model.modules():
            if type(module).__name__ in blocks:
                fully_shard(module)
        return fully_shard(model)
    return DistributedDataParallel(model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The Hugging Face model inside a DDP wrapper (FSDP shards the model in place)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def gradient_sync(model: torch.nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """Skip the gradient exchange on all but the last micro-batch of a step: one exchange per step."""
    if isinstance(model, DistributedDataParallel) and not sync:
        return model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP
        model.set_requires_gradient_sync(sync)
    return contextlib.nullcontext()
