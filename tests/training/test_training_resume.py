"""Checkpoints: a run killed with SIGKILL resumes from its last checkpoint and ends exactly as a run that was
never interrupted; checkpoints of another run are ignored."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from training.checkpoint import CHECKPOINT, Checkpointer, checkpoint_dir
from training.distributed import Runtime
from training.train import train

ROOT = Path(__file__).parents[2]
LONG_RUN = ("optim.max_steps=40", "optim.checkpoint_every=5", "optim.max_seq_len=256")


@pytest.mark.slow
def test_killed_run_resumes_and_ends_as_an_uninterrupted_run(make_config, write_config, tmp_path):
    reference = train(make_config(tmp_path / "reference" / "m0", *LONG_RUN))
    cfg = make_config(tmp_path / "killed" / "m0", *LONG_RUN)
    config_file = write_config(cfg, tmp_path / "m0.yaml")
    checkpoint = checkpoint_dir(cfg.output_dir) / CHECKPOINT

    process = subprocess.Popen(
        [sys.executable, "-m", "training", "--config", str(config_file)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not checkpoint.exists():
        assert process.poll() is None, "training ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.005)
    process.kill()
    assert process.wait() == -signal.SIGKILL
    assert not Path(cfg.output_dir).exists()
    saved_step = torch.load(checkpoint, weights_only=True)["progress"]["step"]
    assert 5 <= saved_step < 40

    # Another checkpoint interval is the same run: it resumes.
    resumed = train(dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, checkpoint_every=3)))
    meta, expected = (
        json.loads((Path(d) / "training_meta.json").read_text()) for d in (cfg.output_dir, reference.output_dir)
    )
    assert meta["resumed_from_step"] == saved_step and expected["resumed_from_step"] == 0
    assert meta["losses"] == pytest.approx(expected["losses"], abs=1e-6)
    assert resumed.final_loss == pytest.approx(reference.final_loss, abs=1e-6) and resumed.steps == 40
    assert meta["padding_waste"] == expected["padding_waste"] and meta["tokens"] == expected["tokens"]
    assert not checkpoint.parent.exists()  # removed once the model is saved


def test_checkpoint_restores_weights_optimizer_schedule_and_rng_of_the_same_run_only(tmp_path):
    def setup():
        model = torch.nn.Linear(3, 2)
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
        return model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 / (s + 1))

    rt = Runtime(0, 1, torch.device("cpu"))
    model, optimizer, scheduler = setup()
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    saved = Checkpointer(tmp_path / "m", {"config": 1}, every=5, rt=rt)
    progress = saved.restore(model, optimizer, scheduler)
    progress.step, progress.losses = 5, [1.0] * 5
    saved.save(model, optimizer, scheduler, progress)
    next_draw = torch.rand(1)

    model2, optimizer2, scheduler2 = setup()
    assert Checkpointer(tmp_path / "m", {"config": 2}, 5, rt).restore(model2, optimizer2, scheduler2).step == 0
    restored = Checkpointer(tmp_path / "m", {"config": 1}, 5, rt).restore(model2, optimizer2, scheduler2)
    assert restored.step == 5 and restored.losses == [1.0] * 5
    assert torch.equal(model2.weight, model.weight) and scheduler2.get_last_lr() == scheduler.get_last_lr()
    assert torch.equal(optimizer2.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(torch.rand(1), next_draw)
    assert saved.due(10, max_steps=40) and not saved.due(7, 40) and not saved.due(40, 40)
    saved.remove()
    assert not (tmp_path / "m.ckpt").exists()
