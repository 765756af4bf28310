"""LoRA and QLoRA (peft) for the training recipe: adapters on the base model, merged back when saved.

The run trains a ``PeftModel`` whose adapters are its only trainable parameters; checkpoints hold just those
and their optimizer state (``training.checkpoint``). The saved model is the base with the adapters merged in
(W + alpha/r * B A), a plain Hugging Face directory that vLLM and transformers load like any other, plus the
adapter itself in ``adapter/`` (a few MB) for inspection or serving as a LoRA.

The merge happens on the model that trained, except where that model cannot give full-precision weights:
under QLoRA its base is 4-bit (merging there would round the update into NF4), and under FSDP its weights are
shards. Then rank 0 rebuilds the base on CPU in full precision, loads the trained adapters into it and merges.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training

from training.config import LoraConfig
from udfs.config import ConfigError

ADAPTER = "adapter"  # subdirectory of the saved model


def check_supported(lora: LoraConfig) -> None:
    """Fail before any data or model is loaded when QLoRA is asked for where it cannot run."""
    if lora.quantize == "none":
        return
    missing = [
        what
        for what, ok in (
            ("the bitsandbytes package", importlib.util.find_spec("bitsandbytes") is not None),
            ("a CUDA GPU", torch.cuda.is_available()),
        )
        if not ok
    ]
    if missing:
        raise ConfigError(
            f"lora.quantize: 4bit (QLoRA) needs {' and '.join(missing)}, which this machine lacks; "
            "set lora.quantize=none (LoRA on a full-precision base)"
        )


def quantization(lora: LoraConfig) -> Any:
    """The bitsandbytes config that loads the frozen base in 4-bit NF4, or None."""
    if lora.quantize == "none":
        return None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def add_adapters(model: torch.nn.Module, lora: LoraConfig, gradient_checkpointing: bool) -> PeftModel:
    """``model`` frozen, with trainable adapters on ``lora.target_modules`` (fp32, whatever the base dtype)."""
    if lora.quantize != "none":
        # Norms and the head in fp32 for a stable loss under a 4-bit base, as the QLoRA paper does.
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    return get_peft_model(model, peft_config(lora))


def peft_config(lora: LoraConfig) -> PeftLoraConfig:
    return PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type="CAUSAL_LM",
    )


def needs_rebuild(lora: LoraConfig, sharded: bool) -> bool:
    """Whether the merge must happen on a full-precision copy of the base (see the module docstring)."""
    return lora.quantize != "none" or sharded


def with_trained_adapters(base: torch.nn.Module, lora: LoraConfig, adapters: dict[str, torch.Tensor]) -> PeftModel:
    """A fresh full-precision ``base`` with adapters, loaded with the trained ones (names as in training)."""
    model = get_peft_model(base, peft_config(lora))
    result = model.load_state_dict(adapters, strict=False)
    if result.unexpected_keys or any("lora_" in key for key in result.missing_keys):
        raise ValueError(
            f"trained adapters do not match the rebuilt model: unexpected {result.unexpected_keys[:3]}, "
            f"missing {[k for k in result.missing_keys if 'lora_' in k][:3]}"
        )
    return model


def merge(model: PeftModel, out_dir: Any) -> torch.nn.Module:
    """Save the adapter to ``out_dir/adapter`` and return the base with it merged in."""
    model.save_pretrained(out_dir / ADAPTER)
    return model.merge_and_unload()
