"""Likelihood scores of (instruction, answer) pairs, the pure part: Superfiltering's IFD and its two losses.

*Superfiltering* (Li et al., ACL 2024) rates instruction data with a small model's Instruction-Following
Difficulty, IFD = loss(answer | instruction) / loss(answer alone): the share of the answer's surprise the
instruction leaves unexplained. Here a backtranslated instruction that fits its segment explains much of it
(low IFD, low conditional loss); a mismatched or garbled pair explains nothing (IFD near or above 1). Each
loss is one prefill (prompt log-probabilities, no generation) of the scorer model, zero-shot.

Both prompts are the scorer's chat template with the answer as the assistant's turn (``FORMAT_VERSION``):
the conditional one has the instruction as the user's turn, the unconditional one an empty user turn, so the
answer's tokens are the same ids in both and only the instruction differs. The answer is encoded on its own
after the prompt, as training encodes it (``training.data.encode``). A pair that does not fit the scorer's
context is ``dropped: prompt_too_long``, never truncated: a loss over part of the answer would not compare.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from udfs.engine import LLMEngine
from udfs.llm_rows import frame
from udfs.tables import LIKELIHOODS

# Part of every likelihood id: a change to how the prompts are built ships as a new version.
FORMAT_VERSION = "ifd_chat_v1"
# Lower is better for both: the curation rule keeps pairs at or below k (``udfs.curation.LOWER_IS_BETTER``).
LIKELIHOOD_COLUMNS = ("ifd", "conditional_loss")


@dataclass(frozen=True)
class LikelihoodConfig:
    """The likelihood stage: IFD and the conditional loss of every candidate pair under a scorer model."""

    enabled: bool = False  # true: run the likelihood stage (IFD, conditional loss) once per pool
    # A Hugging Face model directory (e.g. a small model on clusters: Superfiltering used GPT-2);
    # null: the base model (models.base, the instruct model the pipeline fine-tunes), zero-shot.
    model: str | None = None


@dataclass(frozen=True)
class Losses:
    conditional_loss: float  # mean negative log-likelihood per answer token, given the instruction (nats)
    answer_loss: float  # the same with no instruction
    ifd: float | None  # conditional_loss / answer_loss; None when the answer costs nothing without it


def mean_loss(logprobs: Sequence[float]) -> float:
    """Mean negative log-probability per token (the cross-entropy training reports)."""
    if not logprobs:
        raise ValueError("no tokens to average")
    return -sum(logprobs) / len(logprobs)


def losses(conditional: Sequence[float], unconditional: Sequence[float]) -> Losses:
    """The pair's losses from the per-token log-probabilities of its answer with and without the instruction."""
    if len(conditional) != len(unconditional):
        raise ValueError(f"{len(conditional)} answer tokens with the instruction but {len(unconditional)} without")
    cond, alone = mean_loss(conditional), mean_loss(unconditional)
    return Losses(cond, alone, cond / alone if alone > 0 else None)


def likelihood_prompts(engine: LLMEngine, instruction: str) -> tuple[str, str]:
    """The conditional and the unconditional prompt (each ends with the assistant's turn opening)."""
    return (
        engine.render_chat([{"role": "user", "content": instruction}]),
        engine.render_chat([{"role": "user", "content": ""}]),
    )


def likelihood_batch(engine: LLMEngine, batch: pd.DataFrame, scorer_model_id: str, source: str) -> pd.DataFrame:
    """(likelihood_id, generation_id, segment_id, instruction, text) rows -> ``LIKELIHOODS`` rows, one per input
    row, in order. ``source`` says what the rows are: ``pool`` (candidates) or ``labels`` (the labelled file,
    keyed by label id)."""
    prompts = [likelihood_prompts(engine, ins) for ins in batch["instruction"]]
    answers = list(batch["text"])
    # One engine call for both prompts of every pair: the scheduler sees the whole batch at once.
    logprobs = engine.answer_logprobs([c for c, _ in prompts] + [u for _, u in prompts], answers + answers)
    n = len(answers)
    rows = []
    for i, (lid, gen_id, seg_id) in enumerate(zip(batch["likelihood_id"], batch["generation_id"], batch["segment_id"])):
        cond, alone = logprobs[i], logprobs[n + i]
        row = {
            "likelihood_id": lid,
            "generation_id": gen_id,
            "segment_id": seg_id,
            "source": source,
            "scorer_model_id": scorer_model_id,
            "format_version": FORMAT_VERSION,
            "context_tokens": engine.count_tokens([prompts[i][0]])[0],
            "answer_tokens": len(cond) if isinstance(cond, list) else None,
        }
        unscored = {**row, "conditional_loss": None, "answer_loss": None, "ifd": None}
        failure = next((lp for lp in (cond, alone) if isinstance(lp, str)), None)
        if failure is not None:  # the engine could not score it (a remote endpoint): the row says why
            rows.append({**unscored, "status": "error", "reason": failure})
        elif cond is None or alone is None:
            rows.append({**unscored, "status": "dropped", "reason": "prompt_too_long"})
        elif not cond or not alone:
            rows.append({**unscored, "status": "dropped", "reason": "empty_answer"})
        elif not all(math.isfinite(v) for v in (*cond, *alone)):
            rows.append({**unscored, "status": "error", "reason": "non_finite_logprob"})
        else:
            scored = losses(cond, alone)
            rows.append(
                {
                    **row,
                    "conditional_loss": scored.conditional_loss,
                    "answer_loss": scored.answer_loss,
                    "ifd": scored.ifd,
                    "status": "ok",
                    "reason": None,
                }
            )
    return frame(rows, LIKELIHOODS.schema)
