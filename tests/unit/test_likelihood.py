"""IFD and the conditional loss, the pure part: the maths against a hand-computed pair, the rows of a batch on
the fake engine (every status), and the curation rule over them (lower is better). And the judge's
prefix-aware ordering: the sort key follows the prompt, and reordering the input changes no row."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from udfs.calibration import LabelledPair, auc, kept_by_rule, signal_values
from udfs.curation import check_k, passes, prefix_order, rule_text, uses_likelihoods
from udfs.engine import EngineConfig, SamplingConfig, engine_args
from udfs.fake_engine import FakeEngine
from udfs.likelihood import FORMAT_VERSION, likelihood_batch, losses, mean_loss
from udfs.llm_rows import judge_batch
from udfs.prompts import PromptTemplate
from udfs.tables import LIKELIHOODS


def test_ifd_of_a_hand_computed_pair():
    # Three answer tokens. With the instruction: p = 1/2, 1/4, 1/2 -> loss (ln2 + 2ln2 + ln2) / 3 = 4/3 ln2.
    # Alone: p = 1/4, 1/4, 1/8 -> loss (2 + 2 + 3) ln2 / 3 = 7/3 ln2. IFD = 4/7.
    ln2 = math.log(2)
    scored = losses([-ln2, -2 * ln2, -ln2], [-2 * ln2, -2 * ln2, -3 * ln2])
    assert scored.conditional_loss == pytest.approx(4 / 3 * ln2)
    assert scored.answer_loss == pytest.approx(7 / 3 * ln2)
    assert scored.ifd == pytest.approx(4 / 7)


def test_losses_refuse_what_does_not_compare():
    with pytest.raises(ValueError, match="answer tokens"):
        losses([-1.0, -1.0], [-1.0])
    with pytest.raises(ValueError, match="no tokens"):
        mean_loss([])
    assert losses([0.0], [0.0]).ifd is None  # an answer certain without the instruction: no ratio


def batch(pairs):
    return pd.DataFrame(
        {
            "likelihood_id": [f"l{i}" for i in range(len(pairs))],
            "generation_id": [f"g{i}" for i in range(len(pairs))],
            "segment_id": [f"s{i}" for i in range(len(pairs))],
            "instruction": [p[0] for p in pairs],
            "text": [p[1] for p in pairs],
        }
    )


def test_batch_rows_have_a_status_and_a_reason_each():
    engine = FakeEngine(engine_args("fake-model", EngineConfig(name="fake", max_model_len=40)))
    pairs = [
        ("how do lists work in python", "python lists work like arrays of references"),
        ("write a poem", "python lists work like arrays of references"),
        ("explain", "   "),
        ("explain", " ".join(["word"] * 60)),
    ]
    rows = likelihood_batch(engine, batch(pairs), "scorer-1", "pool")
    assert list(rows.columns) == LIKELIHOODS.columns
    assert list(rows["likelihood_id"]) == ["l0", "l1", "l2", "l3"]
    assert list(rows["status"]) == ["ok", "ok", "dropped", "dropped"]
    assert list(rows["reason"].fillna("")) == ["", "", "empty_answer", "prompt_too_long"]
    assert set(rows["format_version"]) == {FORMAT_VERSION} and set(rows["source"]) == {"pool"}
    matched, unrelated = rows.iloc[0], rows.iloc[1]
    # The instruction that shares the answer's words explains part of it; the unrelated one explains nothing.
    assert matched["ifd"] < 1 and unrelated["ifd"] == pytest.approx(1.0)
    assert matched["conditional_loss"] < unrelated["conditional_loss"]
    assert matched["answer_loss"] == pytest.approx(unrelated["answer_loss"])
    assert matched["answer_tokens"] == 7


def test_the_rule_keeps_low_ifd_and_low_loss():
    rows = pd.DataFrame(
        {"status": ["ok", "ok", "ok", "dropped"], "ifd": [0.5, 0.9, None, 0.1], "conditional_loss": [1, 3, 2, 1.0]}
    )
    assert list(passes(rows.__getitem__, "ifd", 0.8).fillna(False)) == [True, False, False, False]
    assert list(passes(rows.__getitem__, "conditional_loss", 2.0).fillna(False)) == [True, False, True, False]
    assert kept_by_rule({"ifd": 0.5}, "ifd", 0.8) and not kept_by_rule({"ifd": None}, "ifd", 0.8)
    assert kept_by_rule({"score": 5}, "score", 4) and not kept_by_rule({"ifd": 0.9}, "ifd", 0.8)
    assert rule_text("ifd", 0.8) == "ifd <= 0.8" and rule_text("both", 4.0) == "score >= 4.0 and expected_score >= 4.0"
    assert uses_likelihoods("conditional_loss") and not uses_likelihoods("both")


@pytest.mark.parametrize(("rule", "k"), [("ifd", 0), ("ifd", -1), ("score", 0.9), ("expected_score", 6)])
def test_a_threshold_outside_the_columns_range_is_an_error(rule, k):
    with pytest.raises(ValueError, match=f"min_score must be .*rule {rule}"):
        check_k(rule, k)


def test_losses_are_negated_as_signals_so_higher_means_keep():
    pairs = [LabelledPair(f"l{i}", "q", "a", label) for i, label in enumerate(["good", "good", "bad"])]
    ifd = signal_values(pairs, {"l0": 0.5, "l1": 0.7, "l2": float("nan")}, "ifd")
    assert ifd == [-0.5, -0.7, None]
    assert signal_values(pairs, {"l0": 4.0}, "expected_score") == [4.0, None, None]
    assert auc([True, True, False], ifd) == 1.0  # the missing value ranks lowest


def test_the_judge_sorts_by_the_prompts_fields_in_prompt_order():
    assert prefix_order(PromptTemplate.load("conf/prompts/score_v1.txt")) == ["instruction", "text"]
    segment_first = PromptTemplate("score_v9", "Rubric.\n{answer}\nthen\n{instruction}\nScore:")
    assert prefix_order(segment_first) == ["text", "instruction"]


def test_ordering_the_judges_input_changes_no_row():
    engine = FakeEngine(engine_args("judge", EngineConfig(name="fake", max_model_len=4096)))
    template = PromptTemplate.load("conf/prompts/score_v1.txt")
    rows = pd.DataFrame(
        {
            "score_id": [f"{i:032x}" for i in range(12)],
            "generation_id": [f"g{i}" for i in range(12)],
            "segment_id": [f"s{i % 4}" for i in range(12)],
            "instruction": [f"explain item {i % 3} of the list" for i in range(12)],
            "text": [f"the list has items and item {i % 4} works so" for i in range(12)],
        }
    )
    sampling, cfg = SamplingConfig(0.0, 1.0, 32), EngineConfig(name="fake")
    ordered = rows.sort_values(prefix_order(template)).reset_index(drop=True)
    assert list(ordered["score_id"]) != list(rows["score_id"])  # the sort does reorder this input
    outputs = [
        judge_batch(engine, df, "judge", template, sampling, cfg, 1).sort_values("score_id").reset_index(drop=True)
        for df in (rows, ordered)
    ]
    pd.testing.assert_frame_equal(*outputs)
