"""Deterministic content ids: the keys that make every stage idempotent (STYLE.md, "keyed artefacts").

Every row id of the pipeline is made by one function here: ledger files and units from path, size, mtime
and span, labelled judge pairs from their text, documents from URL and content, segments from
document and span, generations from segment and a salt of (model, prompt version, sampling, seed), scores
from generation and a salt of (judge, prompt version, sampling, seed, iteration), rewrites from generation
and a salt of (rewriter, prompt version, sampling, seed), calibration rows from label and judge, likelihood
rows from pair and scorer, curated rows from score and trained model, runs from config and table versions.
Salted ids are
``keyed_id(parent, salt)``; ``jobs.stages.base.keyed_id`` computes the same value as a Spark expression.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def stable_id(*parts: Any, length: int = 32) -> str:
    """A hex id over the JSON encoding of ``parts`` (order matters, types matter)."""
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:length]


def keyed_id(key: str, salt: str) -> str:
    """The id of a row derived from its parent's key and a salt (model, prompt version, sampling, seed).

    ``jobs.stages.base.keyed_id`` computes the same value as a Spark expression, so ids can be made before any
    Python worker runs, and recomputed anywhere.
    """
    return hashlib.sha256(f"{key}|{salt}".encode("utf-8")).hexdigest()[:32]


def file_id(path: str, size: int, version: int | str | None) -> str:
    """Identity of a file's content for the ingest ledger: path (or URL), size and version (a changed file is a
    new file). The version is a local file's mtime in ns, a remote object's ETag, else its last-modified time
    (``udfs.sources.Entry.version``)."""
    return stable_id("file", path, size, version)


def unit_id(file: str, start: int, end: int | None) -> str:
    """Ledger key of the work unit [start, end) of the file whose ``file_id`` is ``file``."""
    return stable_id("unit", file, start, end)


def label_id(instruction: str, output: str) -> str:
    """A labelled judge pair's key: its text (duplicates in the labels file collapse)."""
    return stable_id("label", instruction, output)


def doc_id(url: str | None, content_hash: str | None, source_path: str, offset: int, reason: str | None) -> str:
    """A document's key: its URL and content, so the same page read twice (or from two files) is one row;
    records without content are keyed by where they are."""
    key = (url, content_hash) if content_hash else (source_path, offset, reason)
    return stable_id("doc", *key)


def segment_id(doc: str, section_index: int, part: int) -> str:
    """A segment's key: its document and span. Part 0 keeps the id segments had before sections were split,
    so earlier tables stay valid."""
    key = (doc, section_index) if part == 0 else (doc, section_index, part)
    return stable_id("segment", *key)


def text_hash(normalized_text: str) -> str:
    """The exact-dedup key of a segment: a hash of its normalised text (``udfs.text.normalize_for_dedup``)."""
    return stable_id("text", normalized_text)


def generation_salt(model_id: str, prompt_version: str, sampling: dict, seed: int) -> str:
    """What a generation id adds to its segment id: M_yx's id, prompt version, sampling and seed."""
    return stable_id("generation", model_id, prompt_version, sampling, seed)


def score_salt(judge_model_id: str, prompt_version: str, sampling: dict, seed: int, iteration: int) -> str:
    """What a score id adds to its generation id: the judge, its prompt version, sampling, seed and iteration."""
    return stable_id("score", judge_model_id, prompt_version, sampling, seed, iteration)


def rewrite_salt(model_id: str, prompt_version: str, sampling: dict, seed: int) -> str:
    """What a rewrite id adds to its generation id: the rewriter, its prompt version, sampling and seed. Not the
    judge: a pair curated by two iterations' judges is the same text to rewrite, so it is rewritten once."""
    return stable_id("rewrite", model_id, prompt_version, sampling, seed)


def calibration_salt(judge_model_id: str, prompt_version: str, sampling: dict, seed: int) -> str:
    """What a calibration id adds to its label id: the judge, its prompt version, sampling and seed."""
    return stable_id("calibration", judge_model_id, prompt_version, sampling, seed)


def likelihood_salt(scorer_model_id: str, format_version: str) -> str:
    """What a likelihood id adds to its pair's id (generation or label): the scorer model and the format version."""
    return stable_id("likelihood", scorer_model_id, format_version)


def run_id(config: dict, table_versions: dict) -> str:
    """A run's key: its resolved config and the table versions after it (a run that changed nothing repeats)."""
    return stable_id("run", config, table_versions)


def failed_run_id(config: dict, table_versions: dict, started_at: str, reason: str) -> str:
    """A failed run's key: each failure is an event of its own, so the start time is part of it (a run that fails
    the same way twice leaves two rows, and never the id of a run that succeeded)."""
    return stable_id("failed_run", config, table_versions, started_at, reason)


def seed_from_id(row_id: str) -> int:
    """A per-row sampling seed derived from the row's id, so a retried task regenerates identical text."""
    return int(row_id[:8], 16) & 0x7FFFFFFF


def model_fingerprint(model_dir: str) -> str:
    """A model id: directory name plus a hash of its config and file sizes (cheap even for 100 GB models).

    Models built here also hash the recipe their ``training_meta.json`` or ``bootstrap.json`` records (config,
    data sha256, base model id), so two models trained on different data never share an id. Only the recipe:
    those files also hold measurements (seconds, tokens/s, losses that vary with the thread count), and a
    model rebuilt from the same recipe is the model its rows were generated with.
    """
    path = Path(model_dir)
    return f"{path.name}-{stable_id(path.name, *model_contents(path), length=12)}"


def model_contents(model_dir: str | Path) -> list[Any]:
    """What ``model_fingerprint`` hashes besides the directory's name: config.json, the recipe of a model built
    here and the weight files' names and sizes. Nothing of where the directory lies."""
    path = Path(model_dir)
    parts: list[Any] = []
    if (path / "config.json").is_file():
        parts.append(("config.json", (path / "config.json").read_text()))
    for name in ("training_meta.json", "bootstrap.json"):
        if (path / name).is_file():
            meta = json.loads((path / name).read_text())
            parts.append((name, meta.get("fingerprint", meta)))
    parts.extend(
        sorted(
            (p.name, p.stat().st_size) for p in path.iterdir() if p.is_file() and p.suffix in {".safetensors", ".bin"}
        )
    )
    return parts
