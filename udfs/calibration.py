"""Judge calibration, the pure part: labelled (instruction, output, good|bad) pairs and precision/recall at k.

The paper (Table 7) rates each iteration's judge on a labelled dev set: of the pairs the judge would curate
(score >= k), how many are good (precision), and of the good pairs, how many it curates (recall).
``jobs.stages.calibrate`` runs the judges over the labels; the report computes these figures from its table.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from udfs.curation import LOWER_IS_BETTER, RULE_COLUMNS, CurationRule, passing_value
from udfs.ids import label_id, stable_id

LABELS = ("good", "bad")


@dataclass(frozen=True)
class LabelledPair:
    label_id: str  # content id: editing a row makes a new row, never a stale judgement of the old one
    instruction: str
    output: str
    label: str  # "good" | "bad"
    kind: str | None = None  # how the row was made (e.g. "true_pair", "mismatched"), for breakdowns


@dataclass(frozen=True)
class PrecisionRecall:
    k: float
    pairs: int
    good: int  # labelled good
    kept: int  # the judge's rule keeps them
    good_kept: int
    precision: float | None  # None when the judge keeps nothing
    recall: float | None  # None when nothing is labelled good


def read_labels(path: str | Path) -> list[LabelledPair]:
    """The labelled pairs of a JSONL file (``instruction``, ``output``, ``label`` good|bad, optional ``kind``).

    The file is curated by people, like config: a malformed line is an error naming the line, not a row to skip.
    """
    pairs: dict[str, LabelledPair] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: invalid JSON: {exc}") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{n}: expected a JSON object")
        instruction, output, label = row.get("instruction"), row.get("output"), row.get("label")
        if (
            not isinstance(instruction, str)
            or not instruction.strip()
            or not isinstance(output, str)
            or not output.strip()
        ):
            raise ValueError(f"{path}:{n}: needs non-empty string fields 'instruction' and 'output'")
        if label not in LABELS:
            raise ValueError(f"{path}:{n}: label must be one of {LABELS}, got {label!r}")
        pair = LabelledPair(label_id(instruction, output), instruction, output, label, row.get("kind"))
        if pairs.setdefault(pair.label_id, pair).label != label:
            raise ValueError(f"{path}:{n}: the same pair is labelled both good and bad")
    if not pairs:
        raise ValueError(f"{path}: no labelled pairs")
    return list(pairs.values())


def kept_by_rule(values: Mapping[str, float | None], rule: CurationRule, k: float) -> bool:
    """Whether the curation rule keeps a pair: every column of ``rule`` is present and passes k."""
    return all(values.get(c) is not None and passing_value(c, values[c], k) for c in RULE_COLUMNS[rule])


def precision_recall(good: Sequence[bool], kept: Sequence[bool], k: float) -> PrecisionRecall:
    """Precision and recall of the judge's keep decisions ``kept`` against the labels ``good``."""
    if len(good) != len(kept):
        raise ValueError(f"{len(good)} labels but {len(kept)} decisions")
    n_good, n_kept = sum(good), sum(kept)
    hits = sum(g and c for g, c in zip(good, kept))
    return PrecisionRecall(
        k=k,
        pairs=len(good),
        good=n_good,
        kept=n_kept,
        good_kept=hits,
        precision=hits / n_kept if n_kept else None,
        recall=hits / n_good if n_good else None,
    )


def precision_recall_at_k(rows: Sequence[Mapping], rule: CurationRule, k: float) -> PrecisionRecall:
    """Precision and recall at k of judged rows (each with ``label`` and the rule's score columns)."""
    return precision_recall([r["label"] == "good" for r in rows], [kept_by_rule(r, rule, k) for r in rows], k)


def auc(good: Sequence[bool], values: Sequence[float | None]) -> float | None:
    """Area under the ROC curve of ``values`` as a score for ``good``: the chance that a random good pair
    scores above a random bad one (ties count half). Pairs without a value rank lowest, as the curation rule
    treats them (a null score never passes). None when one class is empty."""
    if len(good) != len(values):
        raise ValueError(f"{len(good)} labels but {len(values)} values")
    ranked = [-math.inf if v is None else v for v in values]
    pos = [v for g, v in zip(good, ranked) if g]
    neg = [v for g, v in zip(good, ranked) if not g]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def baseline_values(pairs: Sequence[LabelledPair], kind: str) -> list[float]:
    """A selection baseline's score per pair: ``length`` (characters of the answer: "Long Is More for
    Alignment", 2024) or ``random`` (a uniform draw seeded by the pair's id, the same on every run)."""
    if kind == "length":
        return [float(len(p.output)) for p in pairs]
    if kind == "random":
        return [int(stable_id("random-baseline", p.label_id)[:8], 16) / 0xFFFFFFFF for p in pairs]
    raise ValueError(f"unknown baseline {kind!r}: choose length or random")


def signal_values(
    pairs: Sequence[LabelledPair], by_label: Mapping[str, float | None], column: str
) -> list[float | None]:
    """A selection signal's value per pair, oriented so that higher means "keep" as ``auc`` reads it: a
    loss-like column (``udfs.curation.LOWER_IS_BETTER``: ifd, conditional_loss) is negated. None where the
    pair has no value."""
    sign = -1.0 if column in LOWER_IS_BETTER else 1.0
    values = [by_label.get(p.label_id) for p in pairs]
    return [None if v is None or v != v else sign * float(v) for v in values]  # v != v: NaN from pandas
