"""The recipe follows the base model: the toy recipe for the tiny from-scratch model only, the paper's on GPUs,
LoRA on CPU for small real models; every file it names loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.config import PROJECTIONS, TrainConfig
from training.recipe import recipe_for
from udfs.config import load_config

ROOT = Path(__file__).parents[2]
SMOLLM2_135M = {
    "vocab_size": 49152,
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "tie_word_embeddings": True,
}
LLAMA_7B = {
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
}


def model_dir(tmp_path: Path, name: str, config: dict) -> str:
    (tmp_path / name).mkdir()
    (tmp_path / name / "config.json").write_text(json.dumps(config))
    return str(tmp_path / name)


def test_recipe_for_each_kind_of_base(tiny_base, tmp_path):
    small, big = model_dir(tmp_path, "smollm2", SMOLLM2_135M), model_dir(tmp_path, "llama", LLAMA_7B)
    assert recipe_for(None, "cpu").forward == "conf/train/local_forward.yaml"
    assert recipe_for(tiny_base, "cuda").backward == "conf/train/local_backward.yaml"  # toy model: toy recipe
    assert recipe_for(small, "cpu").forward == "conf/train/lora_cpu_forward.yaml"
    assert "135M parameters" in recipe_for(small, "cpu").reason
    assert recipe_for(small, "cuda").forward == recipe_for(big, "cuda").forward == "conf/train/forward.yaml"
    with pytest.raises(ValueError, match=r"6\.74B parameters: too big to fine-tune on CPU"):
        recipe_for(big, "cpu")


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_cpu_lora_recipe_is_lora_on_every_projection_with_short_sequences(direction, tiny_base, tmp_path):
    small = model_dir(tmp_path, "smollm2", SMOLLM2_135M)
    cfg = load_config(TrainConfig, ROOT / getattr(recipe_for(small, "cpu"), direction))
    assert cfg.direction == direction and cfg.lora.enabled and cfg.lora.target_modules == PROJECTIONS
    assert cfg.optim.max_seq_len <= 512 and cfg.optim.lr > 1e-5
    for recipe in (recipe_for(tiny_base, "cpu"), recipe_for(small, "cuda")):
        assert load_config(TrainConfig, ROOT / getattr(recipe, direction)).direction == direction
