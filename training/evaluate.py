"""Held-out loss of a model directory, scored exactly as training encodes (chat template, loss on answer tokens)."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from training.config import TrainConfig
from training.data import IGNORE_INDEX, Example, encode_examples
from training.train import collate, token_loss


def answer_loss(model_dir: str, cfg: TrainConfig, examples: list[Example], batch: int = 4) -> float:
    """Mean cross-entropy per answer token of ``examples`` in ``cfg.direction`` under the model at ``model_dir``
    (fp32: the CPU's bf16 matmuls are slow here, and the figure should not depend on the stored precision)."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    encoded, _ = encode_examples(tokenizer, examples, cfg)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    total, tokens = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(encoded), batch):
            input_ids, attention_mask, labels = collate(encoded[i : i + batch], pad)
            total += token_loss(model(input_ids=input_ids, attention_mask=attention_mask).logits, labels).item()
            tokens += int((labels[:, 1:] != IGNORE_INDEX).sum())
    return total / tokens
