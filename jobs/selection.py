"""Which pairs an iteration curates, in Spark: the judge's rule, or a selection baseline of the same size.

``udfs.curation`` defines the rules; ``training.data.select_curated`` applies the same ones to pandas frames
when a model is trained. Here they serve the stages' plans, the run summary and the report.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.config import PipelineConfig
from jobs.stages.base import keyed_id
from udfs.curation import BASELINE_RULES, passes, random_salt


def judge_kept(scores: DataFrame, cfg: PipelineConfig, iteration: int) -> DataFrame:
    """``generation_id`` of the pairs the judge's rule keeps among ``scores`` (one judge's rows)."""
    rule, k = cfg.iterations.judge_rule, cfg.iterations.k(iteration)
    return scores.where(passes(F.col, rule, k)).select("generation_id").distinct()


def baseline_size(cfg: PipelineConfig, judge_count: int) -> int:
    """How many pairs a baseline keeps: ``iterations.baseline_k``, else as many as the judge kept."""
    return cfg.iterations.baseline_k if cfg.iterations.baseline_k is not None else judge_count


def baseline_order(rule: str, seed: int) -> list[Column]:
    """``udfs.curation.baseline_order`` as sort columns over a pool with ``generation_id`` and ``length``."""
    if rule == "longest":
        return [F.col("length").desc(), F.col("generation_id")]
    if rule == "random":
        return [keyed_id("generation_id", random_salt(seed)), F.col("generation_id")]
    raise ValueError(f"unknown baseline {rule!r}: choose one of {', '.join(BASELINE_RULES)}")


def baseline_pairs(pool: DataFrame, rule: str, k: int, seed: int) -> DataFrame:
    """``generation_id`` of the ``k`` pairs of ``pool`` (``generation_id``, ``length``) a baseline keeps."""
    return pool.orderBy(*baseline_order(rule, seed)).limit(max(k, 0)).select("generation_id")


def answer_lengths(scores: DataFrame, segments: DataFrame) -> DataFrame:
    """(generation_id, length): every pair of one judge's ``scores`` rows with its answer's characters. The
    whole pool, whatever its status: a baseline does not ask the judge (a pair the cascade ruled out counts)."""
    lengths = segments.select("segment_id", F.length("text").alias("length"))
    return scores.select("generation_id", "segment_id").distinct().join(lengths, on="segment_id")


def curated_generations(cfg: PipelineConfig, iteration: int, scores: DataFrame, segments: DataFrame) -> DataFrame:
    """``generation_id`` of what iteration ``iteration`` curates from ``scores`` (its judge's rows) under
    ``iterations.score_column``: the judge's rule, or a baseline as large as it."""
    kept = judge_kept(scores, cfg, iteration)
    rule = cfg.iterations.score_column
    if rule not in BASELINE_RULES:
        return kept
    size = baseline_size(cfg, kept.count() if cfg.iterations.baseline_k is None else 0)
    return baseline_pairs(answer_lengths(scores, segments), rule, size, cfg.iterations.baseline_seed)
