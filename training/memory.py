"""Training memory per device, estimated from a model's config.json before any weight is loaded, and a check
that fails early, naming what to change, when a run cannot fit.

Bytes per parameter (P: model parameters, A: adapter parameters, as ``training.train`` trains):

- full fine-tuning: fp32 weights 4 + fp32 gradients 4 + AdamW moments 8 = 16 P, in fp32 and in bf16 alike
  (bf16 is autocast over fp32 master weights, which add a bf16 copy of the weights: + 2 P);
- LoRA: the frozen base in the compute dtype (2 P in bf16, 4 P in fp32) + 16 A;
- QLoRA: the base's linear layers in 4-bit NF4 with double-quantised scales (~0.53 bytes each), embeddings
  and head in fp32 (``prepare_model_for_kbit_training``) + 16 A.

FSDP divides weights, gradients and optimizer state by the number of devices and gathers one transformer block
at a time (two with prefetch); DDP keeps a whole replica per device, plus the gradient buckets it reduces in.

Activations of one micro-batch (b sequences of s tokens, L layers, hidden h, MLP width i, key/value width kv),
in the compute dtype: each layer keeps about 7 h + 2 kv + 4 i values per token (norm inputs, q/k/v, attention
output, the MLP's gate, up, activation and product); with gradient checkpointing a layer keeps only its input
(h per token) and one layer's full set is alive while it is recomputed. The loss adds the logits (b s vocab)
in the compute dtype, their fp32 copy and its gradient. Attention scores are not counted: SDPA/flash kernels
do not materialise them. A fixed 1 GiB covers the CUDA context and allocator slack. These are estimates for
deciding what to run, good to ~20 %; what a run then allocates is in the CUDA memory stats.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from training.config import PROJECTIONS, TrainConfig

GiB = 2**30
OVERHEAD = GiB
NF4_BYTES = 0.5 + 0.5 / 64 * (8 / 256 + 4 / 8)  # 4 bits + 8-bit scale per 64 + fp32 scale-of-scales per 256 blocks


@dataclass(frozen=True)
class ModelShape:
    """The sizes that memory depends on, read from a Llama-style config.json (Llama, Mistral, Qwen2, SmolLM)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    tie_word_embeddings: bool = False

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelShape:
        heads = config["num_attention_heads"]
        return cls(
            vocab_size=config["vocab_size"],
            hidden_size=config["hidden_size"],
            intermediate_size=config["intermediate_size"],
            num_layers=config["num_hidden_layers"],
            num_heads=heads,
            num_kv_heads=config.get("num_key_value_heads") or heads,
            head_dim=config.get("head_dim") or config["hidden_size"] // heads,
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        )

    @classmethod
    def from_dir(cls, model_dir: str | Path) -> ModelShape:
        return cls.from_config(json.loads((Path(model_dir) / "config.json").read_text()))

    def projections(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer in a block, by module name."""
        h, q, kv, i = (
            self.hidden_size,
            self.num_heads * self.head_dim,
            self.num_kv_heads * self.head_dim,
            self.intermediate_size,
        )
        return {
            "q_proj": (h, q),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (q, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    @property
    def block_parameters(self) -> int:
        return sum(a * b for a, b in self.projections().values()) + 2 * self.hidden_size  # + two RMSNorms

    @property
    def embedding_parameters(self) -> int:
        """Input embeddings and the output head (one matrix when tied)."""
        return self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)

    @property
    def parameters(self) -> int:
        return self.num_layers * self.block_parameters + self.embedding_parameters + self.hidden_size

    def lora_parameters(self, r: int, target_modules: tuple[str, ...] = PROJECTIONS) -> int:
        """A (r x in) and B (out x r) for every targeted projection of every block."""
        shapes = [(a, b) for name, (a, b) in self.projections().items() if name in target_modules]
        return self.num_layers * sum(r * (a + b) for a, b in shapes)


@dataclass(frozen=True)
class Plan:
    """How a run trains, as far as memory goes."""

    method: Literal["full", "lora", "qlora"] = "full"
    precision: Literal["fp32", "bf16"] = "bf16"
    strategy: Literal["ddp", "fsdp"] = "ddp"
    devices: int = 1
    gradient_checkpointing: bool = False
    micro_batch_size: int = 4
    seq_len: int = 2048
    lora_r: int = 16
    lora_targets: tuple[str, ...] = PROJECTIONS

    @classmethod
    def of(cls, cfg: TrainConfig, devices: int, bf16: bool) -> Plan:
        """The plan of ``cfg`` on ``devices`` devices; ``bf16``: whether they have it (for precision auto)."""
        method = ("qlora" if cfg.lora.quantize != "none" else "lora") if cfg.lora.enabled else "full"
        precision = "bf16" if cfg.optim.precision == "bf16" or (cfg.optim.precision == "auto" and bf16) else "fp32"
        return cls(
            method,
            precision,
            cfg.distributed.strategy,
            devices,
            cfg.optim.gradient_checkpointing,
            cfg.optim.micro_batch_size,
            cfg.optim.max_seq_len,
            cfg.lora.r,
            cfg.lora.target_modules,
        )


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per device."""

    weights: float
    gradients: float
    optimizer: float
    activations: float
    overhead: float = OVERHEAD

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations + self.overhead

    def describe(self) -> str:
        parts = ", ".join(
            f"{name} {getattr(self, name) / GiB:.1f}"
            for name in ("weights", "gradients", "optimizer", "activations", "overhead")
        )
        return f"{self.total / GiB:.1f} GiB ({parts})"


def estimate_memory(shape: ModelShape, plan: Plan) -> MemoryEstimate:
    """Training memory per device of ``shape`` trained as ``plan`` (see the module docstring)."""
    compute = 2 if plan.precision == "bf16" else 4
    params = shape.parameters
    if plan.method == "full":
        trainable = params
        weights = 4 * params + (2 * params if compute == 2 else 0)
    else:
        trainable = shape.lora_parameters(plan.lora_r, plan.lora_targets)
        if plan.method == "lora":
            weights = compute * params
        else:
            linear = shape.num_layers * sum(a * b for a, b in shape.projections().values())
            weights = NF4_BYTES * linear + 4 * (params - linear)
        weights += 4 * trainable
    gradients, optimizer = 4 * trainable, 8 * trainable
    if plan.strategy == "fsdp" and plan.devices > 1:
        weights, gradients, optimizer = (x / plan.devices for x in (weights, gradients, optimizer))
        weights += 2 * compute * shape.block_parameters  # gathered blocks: the current one and the prefetched
    elif plan.devices > 1:
        gradients *= 2  # DDP reduces in buckets that copy the gradients

    tokens = plan.micro_batch_size * plan.seq_len
    h, kv = shape.hidden_size, shape.num_kv_heads * shape.head_dim
    per_layer = tokens * (7 * h + 2 * kv + 4 * shape.intermediate_size) * compute
    if plan.gradient_checkpointing:
        layers = shape.num_layers * tokens * h * compute + per_layer
    else:
        layers = shape.num_layers * per_layer
    logits = tokens * shape.vocab_size * (compute + 8)
    return MemoryEstimate(weights, gradients, optimizer, layers + logits)


class DoesNotFit(ValueError):
    """The configured run needs more memory per device than there is; the message says what to change."""


# What to change, in the order tried: cheapest in quality and speed first.
REMEDIES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("optim.gradient_checkpointing=true", {"gradient_checkpointing": True}),
    ("optim.micro_batch_size=1 (gradient accumulation keeps the batch)", {"micro_batch_size": 1}),
    ("distributed.strategy=fsdp", {"strategy": "fsdp"}),
    ("lora.enabled=true", {"method": "lora"}),
    ("lora.enabled=true lora.quantize=4bit (QLoRA)", {"method": "qlora"}),
)


def check_fits(shape: ModelShape, plan: Plan, device_bytes: float) -> MemoryEstimate:
    """The estimate, or ``DoesNotFit`` naming the single changes that would fit, else the fewest that
    together would (changes that do not apply, e.g. FSDP on one device, are skipped)."""
    estimate = estimate_memory(shape, plan)
    if estimate.total <= device_bytes:
        return estimate
    remedies = [(key, change) for key, change in REMEDIES if applies(plan, dataclasses.replace(plan, **change))]
    fits = [
        f"{key} ({estimate_memory(shape, dataclasses.replace(plan, **change)).total / GiB:.1f} GiB)"
        for key, change in remedies
        if estimate_memory(shape, dataclasses.replace(plan, **change)).total <= device_bytes
    ]
    if not fits:
        combined, keys = plan, []
        for key, change in remedies:
            combined, keys = dataclasses.replace(combined, **change), [*keys, key]
            if estimate_memory(shape, combined).total <= device_bytes:
                fits = [" + ".join(keys) + f" ({estimate_memory(shape, combined).total / GiB:.1f} GiB)"]
                break
    advice = ("set one of: " + "; ".join(fits)) if fits else "use devices with more memory or more devices with fsdp"
    raise DoesNotFit(
        f"training {shape.parameters / 1e9:.2f}B parameters as {plan.method}, {plan.precision}, "
        f"{plan.strategy} over {plan.devices} device(s) needs about {estimate.describe()} per device, "
        f"more than its {device_bytes / GiB:.1f} GiB: {advice}"
    )


def applies(plan: Plan, changed: Plan) -> bool:
    """Whether a remedy changes anything: FSDP needs several devices, and QLoRA is already LoRA."""
    return (
        changed != plan
        and not (changed.strategy == "fsdp" and plan.devices == 1)
        and not (plan.method == "qlora" and changed.method == "lora")
    )


@dataclass(frozen=True)
class ServingEstimate:
    """Bytes per GPU of a vLLM engine holding one tensor-parallel shard of a model, before its KV cache takes
    what ``gpu_memory_utilization`` leaves (``serving_memory``)."""

    weights: float
    kv_cache: float  # one sequence of max_model_len tokens: vLLM refuses to start with less
    activations: float
    overhead: float = OVERHEAD

    @property
    def total(self) -> float:
        return self.weights + self.kv_cache + self.activations + self.overhead

    def describe(self) -> str:
        parts = ", ".join(
            f"{name.replace('_', ' ')} {getattr(self, name) / GiB:.1f}"
            for name in ("weights", "kv_cache", "activations", "overhead")
        )
        return f"{self.total / GiB:.1f} GiB ({parts})"


def serving_memory(
    shape: ModelShape, dtype_bytes: int, tensor_parallel_size: int, max_model_len: int, max_num_seqs: int
) -> ServingEstimate:
    """Memory per GPU of a vLLM engine serving ``shape``: the weights split over ``tensor_parallel_size`` GPUs,
    the KV cache of one sequence of ``max_model_len`` tokens (K and V of every layer's key/value heads, split
    over the GPUs; vLLM refuses to start when its cache cannot hold one), the profiling pass's activations (one
    batch of max_model_len tokens through a block, and fp32 logits and their softmax for ``max_num_seqs``
    sequences) and the CUDA context and graphs (1 GiB). An engine fits when this is at most
    ``gpu_memory_utilization`` of the GPU; what is left over is KV cache, i.e. concurrency."""
    tp = tensor_parallel_size
    weights = shape.parameters * dtype_bytes / tp
    kv = max_model_len * 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * dtype_bytes / tp
    block = max_model_len * (4 * shape.hidden_size + 2 * shape.intermediate_size / tp) * dtype_bytes
    logits = max_num_seqs * shape.vocab_size * 4 * 2
    return ServingEstimate(weights, kv, block + logits)
