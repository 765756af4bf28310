"""The fine-tuning recipe: base model + examples -> a fine-tuned Hugging Face model directory.

One function, ``train(cfg)``: load data, set up model and optimiser, run the loop (gradient accumulation,
AdamW, lr decaying linearly from ``lr`` to ``final_lr``, gradient clipping, batches of similar lengths),
save atomically with ``training_meta.json``. The loss is on answer tokens only (see ``training.data``).
A re-run with the same config and the same data returns the finished model without training again.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from training.artifacts import read_marker, staged_dir, write_json
from training.config import OptimConfig, TrainConfig
from training.data import IGNORE_INDEX, Encoded, encode_examples, load_examples
from udfs.config import to_dict
from udfs.ids import model_fingerprint

log = logging.getLogger(__name__)

META = "training_meta.json"
# Dropout settings across architectures (Llama has only attention_dropout); those the config has are set.
DROPOUT_FIELDS = ("attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop", "dropout")
WINDOW_BATCHES = 50  # length grouping sorts within windows of this many batches, so batches stay varied


@dataclass(frozen=True)
class TrainResult:
    output_dir: str
    examples: int  # examples trained on (after dropping those whose prompt is too long)
    steps: int
    final_loss: float  # mean token loss of the last step's batch
    provenance: dict[str, Any]


def train(cfg: TrainConfig) -> TrainResult:
    """Fine-tune ``cfg.base_model`` on the configured examples and save it to ``cfg.output_dir``."""
    examples, provenance = load_examples(cfg)
    # The base model's id too: a base rebuilt at the same path must not pass for the old one.
    fingerprint = {
        "config": to_dict(cfg),
        "data_sha256": provenance["sha256"],
        "base_model_id": model_fingerprint(cfg.base_model),
    }
    meta = read_marker(cfg.output_dir, META)
    if meta and meta["fingerprint"] == fingerprint:
        log.info("%s is up to date, not training", cfg.output_dir)
        return TrainResult(cfg.output_dir, meta["examples"], meta["steps"], meta["final_loss"], meta["provenance"])

    torch.manual_seed(cfg.optim.seed)
    start = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(cfg.base_model)
    encoded, counts = encode_examples(tokenizer, examples, cfg)
    if not encoded:
        raise ValueError(f"no training examples fit max_seq_len={cfg.optim.max_seq_len}: {counts}")
    model = load_model(cfg.base_model, cfg.optim.dropout)
    batch_size = cfg.optim.batch_size_for(len(encoded))
    # Padding carries neither attention nor loss, so any id works when the tokenizer has no pad token.
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    log.info("training %s on %d examples %s, batch %d, %d steps", cfg.direction, len(encoded), counts,
             batch_size, cfg.optim.max_steps)
    losses = fit(model, encoded, batch_size, pad_id, cfg.optim)

    result = TrainResult(cfg.output_dir, len(encoded), len(losses), losses[-1], provenance)
    with staged_dir(cfg.output_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(
            tmp / META,
            {
                "fingerprint": fingerprint,
                "config": to_dict(cfg),
                "provenance": provenance,
                "examples": result.examples,
                "trained": counts,
                "batch_size": batch_size,
                "steps": result.steps,
                "final_loss": result.final_loss,
                "losses": losses,
                "seconds": round(time.monotonic() - start, 1),
            },
        )
    log.info("saved %s: loss %.3f -> %.3f", cfg.output_dir, losses[0], losses[-1])
    return result


def load_model(path: str, dropout: float) -> torch.nn.Module:
    config = AutoConfig.from_pretrained(path)
    for name in DROPOUT_FIELDS:
        if hasattr(config, name):
            setattr(config, name, dropout)
    model = AutoModelForCausalLM.from_pretrained(path, config=config, dtype=torch.float32)
    return model.to("cuda" if torch.cuda.is_available() else "cpu")


def fit(
    model: torch.nn.Module, encoded: Sequence[Encoded], batch_size: int, pad_id: int, optim: OptimConfig
) -> list[float]:
    """The training loop; returns each step's mean loss per answer token."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
    decay = 1 - optim.final_lr / optim.lr
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 - decay * s / max(1, optim.max_steps - 1))
    batches = length_grouped_batches([len(e.input_ids) for e in encoded], batch_size, optim.seed)
    device = next(model.parameters()).device
    model.train()
    losses = []
    for step in range(optim.max_steps):
        batch = [encoded[i] for i in next(batches)]
        # Normalise by the batch's answer tokens, not per micro-batch, so accumulation equals one big batch.
        targets = sum(sum(label != IGNORE_INDEX for label in e.labels[1:]) for e in batch)
        step_loss = 0.0
        for i in range(0, len(batch), optim.micro_batch_size):
            micro = collate(batch[i : i + optim.micro_batch_size], pad_id)
            input_ids, attention_mask, labels = (t.to(device) for t in micro)
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
            loss = token_loss(logits, labels) / targets
            loss.backward()
            step_loss += loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(step_loss)
        if step % max(1, optim.max_steps // 10) == 0 or step == optim.max_steps - 1:
            log.info("step %d/%d loss %.4f lr %.2e", step + 1, optim.max_steps, step_loss, schedule.get_last_lr()[0])
    model.eval()
    return losses


def token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of each next token whose label is not IGNORE_INDEX."""
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)).float(),
        labels[:, 1:].reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


def collate(batch: Sequence[Encoded], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded input_ids, attention_mask and labels."""
    width = max(len(e.input_ids) for e in batch)
    input_ids = torch.full((len(batch), width), pad_id)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX)
    for row, e in enumerate(batch):
        n = len(e.input_ids)
        input_ids[row, :n] = torch.tensor(e.input_ids)
        attention_mask[row, :n] = 1
        labels[row, :n] = torch.tensor(e.labels)
    return input_ids, attention_mask, labels


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int) -> Iterator[list[int]]:
    """Endless batches of indices: every epoch is shuffled, sorted by length within windows, cut into
    batches and the batches shuffled, so a batch holds similar lengths (little padding)."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    window = batch_size * WINDOW_BATCHES
    while True:
        rng.shuffle(order)
        batches = []
        for start in range(0, len(order), window):
            chunk = sorted(order[start : start + window], key=lengths.__getitem__)
            batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
        rng.shuffle(batches)
        yield from batches
