"""Every conf/train/*.yaml loads; bad values are errors that name the key."""

from datetime import datetime, timezone
from pathlib import Path

import pytest

from training.bootstrap import BaseModelConfig
from training.config import OptimConfig, TrainConfig, parse_timestamp
from udfs.config import ConfigError, load_config

CONF = Path(__file__).parents[2] / "conf/train"


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.name)
def test_every_train_config_loads(path):
    cfg = load_config(TrainConfig, path)
    assert cfg.direction == ("backward" if "backward" in path.name else "forward")
    assert not cfg.augmented.enabled  # iterations add the curated tables with --set


def test_paper_configs_use_the_paper_recipe():
    for name in ("forward.yaml", "backward.yaml"):
        optim = load_config(TrainConfig, CONF / name).optim
        assert optim == OptimConfig()
        assert (optim.lr, optim.final_lr, optim.batch_size, optim.batch_size_for(171)) == (1e-5, 9e-6, 32, 8)
        assert optim.batch_size_for(3000) == 32


def test_overrides_apply_and_scientific_notation_parses():
    cfg = load_config(TrainConfig, CONF / "local_forward.yaml", ["optim.lr=3.0e-3", "augmented.min_score=4.5"])
    assert cfg.optim.lr == 3e-3 and cfg.augmented.min_score == 4.5


@pytest.mark.parametrize(
    "override, key",
    [
        ("optim.lrr=1", "optim.lrr"),
        ("direction=sideways", "direction"),
        ("augmented.score_column=rating", "augmented.score_column"),
        ("augmented.segments_table=/t/segments", "augmented"),  # the three tables go together
        ("augmented.min_score=6", "augmented"),
        ("optim.micro_batch_size=3", "optim"),  # batch sizes must be multiples of it
        ("optim.final_lr=1.0", "optim"),  # above lr: the schedule only decays
        ("optim.max_steps=many", "optim.max_steps"),
        ("optim.checkpoint_every=-1", "optim"),
        ("optim.precision=fp16", "optim.precision"),
        ("distributed.strategy=tp", "distributed.strategy"),
        ("tracking.enabled=maybe", "tracking.enabled"),
        ("augmented.as_of=yesterday", "augmented"),
    ],
)
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(TrainConfig, CONF / "local_forward.yaml", [override])


def test_base_model_and_output_dir_are_required():
    with pytest.raises(ConfigError, match="base_model: required"):
        load_config(TrainConfig, None, ["output_dir=x"])


def test_base_model_config_validates_itself():
    with pytest.raises(ValueError, match="num_heads"):
        BaseModelConfig(hidden_size=100, num_heads=3)
    with pytest.raises(ValueError, match="seq_len"):
        BaseModelConfig(seq_len=4096)


def test_as_of_is_an_alternative_to_versions_not_an_addition():
    cfg = load_config(TrainConfig, CONF / "forward.yaml", ["augmented.as_of=2026-01-02T03:04:05"])
    assert parse_timestamp(cfg.augmented.as_of) == datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    with pytest.raises(ConfigError, match="as_of and \\*_version"):
        load_config(TrainConfig, CONF / "forward.yaml", ["augmented.as_of=2026-01-02", "augmented.scores_version=3"])
