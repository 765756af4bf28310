"""Memory estimates for a 7B Llama (Llama-2-7B's config.json) per strategy, and the early failure that says
what to change."""

from __future__ import annotations

import dataclasses
import json

import pytest

from training.config import TrainConfig
from training.memory import (
    DoesNotFit,
    GiB,
    ModelShape,
    Plan,
    check_fits,
    estimate_memory,
)

LLAMA_7B = {
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "tie_word_embeddings": False,
}
SEVEN_B = ModelShape.from_config(LLAMA_7B)
P = 6_738_415_616  # Llama-2-7B's published parameter count


def test_parameter_counts_from_config_json(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_7B))
    assert ModelShape.from_dir(tmp_path).parameters == P
    # LoRA r=16 on the 7 projections: 16 * (in + out) summed, 32 blocks.
    assert SEVEN_B.lora_parameters(16) == 32 * 16 * (4 * (4096 + 4096) + 3 * (4096 + 11008))  # 39,976,960
    assert SEVEN_B.lora_parameters(16, ("q_proj", "v_proj")) == 32 * 16 * 2 * 8192


def test_states_per_strategy_for_7b():
    full_fp32 = estimate_memory(SEVEN_B, Plan("full", "fp32"))
    assert full_fp32.weights + full_fp32.gradients + full_fp32.optimizer == 16 * P  # ~100.4 GiB
    assert estimate_memory(SEVEN_B, Plan("full", "bf16")).weights == 6 * P  # fp32 master + bf16 copy
    lora = estimate_memory(SEVEN_B, Plan("lora", "bf16"))
    assert lora.weights == 2 * P + 4 * 39_976_960 and lora.optimizer == 8 * 39_976_960
    qlora = estimate_memory(SEVEN_B, Plan("qlora", "bf16"))
    assert 3.9 * GiB < qlora.weights < 4.3 * GiB  # ~6.5B linear weights at ~0.53 bytes + 262M fp32 embeddings
    fsdp8 = estimate_memory(SEVEN_B, Plan("full", "bf16", "fsdp", devices=8))
    assert fsdp8.optimizer == 8 * P / 8 and fsdp8.gradients == 4 * P / 8
    ddp8 = estimate_memory(SEVEN_B, Plan("full", "bf16", "ddp", devices=8))
    assert ddp8.optimizer == 8 * P and ddp8.gradients == 8 * P  # a replica each, plus the buckets


def test_gradient_checkpointing_cuts_activations_for_7b():
    plain = estimate_memory(SEVEN_B, Plan("lora", "bf16", micro_batch_size=4, seq_len=2048))
    checkpointed = estimate_memory(
        SEVEN_B, Plan("lora", "bf16", micro_batch_size=4, seq_len=2048, gradient_checkpointing=True)
    )
    # 8192 tokens x 32 layers x (7*4096 + 2*4096 + 4*11008) values x 2 bytes, + logits 8192 x 32000 x 10 bytes
    assert plain.activations == 8192 * 32 * 80896 * 2 + 8192 * 32000 * 10  # ~42 GiB
    assert checkpointed.activations < plain.activations / 5
    assert (
        14 * GiB
        < estimate_memory(SEVEN_B, Plan("lora", "bf16", micro_batch_size=1, gradient_checkpointing=True)).total
        < 18 * GiB
    )


def test_a_run_that_cannot_fit_fails_naming_what_to_change():
    with pytest.raises(DoesNotFit, match=r"6\.74B parameters as full.*more than its 80\.0 GiB") as caught:
        check_fits(SEVEN_B, Plan("full", "bf16"), 80 * GiB)
    message = str(caught.value)
    assert "lora.enabled=true" in message and "distributed.strategy=fsdp" not in message  # one device: no FSDP
    # Eight 80 GB GPUs: sharding alone makes full fine-tuning fit.
    with pytest.raises(DoesNotFit, match="distributed.strategy=fsdp") as caught:
        check_fits(SEVEN_B, Plan("full", "bf16", devices=8), 80 * GiB)
    assert "lora.enabled=true" in str(caught.value)
    assert check_fits(SEVEN_B, Plan("full", "bf16", "fsdp", devices=8, gradient_checkpointing=True), 80 * GiB)
    # A 12 GB GPU: only changes together fit (checkpointing + micro-batches of one + QLoRA).
    with pytest.raises(DoesNotFit, match=r"\+ .*quantize=4bit") as caught:
        check_fits(SEVEN_B, Plan("full", "bf16"), 12 * GiB)
    with pytest.raises(DoesNotFit, match="more memory"):
        check_fits(SEVEN_B, Plan("qlora", "bf16", gradient_checkpointing=True, micro_batch_size=1), 2 * GiB)


def test_plan_of_a_train_config():
    cfg = TrainConfig("base", "out")
    lora = dataclasses.replace(cfg, lora=dataclasses.replace(cfg.lora, enabled=True, r=8))
    assert Plan.of(cfg, 1, bf16=False) == Plan("full", "fp32", micro_batch_size=4, seq_len=2048)
    assert Plan.of(lora, 8, bf16=True) == Plan("lora", "bf16", devices=8, lora_r=8)
