"""The judge cascade's pure part: the threshold that preserves the sample's recall, the stratified sample."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs.config import load_pipeline_config
from tests.conftest import ROOT
from udfs.cascade import CascadeConfig, choose_threshold, sampled
from udfs.config import ConfigError


def test_threshold_is_the_highest_that_keeps_the_target_share_of_kept_pairs():
    probabilities = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    kept = [True, False, True, False, True, False, False, True, False, False]
    t = choose_threshold(probabilities, kept, 0.75)  # 3 of the 4 kept pairs: the third kept is at 0.5
    assert t.value == 0.5 and t.recall == 0.75 and t.routed == 0.5
    assert choose_threshold(probabilities, kept, 1.0).value == 0.2
    assert choose_threshold(probabilities, kept, 0.01).value == 0.9  # at least one kept pair passes


def test_ties_at_the_threshold_all_pass():
    t = choose_threshold([0.5, 0.5, 0.5, 0.1], [True, True, False, False], 0.5)
    assert t.value == 0.5 and t.recall == 1.0 and t.routed == 0.75


def test_a_sample_without_kept_pairs_or_mismatched_inputs_is_an_error():
    with pytest.raises(ValueError, match="no kept pair"):
        choose_threshold([0.1, 0.2], [False, False], 0.9)
    with pytest.raises(ValueError, match="2 probabilities but 1 labels"):
        choose_threshold([0.1, 0.2], [True], 0.9)


@given(
    st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=60).filter(lambda r: any(k for _, k in r)),
    st.floats(0.01, 1.0),
)
def test_the_recall_reached_is_at_least_the_target(rows, target):
    probabilities, kept = [p for p, _ in rows], [k for _, k in rows]
    t = choose_threshold(probabilities, kept, target)
    assert t.recall >= target - 1e-9
    # and no higher threshold (the next kept probability up) would still reach it
    higher = sorted({p for p, k in rows if k and p > t.value})
    if higher:
        above = sum(1 for p, k in rows if k and p >= higher[0])
        assert above / sum(kept) < target - 1e-9


@given(st.integers(1, 40), st.floats(0, 0.999), st.floats(0.01, 1.0))
def test_each_document_gives_floor_or_ceil_of_its_share(n, offset, fraction):
    chosen = sum(sampled(rank, offset, fraction) for rank in range(n))
    assert math.floor(n * fraction) <= chosen <= math.ceil(n * fraction)


def test_the_sample_is_the_fraction_of_the_pool_on_average():
    offsets = [i / 1000 for i in range(1000)]  # documents' offsets spread over [0, 1)
    chosen = sum(sampled(rank, o, 0.1) for o in offsets for rank in range(3))
    assert chosen == 300  # 10 % of 3,000 pairs, though each document has only 3


def test_config_validates_and_names_the_key():
    cfg = load_pipeline_config(str(ROOT / "conf/local.yaml"), ["curate.cascade.enabled=true"])
    assert cfg.curate.cascade == CascadeConfig(enabled=True)
    for key, value in (("sample_fraction", "0"), ("recall_target", "1.5"), ("folds", "1"), ("min_sample_kept", "0")):
        with pytest.raises(ConfigError, match=key):
            load_pipeline_config(str(ROOT / "conf/local.yaml"), [f"curate.cascade.{key}={value}"])
