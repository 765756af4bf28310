"""Training examples: seed pairs (JSONL) plus self-curated pairs (a query over the Delta tables), and their
rendering into token ids with the loss on the answer only.

The curated set is the paper's A_k: candidates with status ok, of segments with status ok, whose score by
the judge is at least k; the instruction is the generated one and the output is the web segment, or with
``augmented.output: rewrite`` the segment's ok rewrite (pairs without one are left out and counted).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from training.artifacts import sha256_texts
from training.config import AugmentedData, TrainConfig, parse_timestamp
from udfs.curation import (
    BASELINE_RULES,
    LOWER_IS_BETTER,
    RULE_COLUMNS,
    passes,
    rating_rule,
    select_baseline,
    uses_likelihoods,
)
from udfs.decontam import Decontamination
from udfs.likelihood import LIKELIHOOD_COLUMNS
from udfs.prompts import CONF_DIR, PromptTemplate, chat_prompt, encode_chat, encode_prompt, messages

IGNORE_INDEX = -100  # label of tokens that carry no loss (prompt and padding); torch's cross-entropy default


@dataclass(frozen=True)
class Example:
    system: str | None
    instruction: str
    output: str
    source: str  # "seed" or "augmented"
    score_id: str | None = None  # augmented: the scores row that curated it (lineage); seed: None
    rewrite_id: str | None = None  # augmented with output: rewrite: the rewrites row that is its output


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX on prompt tokens


def load_examples(cfg: TrainConfig) -> tuple[list[Example], dict[str, Any]]:
    """Seed then curated examples, and their provenance (paths, Delta versions read, counts, sha256)."""
    seed_path = resolve(cfg.seed.path)
    examples, excluded = exclude_eval_overlaps(read_seed(seed_path, cfg.seed.system_prompt), cfg.seed.eval_check)
    provenance: dict[str, Any] = {"seed": {"path": str(seed_path), "rows": len(examples)}}
    if excluded:  # recorded only when there are some: a clean seed set's provenance (and model id) is unchanged
        provenance["seed"]["excluded"] = excluded
    if cfg.augmented.enabled:
        curated, tables, without_rewrite = read_curated(cfg.augmented)
        examples += curated
        provenance["augmented"] = {"tables": tables, "rows": len(curated), "output": cfg.augmented.output}
        if cfg.augmented.output == "rewrite":
            provenance["augmented"]["without_rewrite"] = without_rewrite
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


def exclude_eval_overlaps(
    examples: Sequence[Example], decontamination: Decontamination
) -> tuple[list[Example], list[dict[str, Any]]]:
    """The examples to train on, and the excluded ones as ``{"pair": n, "reason": "eval_overlap:<set>"}``
    (n counts pairs from 1, in file order): those whose instruction or output contains an evaluation prompt."""
    kept, excluded = [], []
    for number, example in enumerate(examples, 1):
        reason = decontamination.reason(example.instruction, example.output)
        if reason is None:
            kept.append(example)
        else:
            excluded.append({"pair": number, "reason": reason})
    return kept, excluded


def excluded_counts(provenance: dict[str, Any]) -> dict[str, int]:
    """Seed pairs left out of a model's training, by reason (``eval_overlap:<set>``), from its provenance."""
    return dict(Counter(e["reason"] for e in provenance.get("seed", {}).get("excluded", [])))


def read_curated(aug: AugmentedData) -> tuple[list[Example], dict[str, Any], int]:
    """Curated pairs from the Delta tables at the configured versions (or as of a time), what was read, and
    how many curated pairs were left out for want of an ok rewrite (``output: rewrite``)."""
    as_of = parse_timestamp(aug.as_of) if aug.as_of is not None else None

    judged = [c for c in RULE_COLUMNS[aug.judge_rule] if c not in LOWER_IS_BETTER]
    columns = {
        "segments": ["segment_id", "text", "status"],
        "candidates": ["generation_id", "segment_id", "instruction", "status"],
        "scores": ["score_id", "generation_id", "judge_model_id", *judged, "status"],
    }
    if uses_likelihoods(aug.judge_rule):
        columns["likelihoods"] = ["generation_id", "scorer_model_id", "source", *LIKELIHOOD_COLUMNS, "status"]
    if aug.output == "rewrite":
        columns["rewrites"] = ["rewrite_id", "generation_id", "answer", "model_id", "prompt_version", "status"]
    frames, tables = {}, {}
    for name, cols in columns.items():
        path = getattr(aug, f"{name}_table")
        # Only ok rows can make a pair. A baseline chooses among every pair the judge was given, judged or not
        # (cascade_rejected), so it reads all scores.
        only_ok = not (name == "scores" and aug.score_column in BASELINE_RULES)
        frames[name], version = read_snapshot(path, getattr(aug, f"{name}_version"), as_of, cols, only_ok)
        tables[name] = {"path": path, "version": version, "ok_rows": len(frames[name])}
        if as_of is not None:
            tables[name]["as_of"] = as_of.isoformat()
    scores = frames["scores"]
    if "likelihoods" in frames:
        scores = with_likelihoods(scores, frames["likelihoods"], aug.likelihood_scorer_id)
    pairs = select_curated(
        frames["segments"],
        frames["candidates"],
        scores,
        score_column=aug.score_column,
        min_score=aug.min_score,
        judge_model_id=aug.judge_model_id,
        baseline_of=aug.baseline_of,
        baseline_k=aug.baseline_k,
        baseline_seed=aug.baseline_seed,
    )
    without_rewrite = 0
    if aug.output == "rewrite":
        pairs = with_rewrites(pairs, frames["rewrites"], aug.rewrite_model_id, aug.rewrite_prompt_version)
        without_rewrite = int(pairs["rewrite_id"].isna().sum())
        pairs = pairs[pairs["rewrite_id"].notna()]
    examples = [
        Example(aug.system_prompt, r.instruction, r.output, "augmented", r.score_id, getattr(r, "rewrite_id", None))
        for r in pairs.itertuples()
    ]
    return examples, tables, without_rewrite


def read_snapshot(
    path: str, version: int | None, as_of: datetime | None, columns: list[str], only_ok: bool = True
) -> tuple[pd.DataFrame, int]:
    """The ok rows (every row: ``only_ok`` False) of ``columns`` of Delta table ``path`` (as the job's
    ``Storage.path`` names it) at ``version``, or the latest version committed at or before ``as_of``, or the
    current one; and the version read. Read the way the job reads: through Spark when this process has a
    Spark session with delta-spark (the job's driver), else with delta-rs (torchrun, TorchDistributor's
    processes, ``python -m training``), whose storage options come from the environment and the session's
    Spark conf."""
    spark = _active_session()
    if spark is not None and _reads_delta(spark):
        from jobs.storage import pinned_version, read_delta

        read = pinned_version(spark, path, version, as_of)
        rows = read_delta(spark, path, read)
        return (rows.where("status = 'ok'") if only_ok else rows).select(*columns).toPandas(), read
    from deltalake import DeltaTable  # only runs that use augmented data need the Delta reader

    from jobs.catalog import delta_rs_uri, storage_options

    spark_conf = {} if spark is None else dict(spark.sparkContext.getConf().getAll())
    table = DeltaTable(delta_rs_uri(path), version=version, storage_options=storage_options(spark_conf))
    if as_of is not None:
        table.load_as_version(as_of)  # the latest version committed at or before as_of
    # Filtering in the reader skips the text of dropped segments.
    return table.to_pandas(columns=columns, filters=[("status", "=", "ok")] if only_ok else None), table.version()


def _active_session():
    """This process's Spark session, or None (pyspark never imported here: none)."""
    if "pyspark" not in sys.modules:
        return None
    from pyspark.sql import SparkSession

    return SparkSession.getActiveSession()


def _reads_delta(spark) -> bool:
    """Whether ``spark`` reads Delta with delta-spark (``jobs.storage.resolve_engine``)."""
    from jobs.storage import resolve_engine

    return resolve_engine(spark) == "delta-spark"


def with_likelihoods(scores: pd.DataFrame, likelihoods: pd.DataFrame, scorer_model_id: str | None) -> pd.DataFrame:
    """The judged rows with the scorer's likelihood scores of their pair (null where it has none: such a row
    passes no likelihood rule). The judge still gates what is curated: a pair the judge did not score ok is
    not a candidate, whatever its IFD, so lineage stays one scores row per example."""
    mine = likelihoods[(likelihoods["source"] == "pool") & (likelihoods["status"] == "ok")]
    if scorer_model_id is not None:
        mine = mine[mine["scorer_model_id"] == scorer_model_id]
    mine = mine[["generation_id", *LIKELIHOOD_COLUMNS]].drop_duplicates("generation_id")
    return scores.merge(mine, on="generation_id", how="left")


def select_curated(
    segments: pd.DataFrame,
    candidates: pd.DataFrame,
    scores: pd.DataFrame,
    *,
    score_column: str,
    min_score: float,
    judge_model_id: str | None = None,
    baseline_of: str = "score",
    baseline_k: int | None = None,
    baseline_seed: int = 0,
) -> pd.DataFrame:
    """Pairs (generation_id, score_id, instruction, output) scoring >= min_score, one per generation, by
    generation_id; ``score_id`` is the passing score (the lowest id when several pass).

    Null scores (unparseable judge output) never pass; with no judge given, a score by any judge passes.
    ``score_column`` ``longest`` or ``random`` keeps ``baseline_k`` pairs, or as many as the judge rule
    ``baseline_of`` >= ``min_score`` keeps, among every pair with a scores row (``udfs.curation.select_baseline``).
    """
    if judge_model_id is not None:
        scores = scores[scores["judge_model_id"] == judge_model_id]
    judge_rule = rating_rule(score_column, baseline_of)
    judged = scores[scores["status"] == "ok"]
    # A null score compares as NA or False; NA is not passing either.
    passing = judged[passes(judged.__getitem__, judge_rule, min_score).fillna(False).astype(bool)]
    ok_candidates = candidates[(candidates["status"] == "ok") & candidates["instruction"].notna()]
    ok_segments = segments[(segments["status"] == "ok") & segments["text"].notna()]
    pool = ok_candidates[["generation_id", "segment_id", "instruction"]].merge(
        ok_segments[["segment_id", "text"]].drop_duplicates("segment_id"), on="segment_id"
    )
    if score_column in BASELINE_RULES:
        size = baseline_k if baseline_k is not None else pool["generation_id"].isin(passing["generation_id"]).sum()
        chosen = pool.merge(scores[["generation_id"]].drop_duplicates(), on="generation_id")
        chosen = chosen.drop_duplicates("generation_id").assign(length=lambda f: f["text"].str.len())
        keep = select_baseline(chosen, score_column, int(size), baseline_seed)["generation_id"]
        passing = scores[scores["generation_id"].isin(keep)]
    pairs = (
        pool.merge(
            passing[["generation_id", "score_id"]].sort_values("score_id").drop_duplicates("generation_id"),
            on="generation_id",
        )
        .drop_duplicates("generation_id")
        .sort_values("generation_id", kind="stable")
    )
    return pairs.rename(columns={"text": "output"})[["generation_id", "score_id", "instruction", "output"]].reset_index(
        drop=True
    )


def with_rewrites(
    pairs: pd.DataFrame,
    rewrites: pd.DataFrame,
    model_id: str | None = None,
    prompt_version: str | None = None,
) -> pd.DataFrame:
    """``pairs`` (as ``select_curated`` gives them) with the output replaced by each generation's ok rewrite
    and its ``rewrite_id`` (the lowest id when several qualify); pairs without one keep a null ``rewrite_id``
    and a null output, for the caller to count and leave out. Only rewrites by ``model_id`` with
    ``prompt_version`` count (None: any)."""
    ok = rewrites[(rewrites["status"] == "ok") & rewrites["answer"].notna()]
    if model_id is not None:
        ok = ok[ok["model_id"] == model_id]
    if prompt_version is not None:
        ok = ok[ok["prompt_version"] == prompt_version]
    chosen = ok.sort_values("rewrite_id")[["generation_id", "rewrite_id", "answer"]].drop_duplicates("generation_id")
    merged = pairs.merge(chosen, on="generation_id", how="left")
    merged["output"] = merged["answer"]
    return merged.drop(columns="answer")


def conversation(example: Example, direction: str, backward_prompt: PromptTemplate) -> list[dict[str, str]]:
    """The chat a model is trained on: forward answers the instruction, backward recovers it (M_yx)."""
    if direction == "backward":
        return messages(backward_prompt.render(output=example.output), assistant=example.instruction)
    return messages(example.instruction, system=example.system, assistant=example.output)


def encode(tokenizer: Any, chat: Sequence[dict[str, str]], max_seq_len: int) -> Encoded | None:
    """Ids and labels of a chat ending with the assistant's turn; None if the prompt alone fills max_seq_len.

    Prompt and answer are encoded separately because that is what inference does: the engine encodes the
    prompt and the model generates the rest. The answer always ends with eos so the model learns to stop, and
    a control token quoted in the instruction or the answer stays text (``udfs.prompts.encode_chat``): an
    answer quoting "<|im_end|>" must not teach the model to stop there.
    """
    prompt = chat_prompt(tokenizer, chat[:-1], add_generation_prompt=True)
    full = chat_prompt(tokenizer, chat, add_generation_prompt=False)
    if not full.startswith(prompt):
        raise ValueError("chat template does not render the prompt as a prefix of the whole conversation")
    prompt_ids = encode_prompt(tokenizer, prompt)
    answer_ids = encode_chat(tokenizer, full[len(prompt) :])
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
