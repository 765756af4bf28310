"""Security defaults of training: code shipped in a model directory does not run unless the config trusts it,
and credentials in the config do not reach training_meta.json."""

from __future__ import annotations

import dataclasses
import json
import shutil

import torch

from training.train import META, load_model, train

# transformers copies a directory's code into its module cache before importing it: the marker path is absolute
EVIL = """
from pathlib import Path
Path({marker!r}).write_text("yes")
from transformers import LlamaConfig, LlamaForCausalLM
class EvilConfig(LlamaConfig):
    pass
class EvilModel(LlamaForCausalLM):
    config_class = EvilConfig
"""


def test_remote_code_in_a_model_directory_runs_only_when_trusted_and_no_credential_is_stored(
    tiny_base, make_config, tmp_path
):
    base = tmp_path / "base-with-code"
    shutil.copytree(tiny_base, base)
    config = json.loads((base / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
    (base / "config.json").write_text(json.dumps(config))
    ran = tmp_path / "REMOTE_CODE_RAN"
    (base / "evil.py").write_text(EVIL.format(marker=str(ran)))

    cfg = make_config(
        tmp_path / "m",
        f"base_model={base}",
        "optim.max_steps=1",
        "optim.max_seq_len=128",
        "tracking.uri=https://bob:hunter2-secret@mlflow.example.com",
    )
    assert cfg.trust_remote_code is False
    train(cfg)  # the default: the model's own (Llama) code, never the directory's
    assert not ran.exists()
    meta = (tmp_path / "m" / META).read_text()
    assert "hunter2-secret" not in meta and "https://***@mlflow.example.com" in meta

    trusting = dataclasses.replace(cfg, trust_remote_code=True)
    assert type(load_model(trusting, torch.device("cpu"), torch.float32)).__name__ == "EvilModel"
    assert ran.exists()  # trusting it does run it: the check above could fail
