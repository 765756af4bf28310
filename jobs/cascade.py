"""The judge cascade (``curate.cascade.enabled``), driver side: the LLM judge labels a sample, a classifier
routes the rest.

At the paper's 8 % yield most judge calls go to pairs that are thrown away. Here the judge first scores a
seeded sample of the pool, stratified by document; a logistic regression on hashed word and bigram counts of
instruction and segment (Spark ML: it trains and scores where the pool is, however large) learns the judge's
keep decision from it; pairs whose probability is under the threshold that keeps ``recall_target`` of the
sample's kept pairs get a ``scores`` row ``dropped: cascade_rejected`` with that probability, and only the
others go to the judge. Every pair ends with exactly one ``scores`` row, keyed as the judge's would be.

Resumable: the sample, the folds and so the classifiers are functions of the pool, the seed and the sample's
stored scores, so a re-run after a crash judges no sample pair twice and draws the same line; pairs that
already have a row (judged or rejected) are never redone. Cross-fitting makes the threshold honest: every
pair, sampled or not, is scored by a model trained on the other folds of the sample, so the sample's held-out
probabilities are distributed as the rest's and its recall is an estimate of the cascade's.
"""

from __future__ import annotations

import logging
from typing import Sequence

from pyspark.ml import Pipeline
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import HashingTF, NGram, RegexTokenizer, SQLTransformer, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.stages.base import Context, StageReport, append, append_in_chunks, keyed_id, pending, require
from udfs.cascade import CascadeConfig, choose_threshold, sampled
from udfs.curation import passes
from udfs.spark_udfs import BatchFn, with_cascade_probability
from udfs.tables import SCORES, SEGMENTS, ddl_types

log = logging.getLogger(__name__)

REJECTED = "cascade_rejected"
_TEXT_FIELDS = ("instruction", "text")


def run(
    ctx: Context,
    report: StageReport,
    pairs: DataFrame,
    judge_id: str,
    prompt_version: str,
    fn: BatchFn,
    order: Sequence[str] = (),
) -> None:
    """Score ``pairs`` (``curate.score_rows``) of ``report.iteration`` through the cascade: sample -> judge,
    classifier -> rejected rows, the rest -> judge (each task's rows sorted by ``order``, as in curate).
    Figures go to ``report.extra["cascade"]``."""
    cfg, iteration = ctx.cfg.curate.cascade, report.iteration
    pairs = with_sample(ctx, report, pairs, cfg).cache()
    todo = pending(ctx, SCORES, pairs, report).count()
    if not todo:
        pairs.unpersist()
        return
    append_in_chunks(ctx, SCORES, pairs.where("in_sample").drop("doc_id", "in_sample", "fold"), fn, report, order)
    # cached: each fold's fit makes one Spark pass per optimiser iteration over it
    labelled = sample_labels(ctx, pairs, ctx.cfg.iterations.judge_rule, ctx.cfg.iterations.k(iteration)).cache()
    figures = {"pool": pairs.count(), "sample": labelled.count(), "sample_kept": labelled.where("label = 1").count()}
    rest = pending(ctx, SCORES, pairs.where(~F.col("in_sample")))
    if not cfg.min_sample_kept <= figures["sample_kept"] < figures["sample"]:
        figures["routing"] = (
            f"off: the sample has {figures['sample_kept']} kept of {figures['sample']} pairs "
            f"(needs >= {cfg.min_sample_kept} kept and one dropped): every pair goes to the judge"
        )
        log.warning("cascade of iteration %d %s", iteration, figures["routing"])
        append_in_chunks(ctx, SCORES, rest.drop("doc_id", "in_sample", "fold"), fn, report, order)
    else:
        scored_sample, scored_rest = cross_fit(labelled, rest, cfg)
        held_out = scored_sample.select("probability", "label").collect()
        threshold = choose_threshold(
            [r["probability"] for r in held_out], [bool(r["label"]) for r in held_out], cfg.recall_target
        )
        figures |= {
            "routing": "on",
            "threshold": threshold.value,
            "sample_recall": round(threshold.recall, 4),
            "sample_routed": round(threshold.routed, 4),
        }
        scored_rest = scored_rest.withColumnRenamed("probability", "cascade_probability").cache()
        below = F.col("cascade_probability") < threshold.value
        append(ctx, SCORES, rejected_rows(scored_rest.where(below), iteration, judge_id, prompt_version), report)
        routed = scored_rest.where(~below).drop("doc_id", "in_sample", "fold")
        append_in_chunks(ctx, SCORES, routed, with_cascade_probability(fn), report, order)
        scored_rest.unpersist()
    report.rows_in = todo
    report.extra["cascade"] = figures
    labelled.unpersist()
    pairs.unpersist()


def uniform(key: str, salt: str) -> Column:
    """A seeded draw in [0, 1) per row from the hash of column ``key``: the same on every run and partitioning."""
    return F.conv(F.substring(keyed_id(key, salt), 1, 8), 16, 10).cast("double") / float(1 << 32)


def with_sample(ctx: Context, report: StageReport, pairs: DataFrame, cfg: CascadeConfig) -> DataFrame:
    """``pairs`` with ``doc_id``, ``in_sample`` (the stratified sample, ``udfs.cascade.sampled``) and ``fold``
    (which cross-fitted model scores it). Ranks are within a document, so a new corpus drop (new documents)
    leaves the sample of the old pool as it was."""
    docs = require(ctx, report, SEGMENTS.name, "segment").select("segment_id", "doc_id")
    order = Window.partitionBy("doc_id").orderBy(uniform("generation_id", f"cascade-order|{cfg.seed}"), "generation_id")
    rank = F.row_number().over(order) - 1
    return (
        pairs.join(docs, on="segment_id")
        .withColumn(
            "in_sample",
            sampled(rank, uniform("doc_id", f"cascade-offset|{cfg.seed}"), cfg.sample_fraction, floor=F.floor),
        )
        .withColumn("fold", F.floor(uniform("generation_id", f"cascade-fold|{cfg.seed}") * cfg.folds).cast("int"))
    )


def sample_labels(ctx: Context, pairs: DataFrame, rule: str, k: float) -> DataFrame:
    """The sample's pairs with ``label`` 1 where the judge's stored row passes the curation rule, else 0
    (a pair the judge could not score, e.g. ``prompt_too_long``, is one it did not keep)."""
    scores = ctx.storage.read(SCORES.name)
    if scores is None:  # a pool so small that no document gave a pair to the sample
        return pairs.where(F.lit(False)).withColumn("label", F.lit(0.0))
    kept = passes(F.col, rule, k)
    judged = scores.select("score_id", F.coalesce(kept, F.lit(False)).cast("double").alias("label"))
    # Sorted so that the classifiers see their rows in one order whatever the table's file layout: fits repeat.
    return pairs.where("in_sample").join(judged, on="score_id").orderBy("score_id")


def classifier(cfg: CascadeConfig) -> Pipeline:
    """Hashed word and bigram counts of instruction and segment, their log lengths -> logistic regression."""
    stages, features = [], []
    lengths = ", ".join(f"log1p(length(coalesce({c}, ''))) AS {c}_log_chars" for c in _TEXT_FIELDS)
    stages.append(SQLTransformer(statement=f"SELECT *, {lengths} FROM __THIS__"))
    for c in _TEXT_FIELDS:
        stages += [
            RegexTokenizer(inputCol=c, outputCol=f"{c}_words", pattern=r"\W+", toLowercase=True),
            NGram(n=2, inputCol=f"{c}_words", outputCol=f"{c}_bigrams"),
            HashingTF(inputCol=f"{c}_words", outputCol=f"{c}_tf1", numFeatures=cfg.num_features, binary=True),
            HashingTF(inputCol=f"{c}_bigrams", outputCol=f"{c}_tf2", numFeatures=cfg.num_features, binary=True),
        ]
        features += [f"{c}_tf1", f"{c}_tf2", f"{c}_log_chars"]
    stages += [
        VectorAssembler(inputCols=features, outputCol="features"),
        LogisticRegression(featuresCol="features", labelCol="label", regParam=0.01, maxIter=100),
    ]
    return Pipeline(stages=stages)


def cross_fit(labelled: DataFrame, rest: DataFrame, cfg: CascadeConfig) -> tuple[DataFrame, DataFrame]:
    """Per fold f, a classifier fitted on the sample outside f scores the sample's pairs and the rest's
    pairs in f. Returns (sample with ``probability`` and ``label``, rest with ``probability``)."""
    sample_parts, rest_parts = [], []
    for fold in range(cfg.folds):
        model = classifier(cfg).fit(labelled.where(F.col("fold") != fold))
        sample_parts.append(probability(model.transform(labelled.where(F.col("fold") == fold)), labelled.columns))
        rest_parts.append(probability(model.transform(rest.where(F.col("fold") == fold)), rest.columns))
    return union(sample_parts), union(rest_parts)


def probability(scored: DataFrame, columns: list[str]) -> DataFrame:
    """The input columns of a transformed frame plus the classifier's probability of "kept"."""
    return scored.select(*columns, vector_to_array("probability")[1].alias("probability"))


def union(frames: list[DataFrame]) -> DataFrame:
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out


def rejected_rows(rows: DataFrame, iteration: int, judge_id: str, prompt_version: str) -> DataFrame:
    """``scores`` rows for pairs the classifier ruled out: keyed as the judge's rows, no judge output."""
    values = {
        "score_id": F.col("score_id"),
        "generation_id": F.col("generation_id"),
        "segment_id": F.col("segment_id"),
        "iteration": F.lit(iteration),
        "judge_model_id": F.lit(judge_id),
        "prompt_version": F.lit(prompt_version),
        "cascade_probability": F.col("cascade_probability"),
        "status": F.lit("dropped"),
        "reason": F.lit(REJECTED),
    }
    types = ddl_types(SCORES.schema)
    return rows.select(*[values.get(c, F.lit(None)).cast(types[c]).alias(c) for c in SCORES.columns])
