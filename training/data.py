"""Training examples: seed pairs (JSONL) plus self-curated pairs (a query over the Delta tables), and their
rendering into token ids with the loss on the answer only.

The curated set is the paper's A_k: candidates with status ok, of segments with status ok, whose score by
the judge is at least k; the instruction is the generated one and the output is the web segment.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from training.artifacts import sha256_texts
from training.config import AugmentedData, TrainConfig, parse_timestamp
from udfs.curation import RULE_COLUMNS, passes
from udfs.prompts import CONF_DIR, PromptTemplate, encode_prompt, messages, render_chat

IGNORE_INDEX = -100  # label of tokens that carry no loss (prompt and padding); torch's cross-entropy default


@dataclass(frozen=True)
class Example:
    system: str | None
    instruction: str
    output: str
    source: str  # "seed" or "augmented"
    score_id: str | None = None  # augmented: the scores row that curated it (lineage); seed: None


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX on prompt tokens


def load_examples(cfg: TrainConfig) -> tuple[list[Example], dict[str, Any]]:
    """Seed then curated examples, and their provenance (paths, Delta versions read, counts, sha256)."""
    seed_path = resolve(cfg.seed.path)
    examples = read_seed(seed_path, cfg.seed.system_prompt)
    provenance: dict[str, Any] = {"seed": {"path": str(seed_path), "rows": len(examples)}}
    if cfg.augmented.enabled:
        curated, tables = read_curated(cfg.augmented)
        examples += curated
        provenance["augmented"] = {"tables": tables, "rows": len(curated)}
    provenance["examples_by_source"] = dict(Counter(e.source for e in examples))
    provenance["sha256"] = examples_sha256(examples)
    return examples, provenance


def examples_sha256(examples: Sequence[Example]) -> str:
    """The training set's content hash: what each example says (system, instruction, output, source), in order."""
    return sha256_texts(json.dumps([e.system, e.instruction, e.output, e.source]) for e in examples)


def resolve(path: str) -> Path:
    """A path as given if it exists, else relative to the project root (as conf paths are)."""
    given = Path(path)
    return given if given.is_absolute() or given.exists() else CONF_DIR.parent / given


def read_seed(path: Path, system_prompt: str) -> list[Example]:
    examples = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not (isinstance(row.get("instruction"), str) and isinstance(row.get("output"), str)):
                raise ValueError(f"{path}:{number}: needs string fields 'instruction' and 'output'")
            examples.append(Example(system_prompt, row["instruction"], row["output"], "seed"))
    return examples


def read_curated(aug: AugmentedData) -> tuple[list[Example], dict[str, Any]]:
    """Curated pairs from the Delta tables at the configured versions (or as of a time), and what was read."""
    from deltalake import DeltaTable  # only runs that use augmented data need the Delta reader

    as_of = parse_timestamp(aug.as_of) if aug.as_of is not None else None

    columns = {
        "segments": ["segment_id", "text", "status"],
        "candidates": ["generation_id", "segment_id", "instruction", "status"],
        "scores": ["score_id", "generation_id", "judge_model_id", *RULE_COLUMNS[aug.score_column], "status"],
    }
    frames, tables = {}, {}
    for name, cols in columns.items():
        path = getattr(aug, f"{name}_table")
        table = DeltaTable(path, version=getattr(aug, f"{name}_version"))
        if as_of is not None:
            table.load_as_version(as_of)  # the latest version committed at or before as_of
        # Only ok rows can make a pair; filtering in the reader skips the text of dropped segments.
        frames[name] = table.to_pandas(columns=cols, filters=[("status", "=", "ok")])
        tables[name] = {"path": path, "version": table.version(), "ok_rows": len(frames[name])}
        if as_of is not None:
            tables[name]["as_of"] = as_of.isoformat()
    pairs = select_curated(
        frames["segments"],
        frames["candidates"],
        frames["scores"],
        score_column=aug.score_column,
        min_score=aug.min_score,
        judge_model_id=aug.judge_model_id,
    )
    examples = [
        Example(aug.system_prompt, r.instruction, r.output, "augmented", r.score_id) for r in pairs.itertuples()
    ]
    return examples, tables


def select_curated(
    segments: pd.DataFrame,
    candidates: pd.DataFrame,
    scores: pd.DataFrame,
    *,
    score_column: str,
    min_score: float,
    judge_model_id: str | None = None,
) -> pd.DataFrame:
    """Pairs (generation_id, score_id, instruction, output) scoring >= min_score, one per generation, by
    generation_id; ``score_id`` is the passing score (the lowest id when several pass).

    Null scores (unparseable judge output) never pass; with no judge given, a score by any judge passes.
    """
    # A null score compares as NA or False; NA is not passing either.
    passing = scores[passes(scores.__getitem__, score_column, min_score).fillna(False).astype(bool)]
    if judge_model_id is not None:
        passing = passing[passing["judge_model_id"] == judge_model_id]
    ok_candidates = candidates[(candidates["status"] == "ok") & candidates["instruction"].notna()]
    ok_segments = segments[(segments["status"] == "ok") & segments["text"].notna()]
    pairs = (
        ok_candidates[["generation_id", "segment_id", "instruction"]]
        .merge(ok_segments[["segment_id", "text"]].drop_duplicates("segment_id"), on="segment_id")
        .merge(
            passing[["generation_id", "score_id"]].sort_values("score_id").drop_duplicates("generation_id"),
            on="generation_id",
        )
        .drop_duplicates("generation_id")
        .sort_values("generation_id", kind="stable")
    )
    return pairs.rename(columns={"text": "output"})[["generation_id", "score_id", "instruction", "output"]].reset_index(
        drop=True
    )


def conversation(example: Example, direction: str, backward_prompt: PromptTemplate) -> list[dict[str, str]]:
    """The chat a model is trained on: forward answers the instruction, backward recovers it (M_yx)."""
    if direction == "backward":
        return messages(backward_prompt.render(output=example.output), assistant=example.instruction)
    return messages(example.instruction, system=example.system, assistant=example.output)


def encode(tokenizer: Any, chat: Sequence[dict[str, str]], max_seq_len: int) -> Encoded | None:
    """Ids and labels of a chat ending with the assistant's turn; None if the prompt alone fills max_seq_len.

    Prompt and answer are encoded separately because that is what inference does: the engine encodes the
    prompt and the model generates the rest. The answer always ends with eos so the model learns to stop.
    """
    prompt = render_chat(tokenizer, chat[:-1], add_generation_prompt=True)
    full = render_chat(tokenizer, chat, add_generation_prompt=False)
    if not full.startswith(prompt):
        raise ValueError("chat template does not render the prompt as a prefix of the whole conversation")
    prompt_ids = encode_prompt(tokenizer, prompt)
    answer_ids = tokenizer(full[len(prompt) :], add_special_tokens=False)["input_ids"]
    if not answer_ids or answer_ids[-1] != tokenizer.eos_token_id:
        answer_ids.append(tokenizer.eos_token_id)
    if len(prompt_ids) >= max_seq_len:
        return None
    return Encoded(
        input_ids=(prompt_ids + answer_ids)[:max_seq_len],
        labels=([IGNORE_INDEX] * len(prompt_ids) + answer_ids)[:max_seq_len],
    )


def encode_examples(
    tokenizer: Any, examples: Sequence[Example], cfg: TrainConfig
) -> tuple[list[Encoded], dict[str, int]]:
    """Encoded examples in order, and counts: kept examples by source, and ``dropped_prompt_too_long``."""
    template = PromptTemplate.load(cfg.backward_prompt)
    kept, counts = [], Counter({"dropped_prompt_too_long": 0})
    for example in examples:
        encoded = encode(tokenizer, conversation(example, cfg.direction, template), cfg.optim.max_seq_len)
        if encoded is None:
            counts["dropped_prompt_too_long"] += 1
        else:
            kept.append(encoded)
            counts[example.source] += 1
    return kept, dict(counts)
