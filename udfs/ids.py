"""Deterministic content ids: the keys that make every stage idempotent (STYLE.md, "keyed artefacts")."""

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

    ``jobs.stages.keyed_id`` computes the same value as a Spark expression, so ids can be made before any
    Python worker runs, and recomputed anywhere.
    """
    return hashlib.sha256(f"{key}|{salt}".encode("utf-8")).hexdigest()[:32]


def seed_from_id(row_id: str) -> int:
    """A per-row sampling seed derived from the row's id, so a retried task regenerates identical text."""
    return int(row_id[:8], 16) & 0x7FFFFFFF


def model_fingerprint(model_dir: str) -> str:
    """A model id: directory name plus a hash of its config and file sizes (cheap even for 100 GB models).

    Models trained here also hash their ``training_meta.json`` (data version + config), so two models
    trained on different data never share an id.
    """
    path = Path(model_dir)
    parts: list[Any] = [path.name]
    for name in ("config.json", "training_meta.json", "bootstrap.json"):
        if (path / name).is_file():
            parts.append((name, (path / name).read_text()))
    parts.extend(sorted((p.name, p.stat().st_size) for p in path.iterdir() if p.is_file() and p.suffix in {".safetensors", ".bin"}))
    return f"{path.name}-{stable_id(*parts, length=12)}"
