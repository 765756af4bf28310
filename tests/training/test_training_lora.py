"""LoRA: on SmolLM2-135M-Instruct (converted once per test run), loss drops, the merged model is the adapted
one, checkpoints hold the adapters and resume exactly; QLoRA is refused where it cannot run; ``optim.epochs``
sizes the run to the data."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from training.checkpoint import CHECKPOINT, Checkpointer, checkpoint_dir
from training.config import OptimConfig
from training.data import IGNORE_INDEX, encode_examples, load_examples
from training.lora import ADAPTER
from training.memory import ModelShape
from training.train import META, collate, model_config, token_loss, train
from udfs.config import ConfigError

LORA = (
    "lora.enabled=true",
    "lora.dropout=0.0",
    "optim.dropout=0.0",
    "optim.lr=1.0e-3",
    "optim.final_lr=1.0e-4",
    "optim.batch_size=4",
    "optim.small_data_batch_size=4",
    "optim.max_seq_len=128",
    "optim.checkpoint_every=0",
)


@pytest.fixture(scope="module")
def lora_run(smollm2, make_config, tmp_path_factory):
    cfg = make_config(tmp_path_factory.mktemp("lora") / "m0", f"base_model={smollm2}", *LORA, "optim.max_steps=4")
    return cfg, train(cfg)


def load(model_dir) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)  # SmolLM2's config says bf16


def answer_logits_and_loss(model, cfg, tokenizer) -> tuple[torch.Tensor, float]:
    encoded, _ = encode_examples(tokenizer, load_examples(cfg)[0], cfg)
    input_ids, attention_mask, labels = collate(encoded, tokenizer.pad_token_id)
    with torch.no_grad():
        logits = model.eval()(input_ids=input_ids, attention_mask=attention_mask).logits
    return logits, token_loss(logits, labels).item() / (labels[:, 1:] != IGNORE_INDEX).sum().item()


@pytest.mark.slow  # about a minute on SmolLM2 here
def test_lora_lowers_loss_and_the_merged_model_is_the_adapted_one(lora_run, smollm2):
    cfg, result = lora_run
    out = Path(result.output_dir)
    tokenizer = AutoTokenizer.from_pretrained(out)
    _, before = answer_logits_and_loss(load(smollm2), cfg, tokenizer)
    merged_logits, after = answer_logits_and_loss(load(out), cfg, tokenizer)
    assert after < before - 0.1, f"{smollm2}: answer loss {before:.3f} -> {after:.3f}"

    adapted = PeftModel.from_pretrained(load(smollm2), out / ADAPTER)
    peft_logits, _ = answer_logits_and_loss(adapted, cfg, tokenizer)
    assert torch.allclose(merged_logits, peft_logits, atol=1e-4)
    # A plain model directory: no peft modules left in the merged weights, the adapter beside them.
    assert not any("lora" in key for key in load(out).state_dict())
    assert (out / "model.safetensors").is_file() and (out / ADAPTER / "adapter_config.json").is_file()
    meta = json.loads((out / META).read_text())
    assert meta["lora"]["r"] == 16 and meta["steps"] == 4
    assert meta["trainable_parameters"] == ModelShape.from_dir(smollm2).lora_parameters(16)  # the estimate agrees


def test_lora_checkpoint_holds_adapters_only_and_a_killed_run_resumes_exactly(make_config, tmp_path, monkeypatch):
    run = (*LORA, "optim.max_steps=4", "optim.checkpoint_every=2")
    reference = json.loads((Path(train(make_config(tmp_path / "ref" / "m0", *run)).output_dir) / META).read_text())
    cfg = make_config(tmp_path / "killed" / "m0", *run)
    save = Checkpointer.save

    def save_then_die(self, *args):
        save(self, *args)
        raise KeyboardInterrupt("killed after the first checkpoint")

    monkeypatch.setattr(Checkpointer, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.setattr(Checkpointer, "save", save)
    state = torch.load(checkpoint_dir(cfg.output_dir) / CHECKPOINT, weights_only=True)
    assert state["progress"]["step"] == 2 and state["model"]
    assert [key for key in state["model"] if "lora_" not in key] == []  # the frozen base is not in it

    train(cfg)
    meta = json.loads((Path(cfg.output_dir) / META).read_text())
    assert meta["resumed_from_step"] == 2
    assert meta["losses"] == pytest.approx(reference["losses"], abs=1e-6)


def test_gradient_checkpointing_gives_the_same_losses_and_the_same_model_id(make_config, tmp_path):
    plain = make_config(tmp_path / "plain" / "m0", *LORA, "optim.max_steps=2")
    recomputed = make_config(tmp_path / "gc" / "m0", *LORA, "optim.max_steps=2", "optim.gradient_checkpointing=true")
    losses = [json.loads((Path(train(cfg).output_dir) / META).read_text()) for cfg in (plain, recomputed)]
    assert losses[1]["losses"] == pytest.approx(losses[0]["losses"], abs=1e-6)
    # The same model: a finished one is reused when only this setting changes.
    assert model_config(dataclasses.replace(recomputed, output_dir=plain.output_dir)) == model_config(plain)


def test_qlora_without_bitsandbytes_or_gpu_is_a_config_error(make_config, tmp_path):
    with pytest.raises(ConfigError, match=r"lora.quantize: 4bit .*needs .*a CUDA GPU"):
        train(make_config(tmp_path / "m0", *LORA, "lora.quantize=4bit"))
    assert not (tmp_path / "m0").exists()
    with pytest.raises(ConfigError, match="needs enabled: true"):
        make_config(tmp_path / "m0", "lora.quantize=4bit")


def test_epochs_scale_the_steps_with_the_data(make_config, tmp_path):
    # The paper's runs: 3,200 examples -> 500 steps at batch 32 (5 epochs); 51,200 -> 1,600 (1 epoch).
    assert OptimConfig(epochs=5, max_steps=2000).steps_for(3200, 32) == 500
    assert OptimConfig(epochs=1, max_steps=2000).steps_for(51200, 32) == 1600
    assert OptimConfig(epochs=5, max_steps=1600).steps_for(51200, 32) == 1600  # max_steps caps
    assert OptimConfig(max_steps=500).steps_for(51200, 32) == 500
    with pytest.raises(ValueError, match="epochs"):
        OptimConfig(epochs=0)
    cfg = make_config(
        tmp_path / "m0",
        "optim.epochs=1.5",
        "optim.batch_size=4",
        "optim.small_data_batch_size=4",
        "optim.max_seq_len=128",
        "optim.checkpoint_every=0",
    )
    meta = json.loads((Path(train(cfg).output_dir) / META).read_text())
    assert meta["planned_steps"] == meta["steps"] == 3  # ceil(1.5 * 8 pairs / 4)
    assert meta["steps_rule"] == "min(max_steps=60, ceil(1.5 epochs))"


@pytest.mark.slow
def test_vllm_loads_the_merged_model(lora_run):
    from udfs.engine import EngineConfig, SamplingConfig, engine_args
    from udfs.vllm_engine import VLLMEngine

    _, result = lora_run
    engine = VLLMEngine(
        engine_args(
            result.output_dir,
            EngineConfig(
                dtype="float32",
                max_model_len=512,
                kv_cache_memory_bytes=64 * 2**20,
                enforce_eager=True,
                max_num_seqs=4,
                enable_chunked_prefill=False,
            ),
        )
    )
    try:
        prompt = engine.render_chat([{"role": "user", "content": "How do I reverse a list?"}])
        [out] = engine.generate([prompt], SamplingConfig(temperature=0.0, max_tokens=24), seeds=[0])
    finally:
        engine.close()
    assert out.output_tokens > 0 and out.text.strip()
