from pathlib import Path

import pytest

from jobs.config import PipelineConfig, load_pipeline_config
from jobs.stages import schedule
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
    with pytest.raises(ConfigError, match=r"iterations\.score_column: must be one of"):
        load_pipeline_config(str(CONF / "local.yaml"), ["iterations.score_column=vibes"])
    with pytest.raises(ConfigError, match=r"engine\.name: must be one of"):
        load_pipeline_config(str(CONF / "local.yaml"), ["engine.name=gpt"])


def test_the_engine_is_chosen_by_name_vllm_by_default():
    from udfs.engine import ENGINES

    assert load_pipeline_config(str(CONF / "local.yaml")).engine.name == "vllm"
    assert load_pipeline_config(str(CONF / "local.yaml"), ["engine.name=fake"]).engine.name == "fake"
    assert set(ENGINES) == {"vllm", "openai", "fake"}
    remote = ["engine.name=openai", "engine.endpoint.base_url=http://127.0.0.1:8000/v1"]
    assert load_pipeline_config(str(CONF / "local.yaml"), remote).engine.endpoint.base_url.endswith(":8000/v1")
    with pytest.raises(ConfigError, match=r"engine: endpoint\.base_url is required with name: openai"):
        load_pipeline_config(str(CONF / "local.yaml"), remote[:1])


def test_overrides_are_typed_and_nested():
    cfg = load_pipeline_config(
        str(CONF / "local.yaml"), ["iterations.min_score=4.5", "storage.root=/tmp/x", "engine.partitions=2"]
    )
    assert cfg.iterations.min_score == 4.5 and cfg.storage.root == "/tmp/x" and cfg.engine.partitions == 2
    assert cfg.model_path("seed_model") == str(Path("work/models/m0").absolute())  # executors run elsewhere


def test_missing_required_key():
    with pytest.raises(ConfigError, match=r"input\.seed: required"):
        load_pipeline_config(str(CONF / "local.yaml"), ["input={corpus: x}"])


def test_exponent_floats_without_a_dot_are_floats():
    cfg = load_pipeline_config(str(CONF / "local.yaml"), ["curate.sampling.temperature=5e-1"])
    assert cfg.curate.sampling.temperature == 0.5
    with pytest.raises(ConfigError, match=r"curate\.sampling\.temperature: expected float"):
        load_pipeline_config(str(CONF / "local.yaml"), ["curate.sampling.temperature=warm"])


def test_iterations_default_to_the_papers_two_with_one_k_or_one_per_iteration():
    cfg = load_pipeline_config(str(CONF / "cluster.yaml"))
    assert cfg.iterations.count == 2 and cfg.iterations.k(1) == cfg.iterations.k(2) == 5.0
    cfg = load_pipeline_config(str(CONF / "local.yaml"), ["iterations.min_score=[4, 4.5]"])
    assert (cfg.iterations.k(1), cfg.iterations.k(2)) == (4.0, 4.5) and cfg.iterations.rule(
        2
    ) == "expected_score >= 4.5"
    assert [cfg.iteration_model(i) for i in range(3)] == [str(Path(f"work/models/m{i}").absolute()) for i in range(3)]
    with pytest.raises(ValueError, match="no model M3"):
        cfg.iteration_model(3)


@pytest.mark.parametrize(
    "override, message",
    [
        ("iterations.min_score=[4, 5, 5]", r"iterations: min_score lists 3 values for 2 iterations"),
        ("iterations.min_score=[4, 6]", r"iterations: min_score must be within 1..5, got 6"),
        ("iterations.count=0", r"iterations: count must be >= 1"),
        ("iterations.min_score=high", r"iterations\.min_score"),
    ],
)
def test_bad_iterations_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_pipeline_config(str(CONF / "local.yaml"), [override])


def test_seed_model_path_is_the_first_judge():
    cfg = load_pipeline_config(str(CONF / "local.yaml"), ["models.seed_model=/models/m0-given"])
    assert cfg.iteration_model(0) == "/models/m0-given" and cfg.iteration_model(1) == str(
        Path("work/models/m1").absolute()
    )


def test_curate_and_train_alternate_per_iteration():
    assert schedule(["ingest", "augment", "curate", "train"], [1, 2]) == [
        ("ingest", None),
        ("augment", None),
        ("curate", 1),
        ("train", 1),
        ("curate", 2),
        ("train", 2),
    ]
    assert schedule(["curate"], [2]) == [("curate", 2)]
    assert schedule(["train", "models"], [1]) == [
        ("train", 1),
        ("models", None),
    ]  # order is the caller's (parse_args sorts)
    assert schedule(["ingest"], [1, 2]) == [("ingest", None)]


def test_a_dotted_override_on_a_mapping_keeps_the_dotted_name():
    cfg = load_pipeline_config(
        str(CONF / "local.yaml"), ["spark.conf.spark.hadoop.fs.s3a.secret.key=XYZ", "spark.conf.spark.ui.enabled=true"]
    )
    assert cfg.spark.conf["spark.hadoop.fs.s3a.secret.key"] == "XYZ"
    assert cfg.spark.conf["spark.ui.enabled"] is True and "spark" not in cfg.spark.conf


def test_cpu_engine_memory_defaults_the_kv_cache_and_fails_early_when_the_model_cannot_fit(tmp_path):
    from udfs.engine import CPU_DEFAULT_KV_BYTES, cpu_memory_plan

    (tmp_path / "model.safetensors").write_bytes(b"\0" * 1000)
    assert cpu_memory_plan(str(tmp_path), None, "bfloat16", 1 << 31) == CPU_DEFAULT_KV_BYTES
    assert cpu_memory_plan(str(tmp_path), 4096, "float32", 10_000) == 4096  # 2000 bytes of weights + 4096
    with pytest.raises(ValueError, match="engine.kv_cache_memory_bytes"):
        cpu_memory_plan(str(tmp_path), 9000, "float32", 10_000)  # fp32 doubles the bf16 file: 2000 + 9000 > 10000


def test_models_base_smollm2_resolves_to_the_builtin_directory_keyed_by_the_gguf(tmp_path):
    from jobs.config import load_pipeline_config

    cfg = load_pipeline_config(
        "conf/local.yaml", [f"models.dir={tmp_path}", "models.base=smollm2", "models.train_forward=null"]
    )
    path = cfg.model_path("base")
    assert path.startswith(str(tmp_path)) and "smollm2-135m-instruct-" in path
    assert cfg.models.train_forward is None  # null: the recipe follows the base model
