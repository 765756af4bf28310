"""Executor-side batch functions for Spark's ``mapInPandas``: the one place where pure code meets Spark.

Each factory returns a plain function ``Iterator[pd.DataFrame] -> Iterator[pd.DataFrame]`` that closes over
small, picklable config objects, plus the DDL schema of what it yields. LLM functions fetch this worker's
engine from ``udfs.engine.get_engine`` (created once, reused across batches and tasks).
Every input row yields at least one output row with a status, so nothing disappears without a trace.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from dataclasses import dataclass
from typing import Callable, Iterator

import pandas as pd
from pyspark import TaskContext
from pyspark.sql.functions import pandas_udf

from udfs.augment import backward_conversation, clean_instruction
from udfs.curation import SCORE_CONTINUATIONS, expected_score, injection_flags, judge_conversation, parse_score, score_prompt_suffix
from udfs.engine import EngineConfig, SamplingConfig, drop_engine, get_engine
from udfs.ids import seed_from_id, stable_id
from udfs.minhash import DedupConfig, minhash
from udfs.prompts import PromptTemplate
from udfs.readers import RawRecord, ReaderConfig, WorkUnit, read_records
from udfs.filters import normalize_for_dedup
from udfs.segment import SegmentCandidate, SegmentConfig, segment_document

BatchFn = Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]

DOCUMENTS_SCHEMA = (
    "doc_id string, source_path string, offset long, url string, record_id string, fetch_date string, "
    "http_status int, content_type string, content_hash string, html string, status string, reason string, "
    "charset string, charset_source string"
)
# What ``read_units`` yields: documents rows plus the work unit each came from (for the ingest ledger).
READ_SCHEMA = DOCUMENTS_SCHEMA + ", unit_id string"
SEGMENTS_SCHEMA = (
    "segment_id string, doc_id string, url string, section_index int, header_level int, header string, "
    "text string, n_chars int, text_hash string, status string, reason string, "
    "part int, lang string, lang_score double, measurements string"
)
# Added to segments by ``minhash_signatures``: the signature (uint32 values stored bit for bit as int) and band
# keys of an ok segment, and the scheme they follow (set on every row, so a row group written under the current
# scheme is skipped when looking for stale signatures).
MINHASH_SCHEMA = "minhash array<int>, minhash_bands array<bigint>, minhash_scheme string"
CANDIDATES_SCHEMA = (
    "generation_id string, segment_id string, instruction string, raw_text string, finish_reason string, "
    "prompt_tokens int, cached_tokens int, truncated_tokens int, output_tokens int, model_id string, prompt_version string, sampling string, "
    "seed long, status string, reason string"
)
SCORES_SCHEMA = (
    "score_id string, generation_id string, segment_id string, iteration int, judge_model_id string, prompt_version string, "
    "score int, expected_score double, expected_score_failure string, parse_failure string, raw_text string, "
    "finish_reason string, "
    "prompt_tokens int, cached_tokens int, truncated_tokens int, output_tokens int, input_flags string, status string, reason string"
)


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
                    rows.append({**dataclasses.asdict(rec), "doc_id": doc_id(rec), "unit_id": unit})
                    chars += len(rec.html or "")
                    if len(rows) >= _FRAME_ROWS or chars >= _FRAME_CHARS:
                        yield _frame(rows, READ_SCHEMA)
                        rows, chars = [], 0
                if rows:
                    yield _frame(rows, READ_SCHEMA)

    return run


def doc_id(rec: RawRecord) -> str:
    """A document's key: its URL and content, so the same page read twice (or from two files) is one row;
    records without content are keyed by where they are."""
    key = (rec.url, rec.content_hash) if rec.content_hash else (rec.source_path, rec.offset, rec.reason)
    return stable_id("doc", *key)


def segment_documents(cfg: SegmentConfig) -> BatchFn:
    """Input: ok documents (doc_id, url, html). Output: one row per section (SEGMENTS_SCHEMA).

    ``segment_document`` yields at least one row per document (``no_header`` when it has none), so
    "already segmented" is a lookup of the doc_id.
    """

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            rows = []
            for doc_id, url, html in zip(batch["doc_id"], batch["url"], batch["html"]):
                rows.extend(_segment_row(doc_id, url, c) for c in segment_document(html or "", cfg))
            yield _frame(rows, SEGMENTS_SCHEMA)

    return run


def _segment_row(doc_id: str, url: str, c: SegmentCandidate) -> dict:
    # Part 0 keeps the id segments had before sections were split, so earlier tables stay valid.
    key = (doc_id, c.index) if c.part == 0 else (doc_id, c.index, c.part)
    return {
        "segment_id": stable_id("segment", *key),
        "doc_id": doc_id,
        "url": url,
        "section_index": c.index,
        "header_level": c.level,
        "header": c.header,
        "text": c.text,
        "n_chars": len(c.text),
        "text_hash": stable_id("text", normalize_for_dedup(c.text)),
        "status": c.status,
        "reason": c.reason,
        "part": c.part,
        "lang": c.lang,
        "lang_score": c.lang_score,
        "measurements": json.dumps(c.measurements, sort_keys=True),
    }


def minhash_signatures(cfg: DedupConfig) -> BatchFn:
    """Input: segment rows (any columns, at least ``text`` and ``status``). Output: the same rows plus the
    MINHASH_SCHEMA columns; signature and band keys only for ok rows whose normalised text has words."""

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            hashes = [minhash(text, cfg) if status == "ok" else None for text, status in zip(batch["text"], batch["status"])]
            yield batch.assign(
                minhash=[None if m is None else m.signature.view("int32") for m in hashes],
                minhash_bands=[None if m is None else m.band_keys for m in hashes],
                minhash_scheme=cfg.scheme,
            )

    return run


def backtranslate(
    model_path: str, model_id: str, engine_cfg: EngineConfig, sampling: SamplingConfig, template: PromptTemplate, max_instruction_chars: int
) -> BatchFn:
    """Input: (generation_id, segment_id, text). Output: CANDIDATES_SCHEMA rows, one per input row, in order."""
    sampling_json = _json(sampling)

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in _chunks(batches, engine_cfg.batch_size):
            engine = _engine(model_path, model_id, engine_cfg)  # cached: loads once per worker, on the first rows
            fits = [_fit_prompt(engine, lambda t: backward_conversation(template, t), text, sampling, engine_cfg) for text in batch["text"]]
            seeds = [seed_from_id(g) for g in batch["generation_id"]]
            completions = _generate(engine, fits, seeds, sampling)
            rows = []
            for i, (gen_id, seg_id) in enumerate(zip(batch["generation_id"], batch["segment_id"])):
                row = {"generation_id": gen_id, "segment_id": seg_id, "model_id": model_id, "prompt_version": template.version,
                       "sampling": sampling_json, "seed": seeds[i], "prompt_tokens": fits[i].n_tokens,
                       "truncated_tokens": fits[i].truncated_tokens}
                if fits[i].prompt is None:
                    rows.append({**row, "status": "dropped", "reason": "prompt_too_long"})
                    continue
                out = completions[i]
                cleaned = clean_instruction(out.text, out.finish_reason, max_instruction_chars)
                rows.append({**row, "instruction": cleaned.text, "raw_text": out.text, "finish_reason": out.finish_reason,
                             "output_tokens": out.output_tokens, "cached_tokens": out.cached_tokens,
                             "status": cleaned.status, "reason": cleaned.reason})
            yield _frame(rows, CANDIDATES_SCHEMA)

    return _dropping_engine_on_failure(run)


def judge(
    model_path: str, model_id: str, engine_cfg: EngineConfig, sampling: SamplingConfig, template: PromptTemplate, iteration: int | None = None
) -> BatchFn:
    """Input: (score_id, generation_id, segment_id, instruction, text). Output: SCORES_SCHEMA rows, in order,
    labelled with the self-training ``iteration`` whose judge this is (None: outside the loop, e.g. calibration).

    Two reads of the judge per pair: its written reasoning and "Score: N" (parsed), then the probabilities
    of the ratings 1-5 stated right after "Score:" (expected score, or the reason it has none).
    """

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in _chunks(batches, engine_cfg.batch_size):
            engine = _engine(model_path, model_id, engine_cfg)
            pairs = list(zip(batch["instruction"], batch["text"]))
            fits = [_fit_prompt(engine, lambda a, ins=ins: judge_conversation(template, ins, a), ans, sampling, engine_cfg) for ins, ans in pairs]
            seeds = [seed_from_id(s) for s in batch["score_id"]]
            completions = _generate(engine, fits, seeds, sampling)
            expected = _expected_scores(engine, {i: fits[i].prompt + score_prompt_suffix(c.text) for i, c in completions.items()})
            rows = []
            for i, (score_id, gen_id, seg_id) in enumerate(zip(batch["score_id"], batch["generation_id"], batch["segment_id"])):
                flags = injection_flags(pairs[i][1])
                row = {"score_id": score_id, "generation_id": gen_id, "segment_id": seg_id, "iteration": iteration, "judge_model_id": model_id,
                       "prompt_version": template.version, "prompt_tokens": fits[i].n_tokens,
                       "truncated_tokens": fits[i].truncated_tokens, "input_flags": ",".join(flags) or None}
                if fits[i].prompt is None:
                    rows.append({**row, "status": "dropped", "reason": "prompt_too_long"})
                    continue
                out = completions[i]
                parsed = parse_score(out.text, out.finish_reason, quoted=pairs[i])
                rows.append({**row, "score": parsed.score, "expected_score": expected[i].value,
                             "expected_score_failure": expected[i].failure, "parse_failure": parsed.failure,
                             "raw_text": out.text, "finish_reason": out.finish_reason, "output_tokens": out.output_tokens,
                             "cached_tokens": out.cached_tokens, "status": "ok", "reason": None})
            yield _frame(rows, SCORES_SCHEMA)

    return _dropping_engine_on_failure(run)


def token_counter(tokenizer_dir: str):
    """A pandas UDF: the number of tokens of each text under the tokenizer in ``tokenizer_dir`` (the report's
    token lengths). The tokenizer loads once per Python worker."""

    @pandas_udf("int")
    def count(texts: pd.Series) -> pd.Series:
        encoded = _tokenizer(tokenizer_dir)(texts.fillna("").tolist(), add_special_tokens=False)["input_ids"]
        return pd.Series([len(ids) for ids in encoded], dtype="int32")

    return count


@functools.lru_cache(maxsize=2)
def _tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


@dataclass(frozen=True)
class _Fit:
    prompt: str | None  # None: does not fit even after truncation (or truncation is off)
    n_tokens: int
    truncated_tokens: int | None  # tokens cut from the end of the web text to fit, when any


def _fit_prompt(engine, conversation, text: str, sampling: SamplingConfig, cfg: EngineConfig) -> _Fit:
    """Render ``conversation(text)`` so that prompt + max_tokens fits the context window.

    With ``cfg.overflow == "truncate"`` the web text (never the template) is cut at a token boundary and the
    cut is recorded; with "drop" the row is reported as too long. A long row never fails its batch.
    """
    budget = cfg.max_model_len - sampling.max_tokens
    prompt = engine.render_chat(conversation(text))
    n = engine.count_tokens([prompt])[0]
    if n <= budget:
        return _Fit(prompt, n, None)
    if cfg.overflow == "drop":
        return _Fit(None, n, None)
    tokens = engine.count_tokens([text])[0]
    keep = tokens - (n - budget) - 8  # a few tokens of slack: re-tokenising at the cut can merge differently
    if keep > 0:
        prompt = engine.render_chat(conversation(engine.truncate(text, keep)))
        n_cut = engine.count_tokens([prompt])[0]
        if n_cut <= budget:
            return _Fit(prompt, n_cut, tokens - keep)
    return _Fit(None, n, None)


def _generate(engine, fits: list[_Fit], seeds: list[int], sampling: SamplingConfig) -> dict:
    """Completions by row index for the rows whose prompt fits; the others are reported, never sent."""
    idx = [i for i, f in enumerate(fits) if f.prompt is not None]
    outs = engine.generate([fits[i].prompt for i in idx], sampling, [seeds[i] for i in idx]) if idx else []
    return dict(zip(idx, outs))


def _expected_scores(engine, prompts: dict) -> dict:
    """ExpectedScore by row index: a value, or the failure kind of a row that cannot have one."""
    if not prompts:  # every row of the batch was too long: nothing to ask
        return {}
    logprobs = engine.continuation_logprobs(list(prompts.values()), list(SCORE_CONTINUATIONS))
    return {i: expected_score(lp) for i, lp in zip(prompts, logprobs)}


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
