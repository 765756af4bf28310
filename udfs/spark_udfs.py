"""Executor-side batch functions for Spark's ``mapInPandas``: the one place where pure code meets Spark.

Each factory returns a plain function ``Iterator[pd.DataFrame] -> Iterator[pd.DataFrame]`` that closes over
small, picklable config objects; what it yields has a schema of ``udfs.tables``. The row logic is pure code
(``udfs.segment``, ``udfs.minhash``, ``udfs.llm_rows``); this module adds only what Spark needs: LLM functions
fetch this worker's engine from ``udfs.engine.get_engine`` (created once, reused across batches and tasks) on
the GPUs Spark gave the task, and forget it when a batch fails. Every input row yields at least one output
row with a status, so nothing disappears without a trace.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Callable, Iterator

import pandas as pd
from pyspark import TaskContext
from pyspark.sql.functions import pandas_udf

from udfs import ids
from udfs.engine import EngineConfig, SamplingConfig, drop_engine, get_engine
from udfs.llm_rows import augment_batch, chunks, frame, judge_batch
from udfs.minhash import DedupConfig, minhash
from udfs.prompts import PromptTemplate
from udfs.readers import ReaderConfig, WorkUnit, read_records
from udfs.segment import SegmentConfig, segment_rows
from udfs.tables import READ_SCHEMA, SEGMENT_ROWS_SCHEMA

BatchFn = Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]

_FRAME_ROWS = 256  # documents per yielded frame, so a task holds a bounded slice of a file, not all of it
_FRAME_CHARS = 32 << 20


def read_units(cfg: ReaderConfig) -> BatchFn:
    """Input: one work unit per row (path, start, end, unit_id). Output: READ_SCHEMA rows, one per record,
    in frames of at most ``_FRAME_ROWS`` rows or ``_FRAME_CHARS`` characters of html."""

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            for path, start, end, unit in zip(batch["path"], batch["start"], batch["end"], batch["unit_id"]):
                rows, chars = [], 0
                for rec in read_records(WorkUnit(path, int(start), None if pd.isna(end) else int(end)), cfg):
                    doc = ids.doc_id(rec.url, rec.content_hash, rec.source_path, rec.offset, rec.reason)
                    rows.append({**dataclasses.asdict(rec), "doc_id": doc, "unit_id": unit})
                    chars += len(rec.html or "")
                    if len(rows) >= _FRAME_ROWS or chars >= _FRAME_CHARS:
                        yield frame(rows, READ_SCHEMA)
                        rows, chars = [], 0
                if rows:
                    yield frame(rows, READ_SCHEMA)

    return run


def segment_documents(cfg: SegmentConfig) -> BatchFn:
    """Input: ok documents (doc_id, url, html). Output: one row per section (``udfs.segment.segment_rows``).

    Segmentation yields at least one row per document (``no_header`` when it has none), so
    "already segmented" is a lookup of the doc_id.
    """

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            rows = []
            for doc_id, url, html in zip(batch["doc_id"], batch["url"], batch["html"]):
                rows.extend(segment_rows(doc_id, url, html or "", cfg))
            yield frame(rows, SEGMENT_ROWS_SCHEMA)

    return run


def minhash_signatures(cfg: DedupConfig) -> BatchFn:
    """Input: segment rows (any columns, at least ``text`` and ``status``). Output: the same rows plus the
    MINHASH_SCHEMA columns; signature and band keys only for ok rows whose normalised text has words."""

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            hashes = [
                minhash(text, cfg) if status == "ok" else None for text, status in zip(batch["text"], batch["status"])
            ]
            yield batch.assign(
                minhash=[None if m is None else m.signature.view("int32") for m in hashes],
                minhash_bands=[None if m is None else m.band_keys for m in hashes],
                minhash_scheme=cfg.scheme,
            )

    return run


def backtranslate(
    model_path: str,
    model_id: str,
    engine_cfg: EngineConfig,
    sampling: SamplingConfig,
    template: PromptTemplate,
    max_instruction_chars: int,
) -> BatchFn:
    """Input: (generation_id, segment_id, text). Output: CANDIDATES rows (``udfs.llm_rows.augment_batch``)."""

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in chunks(batches, engine_cfg.batch_size):
            engine = _engine(model_path, model_id, engine_cfg)  # cached: loads once per worker, on the first rows
            yield augment_batch(engine, batch, model_id, template, sampling, engine_cfg, max_instruction_chars)

    return _dropping_engine_on_failure(run)


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

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in chunks(batches, engine_cfg.batch_size):
            yield judge_batch(
                _engine(model_path, model_id, engine_cfg), batch, model_id, template, sampling, engine_cfg, iteration
            )

    return _dropping_engine_on_failure(run)


def token_counter(tokenizer_dir: str):
    """A pandas UDF: the number of tokens of each text under the tokenizer in ``tokenizer_dir`` (the report's
    token lengths). The tokenizer loads once per Python worker."""

    @pandas_udf("int")
    def count(texts: pd.Series) -> pd.Series:
        encoded = _tokenizer(tokenizer_dir)(texts.fillna("").tolist(), add_special_tokens=False)["input_ids"]
        return pd.Series([len(tokens) for tokens in encoded], dtype="int32")

    return count


@functools.lru_cache(maxsize=2)
def _tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _engine(model_path: str, model_id: str, cfg: EngineConfig):
    """This worker's engine, on the GPUs Spark gave this task (when the cluster schedules GPUs)."""
    context = TaskContext.get()
    gpus = context.resources().get("gpu") if context is not None else None
    if gpus is not None and "CUDA_VISIBLE_DEVICES" not in os.environ:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus.addresses)
    return get_engine(model_path, cfg, model_id)


def _dropping_engine_on_failure(run: BatchFn) -> BatchFn:
    """An engine that raised may be dead (CUDA error, OOM): forget it so the retried task builds a new one."""

    def guarded(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        try:
            yield from run(batches)
        except Exception:
            drop_engine()
            raise

    return guarded
