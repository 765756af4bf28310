"""The recipe end to end on the tiny model: loss on answers only, loss goes down, the output loads,
re-runs are cheap, the run is recorded in MLflow."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from training.__main__ import main
from training.bootstrap import BaseModelConfig, build_base_model
from training.config import DistributedConfig, TrackingConfig
from training.data import IGNORE_INDEX, encode_examples, load_examples
from training.train import collate, length_grouped_batches, resolve_precision, token_loss, train
from udfs.config import to_dict
from udfs.hardware import Device

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


def test_batches_are_always_full_and_the_left_over_examples_change_every_epoch():
    batches = length_grouped_batches(list(range(9)), batch_size=2, seed=0)
    epochs = [[next(batches) for _ in range(4)] for _ in range(4)]
    assert all(len(b) == 2 for epoch in epochs for b in epoch)
    left_out = [set(range(9)) - {i for b in epoch for i in b} for epoch in epochs]
    assert all(len(s) == 1 for s in left_out) and len(set(map(frozenset, left_out))) > 1
    with pytest.raises(ValueError, match="batch_size"):
        next(length_grouped_batches([1, 2], batch_size=3, seed=0))


def test_precision_auto_is_bf16_only_where_the_device_has_it_natively():
    avx2 = Device("cpu", frozenset({"avx2", "fma", "avx512f"}))
    assert resolve_precision("auto", avx2) == "fp32" and resolve_precision("bf16", avx2) == "bf16"
    assert resolve_precision("auto", Device("cpu", frozenset({"avx2", "avx512_bf16"}))) == "bf16"
    assert resolve_precision("auto", Device("cpu", frozenset({"amx_bf16", "amx_tile"}))) == "bf16"
    assert resolve_precision("fp32", Device("cpu", frozenset({"amx_bf16"}))) == "fp32"
    assert resolve_precision("auto", Device("cuda", cuda_capability=(8, 0))) == "bf16"
    assert resolve_precision("auto", Device("cuda", cuda_capability=(7, 5))) == "fp32"  # no fp16 loss scaler


def test_auto_precision_is_resolved_before_the_model_id_is_made(make_config, tmp_path, monkeypatch):
    import training.train as train_module

    monkeypatch.setattr(train_module, "torch_device", lambda: Device("cpu", frozenset({"avx2"})))
    auto = train(make_config(tmp_path / "auto", "optim.max_steps=1", "optim.precision=auto", "optim.max_seq_len=256"))
    meta = json.loads((Path(auto.output_dir) / "training_meta.json").read_text())
    assert meta["precision"] == "fp32" and meta["fingerprint"]["config"]["optim"]["precision"] == "fp32"
    # The same recipe asked for explicitly is the same model: the finished one is not trained again.
    saved = {p.name: p.stat().st_mtime_ns for p in Path(auto.output_dir).iterdir()}
    train(make_config(tmp_path / "auto", "optim.max_steps=1", "optim.max_seq_len=256"))
    assert {p.name: p.stat().st_mtime_ns for p in Path(auto.output_dir).iterdir()} == saved


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
    assert meta["precision"] == "fp32" and meta["world_size"] == 1 and meta["resumed_from_step"] == 0
    # One batch of the 8 pairs (similar lengths), in micro-batches of 4.
    assert 0 < meta["padding_waste"] <= 0.05 and meta["tokens_per_second"] > 0
    # No temporary directories or checkpoints left; mlruns is the default local MLflow store.
    # the model, its MLflow store and its lock (training.artifacts.exclusive): no staging or checkpoint left
    assert sorted(p.name for p in Path(result.output_dir).parent.iterdir()) == [".m0.lock", "m0", "mlruns"]


def test_the_run_is_recorded_in_mlflow(trained):
    from mlflow import MlflowClient

    cfg, result = trained
    meta = json.loads((Path(result.output_dir) / "training_meta.json").read_text())
    client = MlflowClient(f"sqlite:///{Path(result.output_dir).parent / 'mlruns' / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("humpback").experiment_id])
    assert run.info.run_id == meta["tracking_run_id"] and run.info.status == "FINISHED"
    assert run.data.params["optim.max_steps"] == "12" and run.data.params["direction"] == "forward"
    assert run.data.tags["data_sha256"] == result.provenance["sha256"] and run.data.tags["examples.seed"] == "8"
    assert run.data.tags["model_dir"] == str(Path(result.output_dir).resolve())
    losses = client.get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in losses] == list(enumerate(meta["losses"], 1))
    [seed] = run.inputs.dataset_inputs
    assert seed.dataset.name == "seed" and json.loads(seed.dataset.source)["uri"] == str(cfg.seed.path)
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["training_meta.json"]


def test_rerun_with_same_config_and_data_skips_training(trained, write_config, tmp_path, capsys):
    cfg, result = trained
    weights = Path(result.output_dir) / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    path = write_config(cfg, tmp_path / "m0.yaml")  # the resolved config round-trips through YAML
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
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m0.lock", "m0"]  # tracking off: no MLflow store


def test_tracking_checkpointing_and_sharding_settings_do_not_make_a_model_stale(trained):
    cfg, result = trained
    other = dataclasses.replace(
        cfg,
        tracking=TrackingConfig(enabled=False),
        distributed=DistributedConfig(strategy="fsdp"),
        optim=dataclasses.replace(cfg.optim, checkpoint_every=7),
    )
    weights = Path(result.output_dir) / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    assert train(other).final_loss == result.final_loss and weights.stat().st_mtime_ns == mtime


def test_bootstrap_is_cached(tiny_base, base_texts):
    weights = Path(tiny_base) / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    meta = json.loads((Path(tiny_base) / "bootstrap.json").read_text())
    assert build_base_model(base_texts, tiny_base, BaseModelConfig(**meta["fingerprint"]["config"])) == tiny_base
    assert weights.stat().st_mtime_ns == mtime
    assert meta["final_loss"] < meta["first_loss"]


def test_bf16_autocast_runs_where_asked(make_config, tmp_path):
    result = train(make_config(tmp_path / "m0", "optim.max_steps=2", "optim.precision=bf16", "optim.max_seq_len=256"))
    meta = json.loads((Path(result.output_dir) / "training_meta.json").read_text())
    assert meta["precision"] == "bf16" and all(0 < loss < 10 for loss in meta["losses"])
    weights = AutoModelForCausalLM.from_pretrained(result.output_dir).lm_head.weight
    assert weights.dtype == torch.float32  # autocast computes in bf16; the weights stay fp32
