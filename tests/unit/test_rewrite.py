"""The rewrite stage's pure parts: the answer read out of its markers, faithfulness, and the rows the fake engine
gets through ``rewrite_batch``; training's choice of the rewrite as the answer."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pytest

from training.data import with_rewrites
from udfs.engine import EngineConfig, SamplingConfig, engine_args
from udfs.fake_engine import FakeEngine
from udfs.llm_rows import rewrite_batch
from udfs.prompts import PromptTemplate
from udfs.rewrite import ANSWER_PREFIX, RewriteSettings, faithfulness, parse_answer, rewrite_conversation
from udfs.tables import REWRITES, ddl_types

SEGMENT = (
    "The bisect module keeps a list in sorted order. Call bisect.insort(a, x) to insert x; "
    "it runs in O(log n) comparisons and was added in Python 2.1."
)


@pytest.mark.parametrize(
    "raw, finish, strict, expected",
    [
        ("Keep the list sorted.\n</answer>", "stop", False, ("Keep the list sorted.", None, "marker")),
        ("<answer> Keep it sorted.</answer> trailing chatter", "length", True, ("Keep it sorted.", None, "marker")),
        ("Keep the list sorted.", "stop", False, ("Keep the list sorted.", None, "eos")),
        ("Keep the list sorted.", "stop", True, (None, "no_answer_markers", None)),
        ("Keep the list sorted and", "length", False, (None, "truncated", None)),
        ("Keep the list", "abort", False, (None, "truncated", None)),
        ("  \n</answer>", "stop", False, (None, "empty_answer", "marker")),
        ("", "stop", False, (None, "empty_answer", "eos")),
        (None, "stop", True, (None, "no_answer_markers", None)),
    ],
)
def test_the_answer_is_read_up_to_the_closing_marker_and_each_failure_is_named(raw, finish, strict, expected):
    parsed = parse_answer(raw, finish, require_end_marker=strict)
    assert (parsed.answer, parsed.failure, parsed.end) == expected


def test_a_copied_answer_is_faithful_and_an_invented_one_is_not():
    copied = faithfulness("Call bisect.insort(a, x) to insert x; it runs in O(log n) comparisons.", SEGMENT)
    assert copied.ngram_overlap == 1.0 and copied.new_numbers == () and copied.new_entities == ()
    invented = faithfulness("The bisect module was written by Guido in Amsterdam in 1991, version 3.", SEGMENT)
    assert invented.ngram_overlap < 0.3
    assert invented.new_numbers == ("1991", "3")  # "2.1" is in the segment, "3" is not even a part of a number
    assert invented.new_entities == ("Guido", "Amsterdam")


def test_faithfulness_knows_sentence_starts_numbers_within_numbers_and_short_answers():
    # "Insert" starts a sentence (not a name); "Python" is in the segment (any case); "2" is part of "2.1"
    measured = faithfulness("Keep it sorted. Insert with insort, in Python 2.", SEGMENT)
    assert measured.new_entities == () and measured.new_numbers == ()
    assert faithfulness("bisect", SEGMENT).ngram_overlap == 1.0  # shorter than n: one n-gram of its length
    assert faithfulness("zebra", SEGMENT).ngram_overlap == 0.0
    assert faithfulness("", SEGMENT).ngram_overlap == 0.0
    half = faithfulness("the bisect module keeps purple elephants dancing", SEGMENT, n=2)
    assert half.ngram_overlap == pytest.approx(3 / 6)


def test_the_prompt_quotes_the_pair_and_asks_for_markers():
    template = PromptTemplate.load("conf/prompts/rewrite_v1.txt")
    assert template.version == "rewrite_v1" and template.fields == {"instruction", "text"}
    (turn,) = rewrite_conversation(template, "How do I insert into a sorted list?", "{text} stays {text}")
    assert "How do I insert into a sorted list?" in turn["content"] and "{text} stays {text}" in turn["content"]
    assert "<answer>" in turn["content"] and "</answer>" in turn["content"]


@pytest.fixture
def engine():
    return FakeEngine(engine_args("fake-rewriter", EngineConfig(name="fake", max_model_len=400)))


def batch(texts: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "rewrite_id": [f"{i:032x}" for i in range(len(texts))],
            "generation_id": [f"g{i}" for i in range(len(texts))],
            "segment_id": [f"s{i}" for i in range(len(texts))],
            "instruction": ["How do I keep a list sorted?"] * len(texts),
            "text": texts,
        }
    )


def test_rewrite_rows_one_per_pair_in_order_with_figures_and_reasons(engine):
    template = PromptTemplate.load("conf/prompts/rewrite_v1.txt")
    sampling = SamplingConfig(temperature=0.0, top_p=1.0, max_tokens=64)
    texts = [SEGMENT, "word " * 600]  # the second cannot fit 400 tokens even cut: the template alone is ~100
    cfg = EngineConfig(name="fake", max_model_len=400, overflow="drop")
    out = rewrite_batch(engine, batch(texts), "rw-1", template, sampling, cfg, RewriteSettings(min_faithfulness=0.0))
    assert list(out.columns) == REWRITES.columns and list(out["generation_id"]) == ["g0", "g1"]
    first, second = out.iloc[0], out.iloc[1]
    assert (second["status"], second["reason"]) == ("dropped", "prompt_too_long")
    # the fake engine writes a few words and stops: the answer ends by eos and is measured
    assert first["status"] == "ok" and first["answer_end"] == "eos" and first["answer"] == first["raw_text"].strip()
    assert 0 <= first["faithfulness"] <= 1 and json.loads(first["new_numbers"]) == []
    assert first["model_id"] == "rw-1" and first["prompt_version"] == "rewrite_v1" and first["min_faithfulness"] == 0
    strict = rewrite_batch(
        engine, batch(texts[:1]), "rw-1", template, sampling, cfg, RewriteSettings(min_faithfulness=1.0)
    )
    if first["faithfulness"] < 1.0:  # the fake engine's words are not the segment's: the same row, now dropped
        assert (strict.iloc[0]["status"], strict.iloc[0]["reason"]) == ("dropped", "unfaithful_rewrite")
        assert strict.iloc[0]["answer"] == first["answer"]  # kept with its figures, for the report


def test_a_batch_without_any_answer_still_converts_to_the_tables_arrow_types(engine):
    """Every pair too long: no row sets answer or new_numbers. Spark converts each column to its Arrow type,
    and a string column of float NaN failed that cast (the real SmolLM2 truncated all rewrites of a batch)."""
    template = PromptTemplate.load("conf/prompts/rewrite_v1.txt")
    sampling = SamplingConfig(temperature=0.0, top_p=1.0, max_tokens=16)
    cfg = EngineConfig(name="fake", max_model_len=400, overflow="drop")
    out = rewrite_batch(engine, batch(["word " * 600] * 2), "rw", template, sampling, cfg, RewriteSettings())
    assert set(out["reason"]) == {"prompt_too_long"}
    arrow = {"string": pa.string(), "int": pa.int32(), "long": pa.int64(), "double": pa.float64()}
    for column, kind in ddl_types(REWRITES.schema).items():
        converted = pa.Array.from_pandas(out[column], type=arrow[kind])
        assert isinstance(converted, pa.Array), column
    assert pa.Array.from_pandas(out["answer"], type=pa.string()).null_count == 2


def test_the_prompt_ends_inside_the_answer(engine):
    seen = []
    real = engine.generate
    engine.generate = lambda prompts, sampling, seeds: seen.extend(prompts) or real(prompts, sampling, seeds)
    template = PromptTemplate.load("conf/prompts/rewrite_v1.txt")
    sampling = SamplingConfig(temperature=0.0, top_p=1.0, max_tokens=16)
    rewrite_batch(engine, batch([SEGMENT]), "rw", template, sampling, EngineConfig(name="fake"), RewriteSettings())
    assert seen and seen[0].endswith(ANSWER_PREFIX)


def test_training_answers_with_the_ok_rewrite_and_leaves_out_pairs_without_one():
    pairs = pd.DataFrame(
        {
            "generation_id": ["g1", "g2", "g3"],
            "score_id": ["s1", "s2", "s3"],
            "instruction": ["i1", "i2", "i3"],
            "output": ["segment 1", "segment 2", "segment 3"],
        }
    )
    rewrites = pd.DataFrame(
        {
            "rewrite_id": ["r1b", "r1a", "r2", "r3", "r3x"],
            "generation_id": ["g1", "g1", "g2", "g3", "g3"],
            "answer": ["one (b)", "one (a)", "two", "three", "three by another model"],
            "model_id": ["m", "m", "m", "m", "other"],
            "prompt_version": ["rewrite_v1"] * 5,
            "status": ["ok", "ok", "dropped", "dropped", "ok"],
        }
    )
    out = with_rewrites(pairs, rewrites, model_id="m", prompt_version="rewrite_v1")
    assert out["output"].tolist()[0] == "one (a)"  # the lowest id of two; dropped rewrites do not count
    assert out["output"].isna().tolist() == out["rewrite_id"].isna().tolist() == [False, True, True]
    anyone = with_rewrites(pairs, rewrites)  # any rewriter
    assert anyone["rewrite_id"].fillna("-").tolist() == ["r1a", "-", "r3x"]


def test_config_keys_name_what_is_wrong():
    from jobs.config import load_pipeline_config
    from training.config import AugmentedData
    from udfs.config import ConfigError

    local = load_pipeline_config("conf/local.yaml")
    assert (
        local.rewrite.enabled
        and local.rewrite.train_on == "segment"
        and local.rewrite_model() == local.model_path("base")
    )
    cluster = load_pipeline_config("conf/cluster.yaml")
    assert not cluster.rewrite.enabled and cluster.rewrite.require_end_marker
    with pytest.raises(ConfigError, match="rewrite.*train_on: rewrite needs enabled: true"):
        load_pipeline_config("conf/tiny.yaml", ["rewrite.train_on=rewrite"])
    with pytest.raises(ConfigError, match="rewrite.*min_faithfulness"):
        load_pipeline_config("conf/local.yaml", ["rewrite.min_faithfulness=1.5"])
    with pytest.raises(ValueError, match="output: rewrite needs rewrites_table"):
        AugmentedData(segments_table="s", candidates_table="c", scores_table="x", output="rewrite")


def test_the_run_summary_prints_each_iterations_rewrites():
    from jobs.run_summary import rewrite_lines

    figures = {"rewrites": 18, "ok": 2, "mean_faithfulness": 0.1234, "mean_new_numbers": 0.5, "answer_end": {"eos": 17}}
    summary = {
        "stages": [
            {"stage": "curate_v1", "iteration": 1, "extra": {}},
            {"stage": "rewrite_v1", "iteration": 1, "extra": {"faithfulness": figures}},
        ]
    }
    assert rewrite_lines(summary) == [
        "  iteration 1: 2 of 18 rewrites ok, mean faithfulness 0.12, new numbers per rewrite 0.50 "
        "(answers ended by eos 17)"
    ]
