"""The judge cascade, the pure part: its config and the choice of the classifier's threshold.

The LLM judge labels a seeded sample of the pool; a cheap classifier trained on those labels rules out the
pairs it is confident the judge would drop, and only the rest go to the judge (``jobs.cascade`` does the
Spark side). The threshold is chosen on the classifier's held-out probabilities of the sample so that
``recall_target`` of the sample's kept pairs score at or above it: that is the share of the judge's kept set
the cascade is expected to keep, since the pairs it routes are unseen by the classifier too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence


@dataclass(frozen=True)
class CascadeConfig:
    """``curate.cascade``: off by default (the paper judges every pair)."""

    enabled: bool = False  # true: judge a sample, let a classifier rule out the rest
    sample_fraction: float = 0.1  # share of each document's pairs the LLM judges first (the classifier's labels)
    recall_target: float = 0.95  # share of the sample's kept pairs that must score at or above the threshold
    seed: int = 0  # the sample and the folds; part of nothing else, so changing it re-samples but re-judges nothing
    folds: int = 3  # cross-fitting: each pair is scored by a model that never saw it
    # fewer kept pairs in the sample than this and the classifier is not trusted: every pair goes to the judge
    min_sample_kept: int = 20
    # hashed buckets per text field and n-gram order (4 vectors). Every L-BFGS step ships arrays of the full width
    # to each task: at 1 << 18 (1 M features) a step took 6.5 s on 88 rows here; labels number thousands
    num_features: int = 1 << 14

    def __post_init__(self):
        if not 0 < self.sample_fraction <= 1:
            raise ValueError(f"sample_fraction must be within (0, 1], got {self.sample_fraction}")
        if not 0 < self.recall_target <= 1:
            raise ValueError(f"recall_target must be within (0, 1], got {self.recall_target}")
        if self.folds < 2:
            raise ValueError(f"folds must be >= 2, got {self.folds}")
        if self.min_sample_kept < 1:
            raise ValueError(f"min_sample_kept must be >= 1, got {self.min_sample_kept}")
        if self.num_features < 2:
            raise ValueError(f"num_features must be >= 2, got {self.num_features}")


class Threshold(NamedTuple):
    value: float  # pairs with probability >= value go to the judge
    recall: float  # share of the sample's kept pairs at or above it (held-out estimate of the cascade's recall)
    routed: float  # share of the sample at or above it (estimate of the share of the rest the judge still sees)


def choose_threshold(probabilities: Sequence[float], kept: Sequence[bool], recall_target: float) -> Threshold:
    """The highest threshold that keeps at least ``recall_target`` of the kept pairs (``kept``) at or above it.

    Ties at the threshold all pass, so the recall reached may exceed the target. Needs at least one kept pair.
    """
    if len(probabilities) != len(kept):
        raise ValueError(f"{len(probabilities)} probabilities but {len(kept)} labels")
    positives = sorted((p for p, k in zip(probabilities, kept) if k), reverse=True)
    if not positives:
        raise ValueError("no kept pair in the sample: no threshold preserves recall")
    need = max(1, math.ceil(recall_target * len(positives) - 1e-9))
    value = positives[need - 1]
    at_or_above = [p >= value for p in probabilities]
    recall = sum(a for a, k in zip(at_or_above, kept) if k) / len(positives)
    return Threshold(value, recall, sum(at_or_above) / len(probabilities))


def sampled(rank: Any, offset: Any, fraction: float, floor: Callable[[Any], Any] = math.floor) -> Any:
    """Whether the pair of rank ``rank`` (0-based, in a seeded random order within its document) is in the
    sample: systematic sampling from a per-document random ``offset`` in [0, 1), so every document gives
    floor or ceil of ``fraction`` x its pairs and the whole pool exactly ``fraction`` in expectation.
    With ``floor=pyspark.sql.functions.floor`` and columns for ``rank`` and ``offset`` the one condition is a
    Spark expression (``jobs.cascade``)."""
    return floor((rank + 1) * fraction + offset) > floor(rank * fraction + offset)
