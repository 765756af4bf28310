"""Checks for the usual mistakes, run before Spark starts, and one-line messages for failures during a run.

Each problem is a ``UsageError`` whose message names the thing and says what to do; the job prints it as
one line (the traceback of an unexpected failure goes to the log file, see ``jobs.console``).
"""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from pathlib import Path

from jobs.config import BUILTIN_MODELS
from jobs.storage import parse_catalog_schema
from training.data import resolve
from udfs import sources
from udfs.readers import input_format
from udfs.weights import BrokenWeights, check_weights

_SOURCE_ERROR = re.compile(r"(?:udfs\.sources\.)?SourceError: ([^\n]+)")
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.gguf")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


class UsageError(RuntimeError):
    """A mistake in the job's input or setup; the message is the one line to show."""


def corpus_files(pattern: str) -> list[sources.Entry]:
    """The readable files of ``input.corpus`` (a file, a folder searched recursively, or a glob; a local path
    or a URL of an object store, see ``udfs.sources``), by path."""
    try:
        entries = sources.list_files(pattern)
    except sources.SourceError as exc:
        raise UsageError(f"input.corpus: {exc}") from None
    if not entries:
        raise UsageError(
            f"input.corpus: nothing matches {pattern!r}: check the path or glob "
            "(--set input.corpus=FILE|FOLDER|'GLOB'|URL, quoted so the shell does not expand it)"
        )
    readable = [e for e in entries if input_format(e.url) is not None]
    if not readable:
        raise UsageError(
            f"input.corpus: {len(entries)} file(s) match {pattern!r} but none is WARC, WET, HTML, "
            "JSONL or Parquet (by extension): point input.corpus at those files"
        )
    if all(e.size == 0 for e in readable):
        raise UsageError(
            f"input.corpus: the {len(readable)} file(s) matching {pattern!r} are empty: the corpus has no pages to read"
        )
    return readable


def check_seed(path: str) -> int:
    """The number of seed pairs in ``path``, a JSONL of objects with string ``instruction`` and ``output``."""
    if not os.path.isfile(path):
        raise UsageError(f"input.seed: no file at {path!r}: set input.seed to a JSONL of instruction/output pairs")
    pairs = 0
    with open(path, encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(
                    f"input.seed: {path}:{number} is not JSON ({exc.msg}): the seed set must be JSONL, "
                    'one {"instruction": ..., "output": ...} object per line'
                ) from None
            if not (
                isinstance(row, dict) and isinstance(row.get("instruction"), str) and isinstance(row.get("output"), str)
            ):
                raise UsageError(f"input.seed: {path}:{number} needs string fields 'instruction' and 'output'")
            pairs += 1
    if not pairs:
        raise UsageError(f"input.seed: {path} has no pairs: add JSONL lines with 'instruction' and 'output'")
    return pairs


def check_model_dir(key: str, path: str) -> None:
    """A Hugging Face model directory: config, weights and tokenizer present."""
    folder = Path(path)
    if not folder.is_dir():
        raise UsageError(
            f"{key}: no model directory at {path!r}: set {key} to a Hugging Face model directory (or null to build one)"
        )
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if not any(next(folder.glob(p), None) for p in WEIGHT_PATTERNS):
        missing.append("weights (*.safetensors or *.bin)")
    if not any((folder / f).is_file() for f in TOKENIZER_FILES):
        missing.append("a tokenizer (tokenizer.json or tokenizer.model)")
    if missing:
        raise UsageError(
            f"{key}: the model directory {path} lacks {', '.join(missing)}: "
            "copy the complete model there (save_pretrained writes all of it)"
        )
    try:
        check_weights(folder)
    except BrokenWeights as e:
        raise UsageError(f"{key}: {e}") from e


def check_writable(key: str, path: str) -> None:
    """``path`` (created if missing) accepts a new file."""
    if parse_catalog_schema(path) is not None or "://" in path or path.startswith("dbfs:"):
        return  # a catalog, an object store or DBFS: its permissions are checked by the engine that writes
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise UsageError(
            f"{key}: cannot write to {path!r} ({exc.strerror}): choose a writable folder "
            f"(--set {key}=DIR) or fix its permissions"
        ) from None


def check_decontamination(sets) -> None:
    """Every evaluation set's prompt file (``segment.decontamination``) is there."""
    for s in sets:
        if not s.exists():
            raise UsageError(
                f"segment.decontamination: no prompt file for {s.name!r} at {s.path!r}: put the evaluation's "
                f"prompts there (JSONL with the field {s.field!r}, or one prompt per line) or remove the set"
            )


def decontamination_warning(cfg, spark_master: str) -> str | None:
    """The warning for a run beyond this machine (a cluster, Databricks, shared storage) that checks its data
    against no evaluation set: what it trains on may contain the prompts its models are scored on."""
    if cfg.segment.decontamination:
        return None
    root = cfg.storage.root
    shared_root = "://" in root or root.startswith(("dbfs:", "/dbfs/", "/Volumes/")) or parse_catalog_schema(root)
    on_cluster = not spark_master.startswith("local") or "DATABRICKS_RUNTIME_VERSION" in os.environ
    if not (shared_root or on_cluster):
        return None
    return (
        "NO DECONTAMINATION: segment.decontamination lists no evaluation prompt files, so segments, generated "
        "instructions and seed pairs that contain an evaluation's prompts reach training and inflate its scores: "
        "set segment.decontamination to the prompt files of the evaluations you report on (see conf/cluster.yaml)"
    )


def check_config(cfg) -> None:
    """Every check above that applies to the pipeline config ``cfg`` (a ``jobs.config.PipelineConfig``)."""
    check_writable("storage.root", cfg.storage.root)
    corpus_files(cfg.input.corpus)
    check_seed(str(resolve(cfg.input.seed)))  # as training finds it: relative paths also from the project root
    check_decontamination(cfg.segment.decontamination)
    for role in ("base", "backward", "seed_model"):
        if getattr(cfg.models, role) and getattr(cfg.models, role) not in BUILTIN_MODELS:  # built ones are made
            check_model_dir(f"models.{role}", getattr(cfg.models, role))
    if cfg.rewrite.enabled and cfg.rewrite.model:
        check_model_dir("rewrite.model", cfg.rewrite.model)


def describe_failure(exc: BaseException) -> str | None:
    """The one line for a failure during a run that has a known cause, else None (an unexpected error)."""
    if isinstance(exc, UsageError):
        return str(exc)
    # An input object that an executor could not open (changed or deleted since it was listed, or the executors
    # lack the driver's network or credentials): Spark hands the worker's traceback over as text.
    unreadable = _SOURCE_ERROR.search(str(exc))
    if unreadable is not None:
        return (
            f"an executor could not read the input: {unreadable.group(1)}: "
            "if the object changed since it was listed, run the same command again"
        )
    disk_full = _find(exc, lambda e: isinstance(e, OSError) and e.errno == errno.ENOSPC)
    if disk_full is None and "No space left on device" in str(exc):  # from the JVM, wrapped by py4j
        disk_full = exc
    if disk_full is not None:
        where = f" writing {disk_full.filename}" if getattr(disk_full, "filename", None) else ""
        return (
            f"out of disk space{where}: the commit was not made and the tables are unchanged; "
            "free space (or --set storage.root=DIR on a bigger disk) and run the same command again"
        )
    return None


def _find(exc: BaseException | None, test) -> BaseException | None:
    """``exc`` or the first exception it was raised from that passes ``test``."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if test(exc):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
