"""A model's id is its recipe: the same from any checkout, root or run, another for other settings or data."""

from __future__ import annotations

import json
from pathlib import Path

from training.config import TrainConfig
from training.train import model_config
from udfs.config import load_config
from udfs.ids import model_fingerprint


def model_dir(root: Path, fingerprint: dict, seconds: float, config: str = '{"hidden_size": 64}') -> str:
    path = root / "m1"
    path.mkdir(parents=True)
    (path / "config.json").write_text(config)
    (path / "model.safetensors").write_bytes(b"\0" * 128)
    meta = {"fingerprint": fingerprint, "seconds": seconds, "final_loss": 1.0 + seconds, "provenance": str(root)}
    (path / "training_meta.json").write_text(json.dumps(meta))
    return str(path)


def test_the_id_hashes_the_recipe_not_the_measurements_or_the_location(tmp_path):
    recipe = {"config": {"optim": {"lr": 1e-5}}, "data_sha256": "ab", "base_model_id": "base-1"}
    first = model_fingerprint(model_dir(tmp_path / "a", recipe, seconds=2.0))
    assert model_fingerprint(model_dir(tmp_path / "checkout-b", recipe, seconds=4.5)) == first
    other_data = {**recipe, "data_sha256": "cd"}
    assert model_fingerprint(model_dir(tmp_path / "c", other_data, seconds=2.0)) != first
    other_shape = model_dir(tmp_path / "d", recipe, seconds=2.0, config='{"hidden_size": 128}')
    assert model_fingerprint(other_shape) != first


def test_the_training_recipe_leaves_out_where_the_base_the_seed_and_the_tables_are():
    def recipe(root: str, *extra: str) -> dict:
        tables = [f"augmented.{t}_table={root}/tables/{t}" for t in ("segments", "candidates", "scores")]
        sets = [f"base_model={root}/models/base", f"output_dir={root}/models/m1", f"seed.path={root}/seed.jsonl"]
        return model_config(load_config(TrainConfig, None, [*sets, *tables, *extra]))

    assert recipe("/work/main") == recipe("/check/work/main")
    assert recipe("/work/main") != recipe("/work/main", "optim.lr=2e-5")
