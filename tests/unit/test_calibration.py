import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import ROOT
from udfs.calibration import kept_by_rule, precision_recall, precision_recall_at_k, read_labels
from udfs.ids import label_id

LABELS = ROOT / "data/sample/judge_labels.jsonl"


def test_precision_and_recall():
    pr = precision_recall([True, True, False, False, False], [True, False, True, False, False], k=5)
    assert (pr.pairs, pr.good, pr.kept, pr.good_kept) == (5, 2, 2, 1)
    assert pr.precision == 0.5 and pr.recall == 0.5


def test_undefined_figures_are_none_not_zero():
    nothing_kept = precision_recall([True, False], [False, False], k=5)
    assert nothing_kept.precision is None and nothing_kept.recall == 0.0
    nothing_good = precision_recall([False, False], [True, False], k=5)
    assert nothing_good.recall is None and nothing_good.precision == 0.0
    with pytest.raises(ValueError):
        precision_recall([True], [True, False], k=5)


@given(st.lists(st.tuples(st.booleans(), st.booleans()), max_size=60))
def test_precision_recall_properties(pairs):
    good, kept = [g for g, _ in pairs], [c for _, c in pairs]
    pr = precision_recall(good, kept, k=4)
    for value in (pr.precision, pr.recall):
        assert value is None or 0 <= value <= 1
    everything = precision_recall(good, [True] * len(good), k=1)
    if any(good):
        assert everything.recall == 1 and math.isclose(everything.precision, sum(good) / len(good))
        perfect = precision_recall(good, good, k=4)
        assert (perfect.precision, perfect.recall) == (1.0, 1.0)


def test_rule_keeps_pairs_at_or_above_k_and_never_missing_scores():
    assert kept_by_rule({"score": 5, "expected_score": 3.0}, "score", 5)
    assert not kept_by_rule({"score": 4, "expected_score": 4.9}, "score", 5)
    assert kept_by_rule({"score": None, "expected_score": 4.5}, "expected_score", 4.5)
    assert not kept_by_rule({"score": None, "expected_score": 4.9}, "score", 1)
    assert not kept_by_rule({"score": 5, "expected_score": 4.4}, "both", 4.5)
    assert kept_by_rule({"score": 5, "expected_score": 4.6}, "both", 4.5)


def test_precision_recall_at_k_over_judged_rows():
    rows = [
        {"label": "good", "score": 5, "expected_score": 4.8},
        {"label": "good", "score": None, "expected_score": 3.1},
        {"label": "bad", "score": 5, "expected_score": 2.0},
        {"label": "bad", "score": 2, "expected_score": 2.2},
    ]
    at5 = precision_recall_at_k(rows, "score", 5)
    assert (at5.kept, at5.good_kept, at5.precision, at5.recall) == (2, 1, 0.5, 0.5)
    at3 = precision_recall_at_k(rows, "expected_score", 3)
    assert (at3.precision, at3.recall) == (1.0, 1.0)


def test_read_labels_validates_each_line(tmp_path):
    path = tmp_path / "labels.jsonl"
    good = {"instruction": "Sort a list?", "output": "Use sorted().", "label": "good"}
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(good) + "\n")
    pairs = read_labels(path)
    assert len(pairs) == 1 and pairs[0].label_id == label_id("Sort a list?", "Use sorted().")  # duplicates collapse
    for line, message in [
        ("{not json", ":1: invalid JSON"),
        (json.dumps({**good, "label": "ok"}), "label must be one of"),
        (json.dumps({**good, "output": ""}), "non-empty string fields"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps(good) + "\n" + json.dumps({**good, "label": "bad"}), ":2: the same pair is labelled both"),
        ("", "no labelled pairs"),
    ]:
        path.write_text(line + "\n")
        with pytest.raises(ValueError, match=message):
            read_labels(path)


def test_sample_label_file_is_the_generators_output():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_judge_labels", ROOT / "data/sample/make_judge_labels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert LABELS.read_text(encoding="utf-8") == module.render()
    pairs = read_labels(LABELS)
    assert 40 <= len(pairs) <= 60
    kinds = {(p.label, p.kind) for p in pairs}
    assert kinds == {
        ("good", "true_pair"),
        ("bad", "mismatched"),
        ("bad", "shuffled"),
        ("bad", "truncated"),
        ("bad", "web_boilerplate"),
    }
    held_out = {
        json.loads(line)["instruction"]: json.loads(line)["output"]
        for line in (ROOT / "data/sample/seed-heldout.jsonl").read_text().splitlines()
    }
    assert all(held_out[p.instruction] == p.output for p in pairs if p.label == "good")  # good rows are true pairs
    assert not any(held_out.get(p.instruction) == p.output for p in pairs if p.label == "bad")
    trained = {
        tuple(json.loads(line)[k] for k in ("instruction", "output"))
        for line in (ROOT / "data/sample/seed.jsonl").read_text().splitlines()
    }
    assert not trained & {(p.instruction, p.output) for p in pairs}  # no model trained on a labelled pair


def test_auc_ranks_good_above_bad_with_ties_half_and_missing_lowest():
    from udfs.calibration import auc

    assert auc([True, False], [5, 1]) == 1.0
    assert auc([True, False], [1, 5]) == 0.0
    assert auc([True, False, True, False], [3, 3, 4, 2]) == 0.875  # (1 tie/2 + 3 wins) / 4
    assert auc([True, False], [None, 1.0]) == 0.0  # a pair without a score never outranks one with a score
    assert auc([True, True], [1, 2]) is None


def test_baselines_are_deterministic_and_length_is_the_answer_length():
    from udfs.calibration import LabelledPair, baseline_values

    pairs = [LabelledPair("a", "q", "short", "good"), LabelledPair("b", "q", "a longer answer", "bad")]
    assert baseline_values(pairs, "length") == [5.0, 15.0]
    draws = baseline_values(pairs, "random")
    assert draws == baseline_values(pairs, "random") and all(0 <= d <= 1 for d in draws) and draws[0] != draws[1]
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_values(pairs, "judge")
