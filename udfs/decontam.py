"""Decontamination: find text that contains an evaluation set's prompts, so it never reaches training.

Three kinds of text are checked against the same sets (``segment.decontamination``): web segments (the segment
filter ``decontamination_v1``), the instructions M_yx generates (the augment stage) and the seed pairs (training
reads them through ``training.data``). ``Decontamination`` is the check all three use; a match is the reason
``eval_overlap:<set name>``.

An evaluation set is a file of prompts: JSON Lines (one object per line, the prompt in a named field)
or plain text (one prompt per line). Prompts and segments are compared as word sequences after
``normalize_for_dedup`` (lower case, punctuation dropped), the GPT-3 / Llama 2 style of check:

- a prompt of at least ``ngram`` words contaminates a segment that shares any of its word n-grams;
- a shorter prompt of at least ``min_words`` words contaminates a segment that contains it whole;
- prompts shorter than ``min_words`` are ignored (a three-word prompt is in half the web).

A set's file is a local path (on Databricks ``/dbfs/...`` or ``/Volumes/...``) or a URL fsspec opens (``s3://``,
``abfss://``, ``gs://``). ``load_eval_index`` reads a file once per Python process (Spark reuses Python
workers, so once per worker, not per batch) and keeps only hashes of the n-grams. ``overlap`` is linear in
the text's length. This module is pure: no pyspark, no vllm.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

from udfs.text import normalize_for_dedup


@dataclass(frozen=True)
class EvalSet:
    """One evaluation set to keep out of the data: ``segment.decontamination: [{name, path, field}]``."""

    name: str  # appears in the drop reason: eval_overlap:<name>
    path: str  # .jsonl/.json (one object per line) or any other extension (one prompt per line)
    field: str = "prompt"  # the JSON field holding the prompt

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9_]+", self.name):
            raise ValueError(f"decontamination name must be snake_case (a-z, 0-9, _), got {self.name!r}")
        if "://" not in self.path:
            # Absolute, as resolved here on the driver: executors open it from their own working directories.
            # Whether the file is there is checked before a run (jobs.preflight): a config names the files of the
            # machine it runs on (conf/cluster.yaml: the cluster's), and must load elsewhere too.
            object.__setattr__(self, "path", str(Path(self.path).absolute()))

    def exists(self) -> bool:
        """Whether the prompt file is there (a URL is not looked up: its reader says when it is missing)."""
        return "://" in self.path or Path(self.path).is_file()


@dataclass(frozen=True)
class Decontamination:
    """The evaluation sets and match settings one check uses (``segment.decontamination*``)."""

    sets: tuple[EvalSet, ...] = ()
    ngram: int = 13
    min_words: int = 5

    def overlaps(self, words: list[str]) -> dict[str, int]:
        """Set name -> matching word windows of text split by ``comparison_words``."""
        return {
            s.name: overlap_words(words, load_eval_index(s.path, s.field, self.ngram, self.min_words))
            for s in self.sets
        }

    def reason(self, *texts: str | None) -> str | None:
        """``eval_overlap:<set>`` for the first set (in config order) that any of ``texts`` overlaps, else None."""
        for text in texts:
            if text and (found := overlap_reason(self.overlaps(comparison_words(text)))):
                return found
        return None


def overlap_reason(hits: dict[str, int]) -> str | None:
    """The drop reason of per-set match counts: the first set with a match, or None."""
    return next((f"eval_overlap:{name}" for name, n in hits.items() if n), None)


@dataclass(frozen=True)
class EvalIndex:
    """Hashed word n-grams of one evaluation set's prompts."""

    ngram: int
    long_grams: frozenset[int]  # hashes of every ngram-word window of the long prompts
    short_prompts: dict[int, frozenset[int]]  # word count -> hashes of the whole short prompts of that length
    prompts: int  # prompts indexed (long + short)
    ignored: int  # prompts shorter than min_words


@functools.lru_cache(maxsize=32)
def load_eval_index(path: str, field: str, ngram: int, min_words: int) -> EvalIndex:
    """Index the prompts in ``path`` (``.jsonl``/``.json``: ``field`` of each object; else one per line)."""
    long_grams: set[int] = set()
    short: dict[int, set[int]] = {}
    prompts = ignored = 0
    for prompt in _read_prompts(path, field):
        words = normalize_for_dedup(prompt).split()
        if len(words) >= ngram:
            long_grams.update(_windows(words, ngram))
        elif len(words) >= min_words:
            short.setdefault(len(words), set()).add(hash(tuple(words)))
        else:
            ignored += 1
            continue
        prompts += 1
    return EvalIndex(ngram, frozenset(long_grams), {n: frozenset(h) for n, h in short.items()}, prompts, ignored)


def overlap(text: str, index: EvalIndex) -> int:
    """How many of ``text``'s word windows match the index (0: no contamination)."""
    return overlap_words(comparison_words(text), index)


def comparison_words(text: str) -> list[str]:
    """The words ``overlap`` compares: computed once per segment when it is checked against several sets."""
    return normalize_for_dedup(text).split()


def overlap_words(words: list[str], index: EvalIndex) -> int:
    """``overlap`` of text already split by ``comparison_words``."""
    hits = sum(map(index.long_grams.__contains__, _windows(words, index.ngram))) if index.long_grams else 0
    for n, hashes in index.short_prompts.items():
        hits += sum(map(hashes.__contains__, _windows(words, n)))
    return hits


def _windows(words: list[str], n: int):
    """Hashes of every n-word window; zip of the shifted lists yields the same tuples as slicing, in C."""
    return map(hash, zip(*(words[i:] for i in range(n))))


def _open(path: str):
    if "://" in path:
        import fsspec  # object stores only: local files need nothing else

        return fsspec.open(path, "rt", encoding="utf-8").open()
    return open(path, encoding="utf-8")


def _read_prompts(path: str, field: str):
    with _open(path) as f:
        if Path(path).suffix.lower() not in (".jsonl", ".json"):
            yield from (line.strip() for line in f if line.strip())
            return
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get(field), str):
                raise ValueError(f"{path}:{number}: no string field {field!r}")
            yield row[field]
