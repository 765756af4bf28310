"""The fake engine answers by what a model is, never by where it lies: a test that asserts "some rows are
rejected" on it asserts the same thing in every run, whatever temp folder pytest gave the model."""

from __future__ import annotations

import json

from udfs.engine import EngineConfig, SamplingConfig, engine_args
from udfs.fake_engine import FakeEngine

PROMPTS = [f"Rate how well answer {i} follows its instruction. Score:" for i in range(16)]
ANSWERS = ["Use sorted(items) to get a sorted copy of the list."] * len(PROMPTS)


def answers(model_dir) -> tuple:
    engine = FakeEngine(engine_args(str(model_dir), EngineConfig(name="fake")))
    return (
        [c.text for c in engine.generate(PROMPTS, SamplingConfig(max_tokens=64), range(len(PROMPTS)))],
        engine.continuation_logprobs(PROMPTS, ["1", "2", "3", "4", "5"]),
        engine.answer_logprobs(PROMPTS, ANSWERS),
    )


def model(path, **config):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "llama", **config}))
    (path / "model.safetensors").write_bytes(b"\0" * 64)
    return path


def test_the_same_model_in_two_folders_answers_the_same(tmp_path):
    first = answers(model(tmp_path / "pytest-1" / "m00"))
    assert answers(model(tmp_path / "pytest-2" / "judge")) == first
    # and the answers do depend on the model: another config is another model
    assert answers(model(tmp_path / "pytest-3" / "m00", hidden_size=8)) != first
    # both outcomes of the judge occur in these 16 rows (a score line, and a line without one)
    assert {"Score:" in text for text in first[0]} == {True, False}
