"""Where input files live: local paths and fsspec filesystems (object stores, HTTP), listed and opened here only.

``input.corpus`` is a local file, folder or glob, or a URL of one of these:

- ``s3://`` (also ``s3a://``; package s3fs), ``gs://`` (gcsfs), ``abfss://`` / ``abfs://`` / ``az://`` (adlfs):
  a key, a prefix (listed recursively) or a glob (``s3://commoncrawl/crawl-data/CC-MAIN-2024-10/**/*.warc.gz``);
- ``https://`` / ``http://``: one file per URL (HTTP has no listing); a server must answer Range requests to
  read a file bigger than one block (``_BLOCK_BYTES``) or to read from an offset, as object stores and CDNs do;
- ``dbfs:/...``: Databricks' file system, read through the ``/dbfs`` mount of its nodes (``/Volumes/...``
  paths are local paths already).

The driver lists (``list_files``: URL, size, ETag and modification time, which key the ingest ledger) and
the executors open (``open_file``: a bounded stream from an offset). Credentials are what each filesystem's
own client reads from the environment (``AWS_ENDPOINT_URL`` for an S3-compatible server, ``AWS_ACCESS_KEY_ID``,
``AWS_PROFILE``, instance roles; ``AZURE_STORAGE_*``; ``GOOGLE_APPLICATION_CREDENTIALS``): ``storage_env``
captures those variables on the driver and ``apply_env`` sets them on an executor, so both see one store.
Problems of the store (missing bucket, denied access, a filesystem package not installed) are
``SourceError``s whose message names the URL and what to do.

This module is pure: no pyspark, no vllm.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import importlib.util
import io
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

_BLOCK_BYTES = 8 << 20  # one ranged GET per block of a remote file; the readahead cache holds one block
_BUFFER_BYTES = 1 << 16
_ENV_PREFIXES = ("AWS_", "AZURE_", "GOOGLE_")  # what s3fs/botocore, adlfs and gcsfs read from the environment
_PACKAGES = {
    "s3": "s3fs",
    "s3a": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "abfs": "adlfs",
    "abfss": "adlfs",
    "az": "adlfs",
    "http": "aiohttp",
    "https": "aiohttp",
}
_DBFS_MOUNT = "/dbfs"
_GLOB_CHARS = frozenset("*?[")


class SourceError(OSError):
    """An input location that cannot be listed or opened; the message names it and says what to do."""


class TransientReadError(OSError):
    """A read that kept failing on the network or the store after ``READ_ATTEMPTS`` tries: not a corrupt file.
    Readers let it through, so the task fails and is retried (by Spark, or by the next run: no unit whose read
    failed so is ledgered as read)."""


# Tries of one read before it fails the task, and the pause before the second (doubled before each next one):
# about 15 s in all, enough for a dropped connection or a throttled store, short against Spark's own retries.
READ_ATTEMPTS = 5
RETRY_PAUSE_SECONDS = 1.0
# Errors of the network and of the stores' clients, by class name (their packages are optional): a read that
# raises one is worth making again. Corrupt bytes raise other errors, which the readers record per record.
_TRANSIENT_NAMES = frozenset(
    {
        "ClientConnectionError",  # aiohttp (http://, gcsfs, adlfs): reset, refused, closed mid-response
        "ClientPayloadError",  # aiohttp: a body cut short
        "ServerTimeoutError",
        "EndpointConnectionError",  # botocore (s3fs)
        "ConnectionClosedError",
        "ReadTimeoutError",  # botocore and urllib3
        "ConnectTimeoutError",
        "ResponseStreamingError",
        "IncompleteReadError",
        "ProtocolError",  # urllib3: connection broken mid-body
        "FSTimeoutError",  # fsspec's sync wrapper
        "ServiceResponseError",  # azure-core
        "IncompleteRead",  # http.client
    }
)


@dataclass(frozen=True)
class Entry:
    """One input file as listed: a local absolute path or a URL, its size, and what identifies its content."""

    url: str
    size: int
    mtime_ns: int | None = None  # local files; the object's last-modified time when the store gives one
    etag: str | None = None  # object stores and HTTP servers that send one

    @property
    def version(self) -> str | int | None:
        """What changes when the content does: the ETag, else the modification time."""
        return self.etag if self.etag is not None else self.mtime_ns


def is_url(path: str) -> bool:
    """Whether ``path`` names a filesystem other than the local one (``dbfs:/`` maps to a local mount)."""
    return "://" in path and not path.startswith("file://")


def list_files(pattern: str) -> list[Entry]:
    """The files matching ``pattern`` (a file, a folder or prefix searched recursively, or a glob), by URL.

    Nothing matching is an empty list; a store that cannot be listed raises ``SourceError``.
    """
    pattern = _local_path(pattern)
    if not is_url(pattern):
        return _list_local(pattern)
    scheme = urlsplit(pattern).scheme.lower()
    fs = _filesystem(pattern)
    with _errors(pattern):
        if scheme in ("http", "https"):
            return [_entry(pattern, fs.info(pattern))] if _exists(fs, pattern) else []
        fs.invalidate_cache()  # a listing cached by an earlier call would hide a changed object's new ETag
        if _GLOB_CHARS & set(pattern):
            found = fs.glob(pattern, detail=True)
        elif fs.isdir(pattern):
            found = fs.find(pattern, detail=True)
        else:
            found = {pattern: fs.info(pattern)} if _exists(fs, pattern) else {}
        if not found:
            _check_container(fs, pattern)
    base = f"{scheme}://{urlsplit(pattern).netloc}"
    root = fs._strip_protocol(base)  # how the filesystem names the bucket or container
    return sorted(
        (
            _entry(base + name[len(root) :] if not is_url(name) else name, info)
            for name, info in found.items()
            if info.get("type", "file") == "file"
        ),
        key=lambda e: e.url,
    )


def open_file(url: str, offset: int = 0, length: int | None = None):
    """A binary file object of ``url`` at ``offset``; with ``length`` it ends after that many bytes.

    Without ``length`` it is seekable (readers plan work units by seeking). Remote files are read by
    ranged requests of at most one block, so a bounded read fetches about ``length`` bytes. A read that fails
    on the network or the store (``is_transient``) is made again from where it stopped, on a file opened
    anew, up to ``READ_ATTEMPTS`` times with a growing pause; then it raises ``TransientReadError``.
    """
    path = _local_path(url)
    # buffered: fsspec's files lack readline(size), which the JSONL reader bounds lines by
    return io.BufferedReader(_Resuming(path, offset, length), _BUFFER_BYTES)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it was raised from) is a failure of the network or the store, which the
    same read may not meet again, rather than of the file."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (ConnectionError, TimeoutError)):  # resets, refusals, broken pipes, socket timeouts
            return True
        if _TRANSIENT_NAMES & {c.__name__ for c in type(exc).__mro__}:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def size(url: str) -> int:
    """The size of the file at ``url`` in bytes."""
    path = _local_path(url)
    if not is_url(path):
        return os.path.getsize(path)
    with _errors(path):
        return int(_filesystem(path).size(path))


def exists(url: str) -> bool:
    """Whether a file is at ``url``."""
    path = _local_path(url)
    if not is_url(path):
        return os.path.isfile(path)
    with _errors(path):
        return _exists(_filesystem(path), path)


def storage_env() -> dict[str, str]:
    """The environment variables the filesystems' clients read (credentials included: never log them)."""
    return {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES) and v}


def apply_env(env: dict[str, str]) -> None:
    """Set the driver's ``storage_env`` in this (executor) process, so it reads the store the driver listed."""
    os.environ.update(env)


# --- helpers ---------------------------------------------------------------------------------------------


class _Resuming(io.RawIOBase):
    """Bytes ``[offset, offset + length)`` of a file (``length`` None: seekable, to its end). A read or seek that
    fails transiently closes the file, waits and opens it again at the position reached (``READ_ATTEMPTS``)."""

    def __init__(self, path: str, offset: int, length: int | None) -> None:
        self._path, self._pos, self._stream = path, offset, None
        self._end = None if length is None else offset + length
        self._retrying("open", lambda: None)  # a missing file fails here, as a plain open would

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._end is None

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        if self._end is not None:
            raise io.UnsupportedOperation("a bounded read does not seek")
        self._pos = self._retrying("seek", lambda: self._stream.seek(pos, whence))
        return self._pos

    def readinto(self, buffer) -> int:
        n = len(buffer) if self._end is None else min(len(buffer), self._end - self._pos)
        if n <= 0:
            return 0
        data = self._retrying(f"read {n} bytes", lambda: self._stream.read(n))
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        self._drop()
        super().close()

    def _retrying(self, what: str, call):
        for attempt in range(1, READ_ATTEMPTS + 1):
            try:
                if self._stream is None:
                    self._stream = _open_at(self._path, self._pos, self._end)
                return call()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self._drop()
                if attempt == READ_ATTEMPTS:
                    message = (str(exc) or type(exc).__name__).replace("\n", " ")[:300]
                    raise TransientReadError(
                        f"{self._path}: {what} at byte {self._pos} failed {attempt} times on the network or the "
                        f"store ({type(exc).__name__}: {message}): failing the task so that it is read again"
                    ) from exc
                time.sleep(RETRY_PAUSE_SECONDS * 2 ** (attempt - 1))

    def _drop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close: it is gone either way
                stream.close()


def _open_at(path: str, offset: int, end: int | None):
    """``path`` opened and positioned at ``offset``; a remote file's blocks are no bigger than ``end`` needs."""
    if is_url(path):
        fs = _filesystem(path)
        block = _BLOCK_BYTES if end is None else max(1, min(end - offset, _BLOCK_BYTES))
        with _errors(path):
            stream = fs.open(path, "rb", block_size=block, cache_type="readahead")
    else:
        stream = open(path, "rb")
    stream.seek(offset)
    return stream


def _local_path(path: str) -> str:
    """``dbfs:/x`` as ``/dbfs/x`` (where the mount exists), ``file://`` URLs as paths; other names unchanged."""
    path = os.fspath(path)
    if path.startswith("file://"):
        return urlsplit(path).path
    if path.lower().startswith("dbfs:"):
        if not os.path.isdir(_DBFS_MOUNT):
            raise SourceError(
                f"{path}: dbfs:/ paths are read through the /dbfs mount of Databricks nodes, which this machine "
                "does not have: give the object store URL of the same files (s3://, abfss://, gs://)"
            )
        return _DBFS_MOUNT + "/" + path[len("dbfs:") :].lstrip("/")
    return path


def _list_local(pattern: str) -> list[Entry]:
    if os.path.isdir(pattern):
        paths = [str(p) for p in Path(pattern).rglob("*")]
    else:
        paths = [pattern] if os.path.isfile(pattern) else glob.glob(pattern, recursive=True)
    entries = []
    for path in paths:
        if os.path.isfile(path):
            stat = os.stat(path)
            entries.append(Entry(os.path.abspath(path), stat.st_size, stat.st_mtime_ns))
    return sorted(entries, key=lambda e: e.url)


def _entry(url: str, info: dict) -> Entry:
    """An ``Entry`` from an fsspec ``info`` dict, whose keys differ by filesystem (s3fs, gcsfs, adlfs, HTTP)."""
    keys = {k.lower(): v for k, v in info.items()}
    if keys.get("size") is None:
        raise SourceError(f"{url}: the server does not tell the file's size, so it cannot be split or keyed")
    etag = keys.get("etag")
    modified = next(
        (
            keys[k]
            for k in ("lastmodified", "last_modified", "last-modified", "updated", "mtime")
            if keys.get(k) is not None
        ),
        None,
    )
    return Entry(url, int(keys["size"]), _as_ns(modified), str(etag).strip('"') if etag else None)


def _as_ns(value) -> int | None:
    """A modification time as nanoseconds since the epoch (datetime, ISO-8601 or HTTP date, or seconds)."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value * 1e9)
    if not isinstance(value, datetime):
        text = str(value)
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            try:
                value = parsedate_to_datetime(text)
            except (TypeError, ValueError):
                return None
    return int(value.timestamp() * 1e9)


def _exists(fs, path: str) -> bool:
    try:
        return fs.isfile(path)
    except FileNotFoundError:
        return False


def _check_container(fs, pattern: str) -> None:
    """Nothing matched: say so when the bucket or container itself is missing (not the keys under it)."""
    if urlsplit(pattern).scheme.lower() in ("http", "https"):
        return
    base = f"{urlsplit(pattern).scheme}://{urlsplit(pattern).netloc}"
    if not fs.exists(base):
        raise SourceError(
            f"{pattern}: the bucket or container {base} does not exist (or these credentials cannot see it): "
            "check the name and the endpoint (AWS_ENDPOINT_URL for an S3-compatible server)"
        )


def _filesystem(url: str):
    """The fsspec filesystem for ``url``'s scheme (one per scheme, made again when the storage variables change)."""
    import fsspec

    scheme = urlsplit(url).scheme.lower()
    package = _PACKAGES.get(scheme)
    try:
        if package is not None and importlib.util.find_spec(package) is None:
            raise ImportError(package)
        # fsspec registers adlfs under abfs:// and az://; adlfs itself parses abfss:// URLs (account in the host)
        cls = fsspec.get_filesystem_class("abfs" if scheme == "abfss" else scheme)
    except ImportError:
        hint = f"pip install 'humpback-spark[objectstore]' (or pip install {package})" if package else "install it"
        raise SourceError(f"{url}: reading {scheme}:// needs the {package or 'fsspec filesystem'} package: {hint}")
    except ValueError:
        known = ", ".join(f"{s}://" for s in _PACKAGES)
        raise SourceError(f"{url}: unknown URL scheme {scheme!r}: use a local path, dbfs:/ or one of {known}")
    return _instance(cls, tuple(sorted(storage_env().items())))


@functools.lru_cache(maxsize=16)
def _instance(cls, env: tuple):
    """One filesystem per class and environment: fsspec caches instances by their arguments only, and the
    environment (credentials, endpoint) must count too."""
    return cls(skip_instance_cache=True)


@contextlib.contextmanager
def _errors(url: str) -> Iterator[None]:
    """Turn a filesystem's errors into ``SourceError``s that name ``url`` and say what to check."""
    try:
        yield
    except SourceError:
        raise
    except Exception as exc:
        message = (str(exc) or type(exc).__name__).replace("\n", " ")[:300]
        if isinstance(exc, PermissionError) or "credential" in type(exc).__name__.lower():
            raise SourceError(
                f"{url}: access denied ({message}): check the credentials in the environment "
                "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, AZURE_STORAGE_*, "
                "GOOGLE_APPLICATION_CREDENTIALS) or the instance role"
            ) from None
        if isinstance(exc, FileNotFoundError):
            raise SourceError(f"{url}: not found ({message})") from None
        raise SourceError(f"{url}: cannot be read ({type(exc).__name__}: {message})") from None
