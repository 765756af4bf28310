"""Periodic, atomic training checkpoints, so that a killed run resumes where it stopped.

One file, ``<output_dir>.ckpt/checkpoint.pt``, holds everything the next step depends on: weights,
optimizer and scheduler state, every process's RNG state (dropout) and the ``Progress`` so far. The batch
order is a pure function of the data and the seed, so the number of steps done is the position in it: a
resumed run replays the batch generator that far. The file is written under a temporary name, flushed to
disk and renamed, so a kill mid-write leaves the previous checkpoint whole. A checkpoint of another config,
other data, another base model or another number of processes is ignored. The directory is removed once
the finished model is saved.

State dicts go through ``torch.distributed.checkpoint.state_dict``, which gives full, unsharded tensors for
a single process, DDP and FSDP alike; rank 0 writes them. Frozen parameters (the base under LoRA) are left
out: the base model directory has them, so a LoRA checkpoint holds only the adapters and their optimizer
state (megabytes, not the 14 GB of a 7B base). Every process reads the whole file back, which
bounds the model size by a machine's CPU memory; sharded checkpoints (``torch.distributed.checkpoint.save``)
would lift that and are not needed at the sizes trained here.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from training.distributed import Runtime, unwrap

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"


@dataclass
class Progress:
    """What the run has done so far; saved in every checkpoint."""

    step: int = 0
    losses: list[float] = field(default_factory=list)
    tokens: int = 0  # tokens trained on, padding excluded
    slots: int = 0  # tokens in the padded micro-batches, padding included
    seconds: float = 0.0  # time spent in the training loop
    tracking_run_id: str | None = None  # a resumed run continues the same MLflow run

    @property
    def padding_waste(self) -> float:
        """Fraction of the padded micro-batches' tokens that were padding."""
        return 1 - self.tokens / self.slots if self.slots else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def checkpoint_dir(output_dir: str | Path) -> Path:
    out = Path(output_dir)
    return out.with_name(out.name + ".ckpt")


class Checkpointer:
    """Saves and restores the training state of one run; ``every`` = 0 turns saving off."""

    def __init__(self, output_dir: str | Path, fingerprint: dict[str, Any], every: int, rt: Runtime):
        self.path = checkpoint_dir(output_dir) / CHECKPOINT
        # The process count is part of the state: each process has its own RNG stream.
        self.fingerprint = {**fingerprint, "world_size": rt.world_size}
        self.every = every
        self.rt = rt

    def due(self, step: int, max_steps: int) -> bool:
        return bool(self.every) and step % self.every == 0 and step < max_steps

    def save(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, progress: Progress
    ) -> None:
        """Collective: every process must call it; rank 0 writes."""
        model_state, optim_state = get_state_dict(
            model,
            optimizer,
            options=StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True),
        )
        # ignore_frozen_params keeps a frozen weight tied to another name (SmolLM2's lm_head = embeddings).
        frozen = {name for name, p in unwrap(model).named_parameters(remove_duplicate=False) if not p.requires_grad}
        model_state = {name: value for name, value in model_state.items() if name not in frozen}
        rng = self.rt.gather(rng_state())
        if not self.rt.is_main:
            return
        state = {
            "fingerprint": self.fingerprint,
            "progress": dataclasses.asdict(progress),
            "model": model_state,
            "optimizer": optim_state,
            "scheduler": scheduler.state_dict(),
            "rng": rng,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{CHECKPOINT}.tmp")
        try:
            with open(tmp, "wb") as f:
                torch.save(state, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)  # atomic: the checkpoint is the old one or the new one, never half of each
        except BaseException:
            tmp.unlink(missing_ok=True)  # a full disk: the half-written file would only keep it full
            raise
        log.info("checkpoint at step %d: %s", progress.step, self.path)

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> Progress:
        """Load the last checkpoint of this run into model, optimizer, scheduler and RNG; its progress,
        or a fresh ``Progress`` when there is none to resume."""
        if not self.path.is_file():
            return Progress()
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        if state["fingerprint"] != self.fingerprint:
            log.warning("ignoring %s: it belongs to another config, data, base model or process count", self.path)
            return Progress()
        # Not strict when parameters are frozen: the checkpoint has none of them, on purpose.
        frozen = any(not p.requires_grad for p in model.parameters())
        set_state_dict(
            model,
            optimizer,
            model_state_dict=state["model"],
            optim_state_dict=state["optimizer"],
            options=StateDictOptions(full_state_dict=True, strict=not frozen),
        )
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"][self.rt.rank])
        progress = Progress(**state["progress"])
        log.info("resuming from step %d of %s", progress.step, self.path)
        return progress

    def remove(self) -> None:
        if self.rt.is_main:
            shutil.rmtree(self.path.parent, ignore_errors=True)


def rng_state() -> dict[str, Any]:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])
