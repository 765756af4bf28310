"""Executor-side batch functions for Spark's ``mapInPandas``: the one place where pure code meets Spark.

Each factory returns a plain function ``Iterator[pd.DataFrame] -> Iterator[pd.DataFrame]`` that closes over
small, picklable config objects; what it yields has a schema of ``udfs.tables``. The row logic is pure code
(``udfs.segment``, ``udfs.minhash``, ``udfs.llm_rows``, ``udfs.likelihood``); this module adds only what Spark
needs: LLM functions fetch this worker's engine from ``udfs.engine.get_engine`` (created once, reused across
batches and tasks) on the GPUs Spark gave the task, call it under a per-batch deadline (``udfs.watchdog``: a
dead or stalled engine fails the task, and Spark retries it) and forget it when a batch fails. Every input
row yields at least one output row with a status, so nothing disappears without a trace.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Callable, Iterator

import pandas as pd
from pyspark import TaskContext
from pyspark.sql.functions import pandas_udf

from udfs import ids, sources
from udfs.decontam import Decontamination
from udfs.engine import EngineConfig, LLMEngine, SamplingConfig, drop_engine, get_engine
from udfs.likelihood import likelihood_batch
from udfs.llm_rows import augment_batch, chunks, frame, judge_batch, rewrite_batch
from udfs.minhash import DedupConfig, minhash
from udfs.prompts import PromptTemplate, encode_text
from udfs.readers import ReaderConfig, WorkUnit, can_read_back, read_back, read_records
from udfs.rewrite import RewriteSettings
from udfs.segment import SegmentConfig, error_row, segment_rows
from udfs.tables import READ_SCHEMA, SEGMENT_ROWS_SCHEMA
from udfs.watchdog import EngineStalled, batch_deadline, call_with_deadline, prefill_as_output_tokens

BatchFn = Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]

_FRAME_ROWS = 256  # documents per yielded frame, so a task holds a bounded slice of a file, not all of it
_FRAME_CHARS = 32 << 20


def read_units(cfg: ReaderConfig) -> BatchFn:
    """Input: one work unit per row (path, start, end, unit_id). Output: READ_SCHEMA rows, one per record,
    in frames of at most ``_FRAME_ROWS`` rows or ``_FRAME_CHARS`` characters of html. The html is left out
    (null) unless ``cfg.store_html`` or the file's records cannot be read back (``can_read_back``)."""
    # Made on the driver, which listed the input: its object-store settings and credentials travel with the
    # task (not in the Spark conf or a log), so executors read the same store however they were started.
    env = sources.storage_env()

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        sources.apply_env(env)
        for batch in batches:
            for path, start, end, unit in zip(batch["path"], batch["start"], batch["end"], batch["unit_id"]):
                rows, chars = [], 0
                keep_html = cfg.store_html or not can_read_back(path)
                for rec in read_records(WorkUnit(path, int(start), None if pd.isna(end) else int(end)), cfg):
                    doc = ids.doc_id(rec.url, rec.content_hash, rec.source_path, rec.offset, rec.reason)
                    row = {**dataclasses.asdict(rec), "doc_id": doc, "unit_id": unit}
                    if not keep_html:
                        row["html"] = None
                    rows.append(row)
                    chars += len(row["html"] or "")
                    if len(rows) >= _FRAME_ROWS or chars >= _FRAME_CHARS:
                        yield frame(rows, READ_SCHEMA)
                        rows, chars = [], 0
                if rows:
                    yield frame(rows, READ_SCHEMA)

    return run


def segment_documents(cfg: SegmentConfig, reader: ReaderConfig, dedup: DedupConfig | None = None) -> BatchFn:
    """Input: ok documents (doc_id, url, html, source_path, offset, length, content_hash). Output: one row per
    section (``udfs.segment.segment_rows``), SEGMENT_ROWS_SCHEMA, plus MINHASH_SCHEMA's columns when ``dedup``
    is given (``minhash_signatures``' values: signing here saves the segments a second trip through Arrow and
    a Python worker). A document without html is read back from its record (``udfs.readers.read_back``); one
    that cannot be is one ``error`` row (``source_missing``, ``source_changed``).

    Segmentation yields at least one row per document (``no_header`` when it has none), so
    "already segmented" is a lookup of the doc_id.
    """
    env = sources.storage_env()  # reading back from an object store: the driver's settings, as in read_units

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        sources.apply_env(env)
        for batch in batches:
            rows = []
            for doc_id, url, html, path, offset, length, content_hash in zip(
                batch["doc_id"],
                batch["url"],
                batch["html"],
                batch["source_path"],
                batch["offset"],
                batch["length"],
                batch["content_hash"],
            ):
                if html is None:
                    rec = read_back(path, _int(offset), _int(length), content_hash, reader)
                    if rec.status != "ok":
                        rows.append(error_row(doc_id, url, rec.reason))
                        continue
                    html = rec.html
                rows.extend(segment_rows(doc_id, url, html, cfg))
            segments = frame(rows, SEGMENT_ROWS_SCHEMA)
            yield segments if dedup is None else _signed(segments, dedup)

    return run


def _int(value) -> int | None:
    return None if pd.isna(value) else int(value)


def minhash_signatures(cfg: DedupConfig) -> BatchFn:
    """Input: segment rows (any columns, at least ``text`` and ``status``). Output: the same rows plus the
    MINHASH_SCHEMA columns; signature and band keys only for ok rows whose normalised text has words."""

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            yield _signed(batch, cfg)

    return run


def _signed(batch: pd.DataFrame, cfg: DedupConfig) -> pd.DataFrame:
    hashes = [minhash(text, cfg) if status == "ok" else None for text, status in zip(batch["text"], batch["status"])]
    return batch.assign(
        minhash=[None if m is None else m.signature.view("int32") for m in hashes],
        minhash_bands=[None if m is None else m.band_keys for m in hashes],
        minhash_scheme=cfg.scheme,
    )


def backtranslate(
    model_path: str,
    model_id: str,
    engine_cfg: EngineConfig,
    sampling: SamplingConfig,
    template: PromptTemplate,
    max_instruction_chars: int,
    decontamination: Decontamination = Decontamination(),
) -> BatchFn:
    """Input: (generation_id, segment_id, text). Output: CANDIDATES rows (``udfs.llm_rows.augment_batch``), the
    instructions checked against the evaluation sets of ``decontamination``."""
    return _engine_batches(
        "augment",
        model_path,
        model_id,
        engine_cfg,
        sampling.max_tokens,
        lambda engine, batch: augment_batch(
            engine, batch, model_id, template, sampling, engine_cfg, max_instruction_chars, decontamination
        ),
    )


def judge(
    model_path: str,
    model_id: str,
    engine_cfg: EngineConfig,
    sampling: SamplingConfig,
    template: PromptTemplate,
    iteration: int | None = None,
) -> BatchFn:
    """Input: (score_id, generation_id, segment_id, instruction, text). Output: SCORES rows of the self-training
    ``iteration`` whose judge this is (``udfs.llm_rows.judge_batch``)."""
    return _engine_batches(
        "calibrate" if iteration is None else f"curate (iteration {iteration})",
        model_path,
        model_id,
        engine_cfg,
        sampling.max_tokens,
        lambda engine, batch: judge_batch(engine, batch, model_id, template, sampling, engine_cfg, iteration),
    )


def with_cascade_probability(fn: BatchFn) -> BatchFn:
    """``fn`` (a judge) over rows that carry the cascade classifier's ``cascade_probability``: its scores rows
    get that probability back by ``score_id`` (the judge sees and returns only its own columns)."""

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        seen: dict[str, float] = {}

        def judge_input() -> Iterator[pd.DataFrame]:
            for batch in batches:
                seen.update(zip(batch["score_id"], batch["cascade_probability"]))
                yield batch.drop(columns="cascade_probability")

        for out in fn(judge_input()):
            yield out.assign(cascade_probability=out["score_id"].map(seen))

    return run


def rewrite(
    model_path: str,
    model_id: str,
    engine_cfg: EngineConfig,
    sampling: SamplingConfig,
    template: PromptTemplate,
    settings: RewriteSettings,
) -> BatchFn:
    """Input: (rewrite_id, generation_id, segment_id, instruction, text). Output: REWRITES rows
    (``udfs.llm_rows.rewrite_batch``)."""
    return _engine_batches(
        "rewrite",
        model_path,
        model_id,
        engine_cfg,
        sampling.max_tokens,
        lambda engine, batch: rewrite_batch(engine, batch, model_id, template, sampling, engine_cfg, settings),
    )


def likelihood(model_path: str, model_id: str, engine_cfg: EngineConfig, source: str) -> BatchFn:
    """Input: (likelihood_id, generation_id, segment_id, instruction, text). Output: LIKELIHOODS rows
    (``udfs.likelihood.likelihood_batch``) of the pairs of ``source`` (pool or labels)."""
    return _engine_batches(
        f"likelihood ({source})",
        model_path,
        model_id,
        engine_cfg,
        prefill_as_output_tokens(2 * engine_cfg.max_model_len),  # two prefills of up to the context per row
        lambda engine, batch: likelihood_batch(engine, batch, model_id, source),
    )


def _engine_batches(
    stage: str,
    model_path: str,
    model_id: str,
    engine_cfg: EngineConfig,
    max_tokens: int,
    batch_fn: Callable[[LLMEngine, pd.DataFrame], pd.DataFrame],
) -> BatchFn:
    """The batch function of an LLM stage: ``batch_fn(engine, batch)`` over engine-sized batches, each under the
    deadline of a batch of that many rows writing up to ``max_tokens`` tokens on this task's device, on this
    worker's engine, forgotten when a batch fails."""

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in chunks(batches, engine_cfg.batch_size):
            engine = _engine(model_path, model_id, engine_cfg)  # cached: loads once per worker, on the first rows
            device = "gpu" if _task_gpus() else "cpu"
            seconds = batch_deadline(len(batch), max_tokens, device, engine_cfg.batch_deadline_seconds)
            yield call_with_deadline(lambda: batch_fn(engine, batch), seconds, f"{stage}: batch of {len(batch)} rows")

    return _dropping_engine_on_failure(run)


def token_counter(tokenizer_dir: str):
    """A pandas UDF: the number of tokens of each text under the tokenizer in ``tokenizer_dir`` (the report's
    token lengths). The tokenizer loads once per Python worker."""

    @pandas_udf("int")
    def count(texts: pd.Series) -> pd.Series:
        tokenizer = _tokenizer(tokenizer_dir)
        return pd.Series([len(encode_text(tokenizer, text)) for text in texts.fillna("")], dtype="int32")

    return count


@functools.lru_cache(maxsize=2)
def _tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _engine(model_path: str, model_id: str, cfg: EngineConfig):
    """This worker's engine, on the GPUs Spark gave this task (when the cluster schedules GPUs)."""
    gpus = _task_gpus()
    if gpus and "CUDA_VISIBLE_DEVICES" not in os.environ:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    return get_engine(model_path, cfg, model_id)


def _task_gpus() -> list[str]:
    """The GPU addresses Spark gave this task, or those CUDA_VISIBLE_DEVICES names (a GPU machine without
    GPU scheduling); empty on CPU."""
    context = TaskContext.get()
    gpus = context.resources().get("gpu") if context is not None else None
    if gpus is not None:
        return list(gpus.addresses)
    return [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]


def _dropping_engine_on_failure(run: BatchFn) -> BatchFn:
    """An engine that raised may be dead (CUDA error, OOM): forget it so the retried task builds a new one. A
    stalled one is forgotten without closing it: closing waits on the very call that never returns."""

    def guarded(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        try:
            yield from run(batches)
        except Exception as exc:
            drop_engine(close=not isinstance(exc, EngineStalled))
            raise

    return guarded
