"""The LLM stages' row logic, pure: preprocess (fit each prompt) -> engine -> postprocess (one row per input row).

The batch pattern of vLLM's offline examples, over the ``udfs.engine.LLMEngine`` interface only, so the same
code runs on vLLM in Spark (``udfs.spark_udfs`` wraps these functions) and on ``udfs.fake_engine`` in unit
tests. Every input row yields exactly one output row, in order, with a status: a prompt that cannot fit the
context window is ``dropped: prompt_too_long``, never sent and never a failed batch; a completion the engine
could not make (a remote request that failed for good) is an ``error`` row with the engine's reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Iterator

import pandas as pd

from udfs.augment import backward_conversation, clean_instruction
from udfs.curation import (
    SCORE_CONTINUATIONS,
    ExpectedScore,
    expected_score,
    injection_flags,
    judge_conversation,
    parse_score,
    score_prompt_suffix,
)
from udfs.decontam import Decontamination
from udfs.engine import Completion, EngineConfig, LLMEngine, SamplingConfig
from udfs.ids import seed_from_id
from udfs.prompts import PromptTemplate
from udfs.rewrite import ANSWER_PREFIX, RewriteSettings, faithfulness, parse_answer, rewrite_conversation
from udfs.tables import CANDIDATES, REWRITES, SCORES, ddl_columns, ddl_types


PROMPT_TOO_LONG = {"status": "dropped", "reason": "prompt_too_long"}
NOT_SCORED = dict.fromkeys(("score", "expected_score", "expected_score_failure", "parse_failure"))
NOT_MEASURED = dict.fromkeys(("faithfulness", "new_numbers", "n_new_numbers", "new_entities", "n_new_entities"))


def generation_fields(model_id: str, template: PromptTemplate, sampling_json: str, seed: int, fit) -> dict:
    """The columns every generated row shares: who generated it, how, and its prompt's token counts."""
    return {
        "model_id": model_id,
        "prompt_version": template.version,
        "sampling": sampling_json,
        "seed": seed,
        "prompt_tokens": fit.n_tokens,
        "truncated_tokens": fit.truncated_tokens,
    }


def completion_fields(out: Completion | None) -> dict:
    """The columns every generated row takes from its completion; null for a prompt that was never sent."""
    return {
        "raw_text": out and out.text,
        "finish_reason": out and out.finish_reason,
        "output_tokens": out and out.output_tokens,
        "cached_tokens": out and out.cached_tokens,
    }


def augment_batch(
    engine: LLMEngine,
    batch: pd.DataFrame,
    model_id: str,
    template: PromptTemplate,
    sampling: SamplingConfig,
    engine_cfg: EngineConfig,
    max_instruction_chars: int,
    decontamination: Decontamination = Decontamination(),
) -> pd.DataFrame:
    """Backtranslation of (generation_id, segment_id, text) rows: M_yx writes the instruction each segment answers.
    Output: ``udfs.tables.CANDIDATES`` rows, one per input row, in order. An instruction that contains an
    evaluation prompt of ``decontamination`` is dropped as ``eval_overlap:<set>`` (and kept as the evidence)."""
    sampling_json = json.dumps(sampling.as_dict(), sort_keys=True)
    fits = [
        fit_prompt(engine, lambda t: backward_conversation(template, t), text, sampling, engine_cfg)
        for text in batch["text"]
    ]
    seeds = [seed_from_id(g) for g in batch["generation_id"]]
    completions = generate(engine, fits, seeds, sampling)
    rows = []
    for i, (gen_id, seg_id) in enumerate(zip(batch["generation_id"], batch["segment_id"])):
        row = {
            "generation_id": gen_id,
            "segment_id": seg_id,
            **generation_fields(model_id, template, sampling_json, seeds[i], fits[i]),
        }
        if fits[i].prompt is None:
            rows.append({**row, **completion_fields(None), "instruction": None, **PROMPT_TOO_LONG})
            continue
        out = completions[i]
        if out.error is not None:
            rows.append({**row, **completion_fields(None), "instruction": None, "status": "error", "reason": out.error})
            continue
        cleaned = clean_instruction(out.text, out.finish_reason, max_instruction_chars)
        status, reason = cleaned.status, cleaned.reason
        if status == "ok" and (overlap := decontamination.reason(cleaned.text)):
            status, reason = "dropped", overlap
        rows.append({**row, **completion_fields(out), "instruction": cleaned.text, "status": status, "reason": reason})
    return frame(rows, CANDIDATES.schema)


def judge_batch(
    engine: LLMEngine,
    batch: pd.DataFrame,
    model_id: str,
    template: PromptTemplate,
    sampling: SamplingConfig,
    engine_cfg: EngineConfig,
    iteration: int | None = None,
) -> pd.DataFrame:
    """Self-curation of (score_id, generation_id, segment_id, instruction, text) rows by the judge ``model_id``.
    Output: ``udfs.tables.SCORES`` rows, one per input row, in order, labelled with the self-training
    ``iteration`` whose judge this is (None: outside the loop, e.g. calibration).

    Two reads of the judge per pair: its written reasoning and "Score: N" (parsed), then the probabilities
    of the ratings 1-5 stated right after "Score:" (expected score, or the reason it has none).
    """
    pairs = list(zip(batch["instruction"], batch["text"]))
    fits = [
        fit_prompt(engine, lambda a, ins=ins: judge_conversation(template, ins, a), ans, sampling, engine_cfg)
        for ins, ans in pairs
    ]
    seeds = [seed_from_id(s) for s in batch["score_id"]]
    completions = generate(engine, fits, seeds, sampling)
    expected = expected_scores(
        engine, {i: fits[i].prompt + score_prompt_suffix(c.text) for i, c in completions.items() if c.error is None}
    )
    rows = []
    for i, (score_id, gen_id, seg_id) in enumerate(zip(batch["score_id"], batch["generation_id"], batch["segment_id"])):
        flags = injection_flags(pairs[i][1])
        row = {
            "score_id": score_id,
            "generation_id": gen_id,
            "segment_id": seg_id,
            "iteration": iteration,
            "judge_model_id": model_id,
            "prompt_version": template.version,
            "prompt_tokens": fits[i].n_tokens,
            "truncated_tokens": fits[i].truncated_tokens,
            "input_flags": ",".join(flags) or None,
            "cascade_probability": None,  # the cascade's, set by its wrapper (udfs.spark_udfs)
        }
        if fits[i].prompt is None:
            rows.append({**row, **completion_fields(None), **NOT_SCORED, **PROMPT_TOO_LONG})
            continue
        out = completions[i]
        if out.error is not None:
            rows.append({**row, **completion_fields(None), **NOT_SCORED, "status": "error", "reason": out.error})
            continue
        parsed = parse_score(out.text, out.finish_reason, quoted=pairs[i])
        rows.append(
            {
                **row,
                **completion_fields(out),
                "score": parsed.score,
                "expected_score": expected[i].value,
                "expected_score_failure": expected[i].failure,
                "parse_failure": parsed.failure,
                "status": "ok",
                "reason": None,
            }
        )
    return frame(rows, SCORES.schema)


def rewrite_batch(
    engine: LLMEngine,
    batch: pd.DataFrame,
    model_id: str,
    template: PromptTemplate,
    sampling: SamplingConfig,
    engine_cfg: EngineConfig,
    settings: RewriteSettings,
) -> pd.DataFrame:
    """Rewriting of curated (rewrite_id, generation_id, segment_id, instruction, text) rows into answers by the
    rewriter ``model_id``. Output: ``udfs.tables.REWRITES`` rows, one per input row, in order.

    The prompt ends inside the answer (``udfs.rewrite.ANSWER_PREFIX``); the answer is parsed out of the
    markers and measured against the whole segment, and one below ``settings.min_faithfulness`` is kept with
    its figures as ``dropped: unfaithful_rewrite``.
    """
    sampling_json = json.dumps(sampling.as_dict(), sort_keys=True)
    pairs = list(zip(batch["instruction"], batch["text"]))
    fits = [
        fit_prompt(
            engine,
            lambda t, ins=ins: rewrite_conversation(template, ins, t),
            text,
            sampling,
            engine_cfg,
            suffix=ANSWER_PREFIX,
        )
        for ins, text in pairs
    ]
    seeds = [seed_from_id(r) for r in batch["rewrite_id"]]
    completions = generate(engine, fits, seeds, sampling)
    rows = []
    for i, (rewrite_id, gen_id, seg_id) in enumerate(
        zip(batch["rewrite_id"], batch["generation_id"], batch["segment_id"])
    ):
        row = {
            "rewrite_id": rewrite_id,
            "generation_id": gen_id,
            "segment_id": seg_id,
            **generation_fields(model_id, template, sampling_json, seeds[i], fits[i]),
            "min_faithfulness": settings.min_faithfulness,
        }
        if fits[i].prompt is None:
            unsent = {**completion_fields(None), "answer": None, "answer_end": None, **NOT_MEASURED}
            rows.append({**row, **unsent, **PROMPT_TOO_LONG})
            continue
        out = completions[i]
        if out.error is not None:
            unanswered = {**completion_fields(None), "answer": None, "answer_end": None, **NOT_MEASURED}
            rows.append({**row, **unanswered, "status": "error", "reason": out.error})
            continue
        parsed = parse_answer(out.text, out.finish_reason, settings.require_end_marker)
        row |= {**completion_fields(out), "answer": parsed.answer, "answer_end": parsed.end}
        if parsed.failure is not None:
            rows.append({**row, **NOT_MEASURED, "status": "dropped", "reason": parsed.failure})
            continue
        measured = faithfulness(parsed.answer, pairs[i][1], settings.ngram)
        faithful = measured.ngram_overlap >= settings.min_faithfulness
        rows.append(
            {
                **row,
                "faithfulness": measured.ngram_overlap,
                "new_numbers": json.dumps(list(measured.new_numbers)),
                "n_new_numbers": len(measured.new_numbers),
                "new_entities": json.dumps(list(measured.new_entities)),
                "n_new_entities": len(measured.new_entities),
                "status": "ok" if faithful else "dropped",
                "reason": None if faithful else "unfaithful_rewrite",
            }
        )
    return frame(rows, REWRITES.schema)


@dataclass(frozen=True)
class Fit:
    prompt: str | None  # None: does not fit even after truncation (or truncation is off)
    n_tokens: int
    truncated_tokens: int | None  # tokens cut from the end of the web text to fit, when any


def fit_prompt(
    engine: LLMEngine,
    conversation: Callable[[str], list[dict[str, str]]],
    text: str,
    sampling: SamplingConfig,
    cfg: EngineConfig,
    suffix: str = "",
) -> Fit:
    """Render ``conversation(text)`` (followed by ``suffix``: the start of the assistant's answer, when the
    prompt gives it) so that prompt + max_tokens fits the context window.

    With ``cfg.overflow == "truncate"`` the web text (never the template) is cut at a token boundary and the
    cut is recorded; with "drop" the row is reported as too long. A long row never fails its batch.
    """
    budget = cfg.max_model_len - sampling.max_tokens
    prompt = engine.render_chat(conversation(text)) + suffix
    n = engine.count_tokens([prompt])[0]
    if n <= budget:
        return Fit(prompt, n, None)
    if cfg.overflow == "drop":
        return Fit(None, n, None)
    tokens = engine.count_tokens([text])[0]
    keep = tokens - (n - budget) - 8  # a few tokens of slack: re-tokenising at the cut can merge differently
    if keep > 0:
        prompt = engine.render_chat(conversation(engine.truncate(text, keep))) + suffix
        n_cut = engine.count_tokens([prompt])[0]
        if n_cut <= budget:
            return Fit(prompt, n_cut, tokens - keep)
    return Fit(None, n, None)


def generate(engine: LLMEngine, fits: list[Fit], seeds: list[int], sampling: SamplingConfig) -> dict[int, Completion]:
    """Completions by row index for the rows whose prompt fits; the others are reported, never sent."""
    idx = [i for i, f in enumerate(fits) if f.prompt is not None]
    outs = engine.generate([fits[i].prompt for i in idx], sampling, [seeds[i] for i in idx]) if idx else []
    return dict(zip(idx, outs))


def expected_scores(engine: LLMEngine, prompts: dict[int, str]) -> dict[int, ExpectedScore]:
    """ExpectedScore by row index: a value, or the failure kind of a row that cannot have one (the engine
    answers None for a prompt whose rating continuations do not fit its context, a failure kind when it could
    not score the prompt)."""
    if not prompts:  # every row of the batch was too long: nothing to ask
        return {}
    logprobs = engine.continuation_logprobs(list(prompts.values()), list(SCORE_CONTINUATIONS))
    return {i: expected_score(lp) for i, lp in zip(prompts, logprobs)}


def chunks(batches: Iterator[pd.DataFrame], size: int) -> Iterator[pd.DataFrame]:
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


class RowShapeError(ValueError):
    """A row builder set a key its table does not have, or left out a column: a programming error."""


def frame(rows: list[dict], schema: str) -> pd.DataFrame:
    """``rows`` as a frame with the columns of ``schema``, in order, integers nullable.

    Every row sets every column of ``schema`` and nothing else (None where a value does not apply), or
    ``RowShapeError`` names the keys: a key the table lacks would be dropped and a column no builder sets
    filled with null, silently. A string column whose every value is None would come out float64 NaN, which
    Arrow cannot cast to string (a batch whose every rewrite was truncated): string columns are kept as
    objects with None."""
    ints = {"int": "Int32", "long": "Int64"}
    columns = ddl_columns(schema)
    expected = set(columns)
    for row in rows:
        if row.keys() != expected:
            unknown, missing = sorted(row.keys() - expected), sorted(expected - row.keys())
            raise RowShapeError(
                f"a row does not have the table's columns: keys not in the schema {unknown}, "
                f"columns the row does not set {missing} (schema: {schema})"
            )
    df = pd.DataFrame(rows, columns=columns)
    types = ddl_types(schema)
    for c in (c for c, t in types.items() if t == "string"):
        df[c] = df[c].astype(object).where(df[c].notna(), None)
    return df.astype({c: ints[t] for c, t in types.items() if t in ints})
