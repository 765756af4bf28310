"""Executor-side batch functions for Spark's ``mapInPandas``: the one place where pure code meets Spark.

Each factory returns a plain function ``Iterator[pd.DataFrame] -> Iterator[pd.DataFrame]`` that closes over
small, picklable config objects, plus the DDL schema of what it yields. LLM functions fetch this worker's
engine from ``udfs.engine.get_engine`` (created once, reused across batches and tasks).
Every input row yields at least one output row with a status, so nothing disappears without a trace.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Callable, Iterator

import pandas as pd

from udfs.augment import backward_conversation, clean_instruction
from udfs.curation import SCORE_TOKENS, expected_score, judge_conversation, parse_score, score_prompt_suffix
from udfs.engine import EngineConfig, SamplingConfig, get_engine
from udfs.ids import seed_from_id, stable_id
from udfs.prompts import PromptTemplate
from udfs.readers import read_records
from udfs.filters import normalize_for_dedup
from udfs.segment import SegmentConfig, segment_document

BatchFn = Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]

DOCUMENTS_SCHEMA = (
    "doc_id string, source_path string, offset long, url string, record_id string, fetch_date string, "
    "http_status int, content_type string, content_hash string, html string, status string, reason string"
)
SEGMENTS_SCHEMA = (
    "segment_id string, doc_id string, url string, section_index int, header_level int, header string, "
    "text string, n_chars int, text_hash string, status string, reason string"
)
CANDIDATES_SCHEMA = (
    "generation_id string, segment_id string, instruction string, raw_text string, finish_reason string, "
    "prompt_tokens int, output_tokens int, model_id string, prompt_version string, sampling string, seed long, "
    "status string, reason string"
)
SCORES_SCHEMA = (
    "score_id string, generation_id string, segment_id string, judge_model_id string, prompt_version string, "
    "score int, expected_score double, parse_failure string, raw_text string, finish_reason string, "
    "prompt_tokens int, output_tokens int, status string, reason string"
)


def read_files() -> BatchFn:
    """Input: ``path`` column (one file per row). Output: one documents row per record (DOCUMENTS_SCHEMA)."""

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            for path in batch["path"]:
                rows = []
                for rec in read_records(path):
                    row = dataclasses.asdict(rec)
                    key = (rec.url, rec.content_hash) if rec.content_hash else (rec.source_path, rec.offset, rec.reason)
                    row["doc_id"] = stable_id("doc", *key)
                    rows.append(row)
                if rows:
                    yield _frame(rows, DOCUMENTS_SCHEMA)

    return run


def segment_documents(cfg: SegmentConfig) -> BatchFn:
    """Input: ok documents (doc_id, url, html). Output: one row per section (SEGMENTS_SCHEMA).

    ``segment_document`` yields at least one row per document (``no_header`` when it has none), so
    "already segmented" is a lookup of the doc_id.
    """

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            rows = []
            for doc_id, url, html in zip(batch["doc_id"], batch["url"], batch["html"]):
                for c in segment_document(html or "", cfg):
                    rows.append(_segment_row(doc_id, url, c.index, c.level, c.header, c.text, c.status, c.reason))
            yield _frame(rows, SEGMENTS_SCHEMA)

    return run


def _segment_row(doc_id, url, index, level, header, text, status, reason) -> dict:
    return {
        "segment_id": stable_id("segment", doc_id, index),
        "doc_id": doc_id,
        "url": url,
        "section_index": index,
        "header_level": level,
        "header": header,
        "text": text,
        "n_chars": len(text),
        "text_hash": stable_id("text", normalize_for_dedup(text)),
        "status": status,
        "reason": reason,
    }


def backtranslate(
    model_path: str, model_id: str, engine_cfg: EngineConfig, sampling: SamplingConfig, template: PromptTemplate, max_instruction_chars: int
) -> BatchFn:
    """Input: (generation_id, segment_id, text). Output: CANDIDATES_SCHEMA rows, one per input row."""
    sampling_json = _json(sampling)

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in _chunks(batches, engine_cfg.batch_size):
            engine = get_engine(model_path, engine_cfg)  # cached: loads once per worker, on the first rows
            prompts = [engine.render_chat(backward_conversation(template, text)) for text in batch["text"]]
            seeds = [seed_from_id(g) for g in batch["generation_id"]]
            fits, completions, n_tokens = _generate_fitting(engine, prompts, seeds, sampling, engine_cfg.max_model_len)
            rows = []
            for i, (gen_id, seg_id) in enumerate(zip(batch["generation_id"], batch["segment_id"])):
                row = {"generation_id": gen_id, "segment_id": seg_id, "model_id": model_id, "prompt_version": template.version,
                       "sampling": sampling_json, "seed": seeds[i], "prompt_tokens": n_tokens[i]}
                if not fits[i]:
                    rows.append({**row, "status": "dropped", "reason": "prompt_too_long"})
                    continue
                out = completions[i]
                cleaned = clean_instruction(out.text, out.finish_reason, max_instruction_chars)
                rows.append({**row, "instruction": cleaned.text, "raw_text": out.text, "finish_reason": out.finish_reason,
                             "output_tokens": out.output_tokens, "status": cleaned.status, "reason": cleaned.reason})
            yield _frame(rows, CANDIDATES_SCHEMA)

    return run


def judge(model_path: str, model_id: str, engine_cfg: EngineConfig, sampling: SamplingConfig, template: PromptTemplate) -> BatchFn:
    """Input: (score_id, generation_id, segment_id, instruction, text). Output: SCORES_SCHEMA rows.

    Two reads of the judge per pair: its written reasoning and "Score: N" (parsed), then the probabilities
    of "1".."5" right after "Score:" (expected score), which gives every judged row a score.
    """

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in _chunks(batches, engine_cfg.batch_size):
            engine = get_engine(model_path, engine_cfg)
            pairs = list(zip(batch["instruction"], batch["text"]))
            prompts = [engine.render_chat(judge_conversation(template, ins, ans)) for ins, ans in pairs]
            seeds = [seed_from_id(s) for s in batch["score_id"]]
            fits, completions, n_tokens = _generate_fitting(engine, prompts, seeds, sampling, engine_cfg.max_model_len)
            ok = [i for i, f in enumerate(fits) if f]
            followups = [prompts[i] + score_prompt_suffix(completions[i].text) for i in ok]
            # The follow-up prompt may exceed the context when the reasoning was long: score those as missing.
            follow_fits = [n < engine_cfg.max_model_len for n in engine.count_tokens(followups)]
            logprobs = iter(engine.next_token_logprobs([p for p, f in zip(followups, follow_fits) if f], SCORE_TOKENS))
            expected = {i: (expected_score(next(logprobs)) if f else None) for i, f in zip(ok, follow_fits)}
            rows = []
            for i, (score_id, gen_id, seg_id) in enumerate(zip(batch["score_id"], batch["generation_id"], batch["segment_id"])):
                row = {"score_id": score_id, "generation_id": gen_id, "segment_id": seg_id, "judge_model_id": model_id,
                       "prompt_version": template.version, "prompt_tokens": n_tokens[i]}
                if not fits[i]:
                    rows.append({**row, "status": "dropped", "reason": "prompt_too_long"})
                    continue
                out = completions[i]
                parsed = parse_score(out.text, out.finish_reason, quoted=pairs[i])
                rows.append({**row, "score": parsed.score, "expected_score": expected[i], "parse_failure": parsed.failure,
                             "raw_text": out.text, "finish_reason": out.finish_reason, "output_tokens": out.output_tokens,
                             "status": "ok", "reason": None})
            yield _frame(rows, SCORES_SCHEMA)

    return run


def _generate_fitting(engine, prompts, seeds, sampling: SamplingConfig, max_model_len: int):
    """Generate for the prompts that fit the context window; the others are reported, never sent."""
    n_tokens = engine.count_tokens(prompts)
    fits = [n + sampling.max_tokens <= max_model_len for n in n_tokens]
    idx = [i for i, f in enumerate(fits) if f]
    outs = engine.generate([prompts[i] for i in idx], sampling, [seeds[i] for i in idx]) if idx else []
    return fits, dict(zip(idx, outs)), n_tokens


def _chunks(batches: Iterator[pd.DataFrame], size: int) -> Iterator[pd.DataFrame]:
    """Re-cut Arrow batches into engine-sized chunks (bigger batches keep vLLM's scheduler full)."""
    pending: list[pd.DataFrame] = []
    n = 0
    for batch in batches:
        pending.append(batch)
        n += len(batch)
        while n >= size:
            whole = pd.concat(pending, ignore_index=True)
            yield whole.iloc[:size].reset_index(drop=True)
            pending, n = [whole.iloc[size:]], n - size
    if n:
        yield pd.concat(pending, ignore_index=True)


def _frame(rows: list[dict], schema: str) -> pd.DataFrame:
    columns = [c.split()[0] for c in schema.split(", ")]
    types = {c.split()[0]: c.split()[1] for c in schema.split(", ")}
    frame = pd.DataFrame(rows, columns=columns)
    ints = {"int": "Int32", "long": "Int64"}
    return frame.astype({c: ints[t] for c, t in types.items() if t in ints})


def _json(obj) -> str:
    return json.dumps(dataclasses.asdict(obj), sort_keys=True)
