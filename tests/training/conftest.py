"""Tiny assets for the training tests: a handful of pairs, a base model built from them in seconds, and one
fine-tuned model shared by the end-to-end and vLLM tests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from training.bootstrap import BaseModelConfig, build_base_model
from training.config import TrainConfig
from udfs.config import load_config, to_dict

PAIRS = [
    (
        "How do I reverse a list?",
        "Call the list's reverse() method to reverse it in place, or use slicing, items[::-1], to get a reversed copy.",
    ),
    (
        "How do I read a file line by line?",
        "Open the file with a with statement and iterate over the file object: for line in f: print(line).",
    ),
    (
        "What is a tuple?",
        "A tuple is an immutable sequence. Write it with commas, for example point = (1, 2), "
        "and unpack it with x, y = point.",
    ),
    (
        "How do I sort a dictionary by value?",
        "Use sorted(d.items(), key=lambda kv: kv[1]); it returns a list of (key, value) pairs ordered by value.",
    ),
    (
        "How do I check if a key is in a dict?",
        "Use the in operator: if key in d. It checks the keys only and runs in constant time on average.",
    ),
    (
        "How do I join strings?",
        "Call ', '.join(words) on the separator; every item must already be a string, so map str over numbers first.",
    ),
    (
        "What does None mean?",
        "None is the single object of type NoneType. Functions without a return statement return None; "
        "test it with is None.",
    ),
    (
        "How do I copy a list?",
        "Use items.copy() or list(items) for a shallow copy, "
        "and copy.deepcopy(items) when the list holds mutable objects.",
    ),
]

# head_dim 64 (128 / 2 heads): a size vLLM's CPU attention supports. Builds in about 5 s on 2 cores.
TINY_BASE = BaseModelConfig(
    vocab_size=400,
    hidden_size=128,
    num_heads=2,
    intermediate_size=256,
    num_layers=2,
    max_position_embeddings=1024,
    seq_len=64,
    batch_size=4,
    steps=20,
    warmup_steps=2,
)


@pytest.fixture(scope="package", autouse=True)
def one_thread():
    """Torch on one thread here and in the subprocesses the tests start. These models are too small to gain
    from two, and on a shared machine two OpenMP threads wait on each other: steps get 10x slower."""
    threads, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    torch.set_num_threads(threads)
    if env is None:
        del os.environ["OMP_NUM_THREADS"]
    else:
        os.environ["OMP_NUM_THREADS"] = env


@pytest.fixture(scope="session")
def base_texts() -> list[str]:
    return [f"{i}\n{o}" for i, o in PAIRS] * 4  # about 5 KB


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory, base_texts) -> str:
    return build_base_model(base_texts, str(tmp_path_factory.mktemp("models") / "base"), TINY_BASE)


@pytest.fixture(scope="session")
def seed_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "seed.jsonl"
    path.write_text("".join(json.dumps({"instruction": i, "output": o}) + "\n" for i, o in PAIRS))
    return path


@pytest.fixture(scope="session")
def make_config(tiny_base, seed_file):
    """A TrainConfig for the tiny model: local_forward.yaml plus overrides, MLflow off unless turned on. fp32 unless
    an override says otherwise: under ``auto`` the precision would follow the test machine's CPU."""

    def make(output_dir: str | Path, *overrides: str, config: str = "conf/train/local_forward.yaml") -> TrainConfig:
        base = [
            f"base_model={tiny_base}",
            f"output_dir={output_dir}",
            f"seed.path={seed_file}",
            "tracking.enabled=false",
            "optim.precision=fp32",
        ]
        return load_config(TrainConfig, Path(__file__).parents[2] / config, [*base, *overrides])

    return make


@pytest.fixture(scope="session")
def trained(make_config, tmp_path_factory):
    """One forward model trained for a few steps at a high learning rate, recorded in MLflow's default local
    store next to it: (config, result)."""
    from training.train import train

    cfg = make_config(
        tmp_path_factory.mktemp("runs") / "m0",
        "optim.max_steps=12",
        "optim.lr=3.0e-3",
        "optim.final_lr=1.0e-3",
        "optim.dropout=0.0",
        "optim.max_seq_len=256",
        "tracking.enabled=true",
    )
    return cfg, train(cfg)


@pytest.fixture(scope="session")
def write_config():
    """Writes a resolved TrainConfig as YAML for ``python -m training --config``; returns the path."""

    def write(cfg: TrainConfig, path: Path) -> Path:
        path.write_text(yaml.safe_dump(to_dict(cfg)))
        return path

    return write
