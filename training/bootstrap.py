"""The tiny local "base model": a small Llama trained from scratch on a few MB of text, CPU only.

It stands in for LLaMA in tests and local runs, so the whole pipeline (backward model, generation with
vLLM, self-curation, fine-tuning) runs end to end without a model hub. It learns little beyond the shape
of the text, which is all the plumbing needs.

    from training.bootstrap import BaseModelConfig, build_base_model
    build_base_model(texts, "work/models/base-tiny", BaseModelConfig())
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Sequence

import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

from training.progress import report_step
from training.artifacts import read_marker, sha256_texts, staged_dir, write_json
from training.config import BaseModelConfig
from training.tokenizer import build_tokenizer
from udfs.prompts import encode_prompt, fence

log = logging.getLogger(__name__)

MARKER = "bootstrap.json"


def build_base_model(texts: Sequence[str], out_dir: str, cfg: BaseModelConfig) -> str:
    """Build tokenizer and model from ``texts`` into ``out_dir`` (a Hugging Face model directory).

    Cached: returns at once if ``out_dir`` already holds a model built from the same texts and config.
    """
    fingerprint = {"texts_sha256": sha256_texts(texts), "config": dataclasses.asdict(cfg)}
    marker = read_marker(out_dir, MARKER)
    if marker and marker["fingerprint"] == fingerprint:
        log.info("base model %s is up to date", out_dir)
        return out_dir
    torch.manual_seed(cfg.seed)
    start = time.monotonic()
    with staged_dir(out_dir) as tmp:
        tokenizer = build_tokenizer(texts, str(tmp), cfg.vocab_size)
        model = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=len(tokenizer),
                hidden_size=cfg.hidden_size,
                num_hidden_layers=cfg.num_layers,
                num_attention_heads=cfg.num_heads,
                num_key_value_heads=cfg.num_heads,
                head_dim=cfg.hidden_size // cfg.num_heads,
                intermediate_size=cfg.intermediate_size,
                max_position_embeddings=cfg.max_position_embeddings,
                tie_word_embeddings=cfg.tie_word_embeddings,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
        model.generation_config = GenerationConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        # Fenced: a quoted "<|endoftext|>" in a text is text, not the eos that separates texts.
        stream = [i for text in texts for i in encode_prompt(tokenizer, fence(text)) + [tokenizer.eos_token_id]]
        losses = pretrain(model, torch.tensor(stream), cfg)
        model.save_pretrained(tmp)
        write_json(
            tmp / MARKER,
            {
                "fingerprint": fingerprint,
                "tokens": len(stream),
                "first_loss": losses[0],
                "final_loss": losses[-1],
                "seconds": round(time.monotonic() - start, 1),
            },
        )
    log.info("built base model %s: %d tokens, loss %.3f -> %.3f", out_dir, len(stream), losses[0], losses[-1])
    return out_dir


def pretrain(model: LlamaForCausalLM, stream: torch.Tensor, cfg: BaseModelConfig) -> list[float]:
    """Causal-LM training on random packed chunks of the token stream; returns the loss of every step."""
    seq_len = min(cfg.seq_len, len(stream))
    chunks = stream[: len(stream) // seq_len * seq_len].view(-1, seq_len)
    generator = torch.Generator().manual_seed(cfg.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.1, betas=(0.9, 0.95))
    # Linear warmup, then linear decay to a tenth of lr.
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (
            (s + 1) / (cfg.warmup_steps + 1)
            if s < cfg.warmup_steps
            else 1 - 0.9 * (s - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        ),
    )
    model.train()
    losses = []
    for step in range(cfg.steps):
        batch = chunks[torch.randint(len(chunks), (cfg.batch_size,), generator=generator)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        report_step(step + 1, cfg.steps, losses[-1])
        if step % 50 == 0 or step == cfg.steps - 1:
            log.info("pretrain step %d/%d loss %.3f", step + 1, cfg.steps, losses[-1])
    model.eval()
    return losses
