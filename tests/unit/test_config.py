from pathlib import Path

import pytest

from jobs.config import PipelineConfig, load_pipeline_config
from udfs.config import ConfigError

CONF = Path(__file__).resolve().parents[2] / "conf"


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.name)
def test_every_pipeline_config_loads(path):
    cfg = load_pipeline_config(str(path))
    assert isinstance(cfg, PipelineConfig)
    assert cfg.segment.min_chars < cfg.segment.max_chars


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"segment\.min_char\b"):
        load_pipeline_config(str(CONF / "local.yaml"), ["segment.min_char=5"])


def test_bad_value_is_named():
    with pytest.raises(ConfigError, match=r"engine\.max_model_len: expected int"):
        load_pipeline_config(str(CONF / "local.yaml"), ["engine.max_model_len=lots"])


def test_invalid_value_fails_validation_with_its_section():
    with pytest.raises(ConfigError, match=r"augment\.sampling: top_p"):
        load_pipeline_config(str(CONF / "local.yaml"), ["augment.sampling.top_p=1.5"])
    with pytest.raises(ConfigError, match=r"curate\.score_column: must be one of"):
        load_pipeline_config(str(CONF / "local.yaml"), ["curate.score_column=vibes"])


def test_overrides_are_typed_and_nested():
    cfg = load_pipeline_config(str(CONF / "local.yaml"), ["curate.min_score=4.5", "storage.root=/tmp/x", "engine.partitions=2"])
    assert cfg.curate.min_score == 4.5 and cfg.storage.root == "/tmp/x" and cfg.engine.partitions == 2
    assert cfg.model_path("seed_model") == str(Path("work/models/m0").absolute())  # executors run elsewhere


def test_missing_required_key():
    with pytest.raises(ConfigError, match=r"input\.seed: required"):
        load_pipeline_config(str(CONF / "local.yaml"), ["input={corpus: x}"])


def test_exponent_floats_without_a_dot_are_floats():
    cfg = load_pipeline_config(str(CONF / "local.yaml"), ["curate.sampling.temperature=5e-1"])
    assert cfg.curate.sampling.temperature == 0.5
    with pytest.raises(ConfigError, match=r"curate\.sampling\.temperature: expected float"):
        load_pipeline_config(str(CONF / "local.yaml"), ["curate.sampling.temperature=warm"])
