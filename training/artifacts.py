"""Model directories that appear whole or not at all, and the JSON marker that says what built them.

A run writes into a temporary sibling directory and renames it into place at the end, so an interrupted
run never leaves a half-written model at ``out_dir``; a re-run compares the marker's fingerprint with its
own and skips the work when they match (STYLE.md: every stage is safe to retry). Two runs into the same
``out_dir`` take turns (``exclusive``): the second waits, then finds the first one's model.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator

log = logging.getLogger(__name__)


def read_marker(out_dir: str | Path, name: str) -> dict[str, Any] | None:
    """The JSON marker ``name`` in a finished ``out_dir``, or None if there is none."""
    path = Path(out_dir) / name
    return json.loads(path.read_text()) if path.is_file() else None


def write_json(path: str | Path, data: Any) -> None:
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def staged_dir(out_dir: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary directory next to ``out_dir``; on success it replaces ``out_dir``."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        if out.exists():  # a stale or different model: move it aside first, rename cannot replace a directory
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def exclusive(out_dir: str | Path) -> Iterator[None]:
    """Hold ``out_dir``'s lock (the file ``.<name>.lock`` beside it) for the body; a second holder waits.

    Without it, two runs into one model directory (two jobs sharing ``models.dir``, a retry started while the
    first attempt still runs) both train and write the same checkpoint file. Only the main process of a
    distributed run (``RANK`` 0) locks: the others follow it. A filesystem without locks (some FUSE mounts)
    runs unlocked, with a warning.
    """
    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = out.parent / f".{out.name}.lock"
    with open(lock, "a") as f:  # the lock goes with the file's closing, also when the process dies
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("%s: another run is writing this model; waiting for it to finish (%s)", out, lock)
            fcntl.flock(f, fcntl.LOCK_EX)
        except OSError as e:
            log.warning("%s: cannot lock %s (%s): nothing stops a second run writing here meanwhile", out, lock, e)
        yield


def sha256_texts(texts: Iterable[str]) -> str:
    """Hash of a sequence of strings, in order (NUL-separated, so boundaries count)."""
    h = hashlib.sha256()
    for text in texts:
        h.update(text.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()
