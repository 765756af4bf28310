"""The recipe end to end on the tiny model: loss on answers only, loss goes down, the output loads,
re-runs are cheap."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from training.__main__ import main
from training.bootstrap import BaseModelConfig, build_base_model
from training.data import IGNORE_INDEX, encode_examples, load_examples
from training.train import collate, length_grouped_batches, token_loss, train
from udfs.config import to_dict

pytestmark = pytest.mark.slow


def mean_answer_loss(model_dir, cfg) -> float:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    encoded, _ = encode_examples(tokenizer, load_examples(cfg)[0], cfg)
    input_ids, attention_mask, labels = collate(encoded, tokenizer.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    return token_loss(logits, labels).item() / (labels[:, 1:] != IGNORE_INDEX).sum().item()


def test_prompt_tokens_get_no_gradient(tiny_base, make_config, tmp_path):
    cfg = make_config(tmp_path / "unused")
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    encoded, _ = encode_examples(tokenizer, load_examples(cfg)[0][:2], cfg)
    input_ids, attention_mask, labels = collate(encoded, tokenizer.pad_token_id)
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    logits.retain_grad()
    token_loss(logits, labels).backward()
    has_grad = logits.grad.abs().sum(-1) > 0
    # Position t predicts token t+1: only positions whose next token is an answer token (or eos) get gradient.
    predicts_answer = torch.zeros_like(has_grad)
    predicts_answer[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    assert torch.equal(has_grad, predicts_answer)
    assert predicts_answer.sum() == sum(len(e.labels) - e.labels.count(IGNORE_INDEX) for e in encoded)


def test_length_grouped_batches_cover_every_example_once_per_epoch():
    lengths = [5, 100, 7, 98, 6, 99, 8, 97]
    batches = length_grouped_batches(lengths, batch_size=2, seed=0)
    epochs = [[next(batches) for _ in range(4)] for _ in range(3)]
    assert epochs[0] != epochs[1]
    for epoch in epochs:
        assert sorted(i for b in epoch for i in b) == list(range(8))
        assert all(max(lengths[i] for i in b) - min(lengths[i] for i in b) <= 3 for b in epoch)


def test_training_lowers_the_loss_and_saves_a_loadable_model(trained, tiny_base):
    cfg, result = trained
    assert result.steps == 12 and result.examples == 8
    before, after = mean_answer_loss(tiny_base, cfg), mean_answer_loss(result.output_dir, cfg)
    assert after < before - 0.5, (before, after)
    tokenizer = AutoTokenizer.from_pretrained(result.output_dir)
    model = AutoModelForCausalLM.from_pretrained(result.output_dir)
    assert tokenizer.chat_template and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert model.config.attention_dropout == cfg.optim.dropout
    meta = json.loads((Path(result.output_dir) / "training_meta.json").read_text())
    assert meta["provenance"] == result.provenance and meta["provenance"]["examples_by_source"] == {"seed": 8}
    assert meta["trained"] == {"seed": 8, "dropped_prompt_too_long": 0} and meta["batch_size"] == 8
    assert meta["config"] == to_dict(cfg) and len(meta["losses"]) == 12
    assert [p.name for p in Path(result.output_dir).parent.iterdir()] == ["m0"]  # no temporary directories left


def test_rerun_with_same_config_and_data_skips_training(trained, tmp_path, capsys):
    cfg, result = trained
    weights = Path(result.output_dir) / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    path = tmp_path / "m0.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))  # the resolved config round-trips through YAML
    main(["--config", str(path)])
    printed = capsys.readouterr().out
    resolved, end = json.JSONDecoder().raw_decode(printed)
    assert resolved == to_dict(cfg)
    assert json.loads(printed[end:])["final_loss"] == result.final_loss
    assert weights.stat().st_mtime_ns == mtime


def test_changed_config_retrains(make_config, tmp_path):
    out = tmp_path / "m0"
    first = train(make_config(out, "optim.max_steps=1"))
    again = train(make_config(out, "optim.max_steps=2"))
    assert (first.steps, again.steps) == (1, 2)


def test_bootstrap_is_cached(tiny_base, base_texts):
    weights = Path(tiny_base) / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    meta = json.loads((Path(tiny_base) / "bootstrap.json").read_text())
    assert build_base_model(base_texts, tiny_base, BaseModelConfig(**meta["fingerprint"]["config"])) == tiny_base
    assert weights.stat().st_mtime_ns == mtime
    assert meta["final_loss"] < meta["first_loss"]
