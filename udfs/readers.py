"""Stream input files (WARC/ARC, JSON Lines, single HTML files) into ``RawRecord``s.

Every input yields records with a status instead of raising on a bad record:

- ``ok``: ``html`` holds the decoded document;
- ``dropped``: a readable record that is not a document we want (``http_status_not_200``,
  ``not_html``, ``empty_body``, ``missing_text``);
- ``error``: ``reason`` is ``"<code>: <message>"``. An unreadable WARC record or a corrupt/truncated
  compressed file yields one ``unreadable_record`` error at the failing offset and ends that file,
  because nothing after it can be located reliably; a bad JSON line (``invalid_json``) is skipped.

A missing or unopenable file still raises ``OSError``: that is a bad argument, not a bad record.
``content_hash`` is the sha256 of the body bytes after HTTP transfer/content decoding (chunked,
gzip) and before charset decoding, so the same page hashes alike however it was served.

This module is pure: no pyspark, no vllm.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import html as html_lib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_FORMATS = (
    ((".warc", ".warc.gz", ".arc", ".arc.gz"), "warc"),
    ((".jsonl", ".jsonl.gz", ".json", ".json.gz"), "jsonl"),
    ((".html", ".htm"), "html"),
)
# <meta charset="x"> and <meta http-equiv="Content-Type" content="text/html; charset=x">.
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([\w.:-]+)""", re.IGNORECASE)
_META_SCAN_BYTES = 4096  # browsers look at the first 1,024 bytes; pages often put <meta> later
_MAX_MESSAGE = 200


@dataclass(frozen=True)
class RawRecord:
    """One input record; see the module docstring for status and reason."""

    source_path: str  # the input file
    offset: int | None = None  # byte offset (WARC), 1-based line number (JSONL), None (HTML file)
    url: str | None = None
    record_id: str | None = None  # WARC-Record-ID as written (with <>), JSONL "id"; None for ARC
    fetch_date: str | None = None  # ISO-8601 (WARC-Date)
    http_status: int | None = None
    content_type: str | None = None  # mime type only, lower-case
    html: str | None = None  # decoded document; None unless status is "ok"
    content_hash: str | None = None  # sha256 hex of the body bytes
    status: str = "ok"  # "ok" | "dropped" | "error"
    reason: str | None = None


def detect_format(path: str) -> str:
    """``"warc"``, ``"jsonl"`` or ``"html"`` from the file name; ValueError for anything else."""
    name = os.fspath(path).lower()
    for suffixes, fmt in _FORMATS:
        if name.endswith(suffixes):
            return fmt
    known = ", ".join(s for suffixes, _ in _FORMATS for s in suffixes)
    raise ValueError(f"unsupported input file {path!r}: name must end with one of {known}")


def read_records(path: str) -> Iterator[RawRecord]:
    """Stream the records of one input file (format from ``detect_format``)."""
    path = os.fspath(path)
    readers = {"warc": _read_warc, "jsonl": _read_jsonl, "html": _read_html}
    yield from readers[detect_format(path)](path)


def decode_body(body: bytes, content_type_header: str | None) -> str:
    """Decode with the header charset, else the ``<meta>`` charset, else UTF-8; never raises.

    Each candidate is tried strictly in that order; if none fits, the first usable declared charset
    (else UTF-8) decodes with replacement characters.
    """
    declared = [_whatwg_alias(c) for c in (_parse_content_type(content_type_header)[1], _meta_charset(body)) if c]
    for charset in declared + ["utf-8"]:
        try:
            return body.decode(charset)
        except (LookupError, ValueError):  # unknown or non-text codec, or undecodable bytes
            continue
    for charset in declared:
        try:
            return body.decode(charset, "replace")
        except (LookupError, ValueError):
            continue
    return body.decode("utf-8", "replace")


def _read_warc(path: str) -> Iterator[RawRecord]:
    with open(path, "rb") as stream:
        # arc2warc presents ARC records as WARC responses, so one code path serves both; it is off
        # for WARC files because in that mode warcio accepts any line as an ARC record header.
        is_arc = path.lower().endswith((".arc", ".arc.gz"))
        records = ArchiveIterator(stream, arc2warc=is_arc)
        try:
            for record in records:
                if record.format != "warc":  # warcio reads an unknown first line as an ARC header
                    yield _unreadable(path, records.offset, "not a WARC record")
                    return
                if record.rec_type != "response":
                    continue  # warcinfo, request, metadata, revisit: not documents
                row = _warc_response(path, records.offset, record, is_arc)
                yield row
                if row.status == "error":
                    return
        except Exception as exc:  # warcio raises many types (ArchiveLoadFailed, zlib.error, EOFError...)
            yield _unreadable(path, records.offset, _describe(exc))
            return
        # warcio ends silently on a file cut inside a record header or a gzip member.
        size = os.fstat(stream.fileno()).st_size
        if records.offset < size:
            yield _unreadable(path, records.offset, f"{size - records.offset} bytes at the end are not a record")


def _warc_response(path: str, offset: int, record, is_arc: bool) -> RawRecord:
    headers = record.rec_headers
    http = record.http_headers
    content_type_header = (http.get_header("Content-Type") if http else None) or headers.get_header(
        "WARC-Identified-Payload-Type"
    )
    status_code = http.get_statuscode() if http else None
    fields = dict(
        source_path=path,
        offset=offset,
        url=headers.get_header("WARC-Target-URI"),
        # arc2warc invents a random id per read, which would differ on every retry.
        record_id=None if is_arc else headers.get_header("WARC-Record-ID"),
        fetch_date=headers.get_header("WARC-Date"),
        http_status=int(status_code) if status_code and status_code.isdigit() else None,
        content_type=_parse_content_type(content_type_header)[0],
    )
    # Bodies of unwanted records are never read: warcio skips them when the iterator moves on.
    if fields["http_status"] != 200:
        return RawRecord(**fields, status="dropped", reason="http_status_not_200")
    if fields["content_type"] not in _HTML_TYPES:
        return RawRecord(**fields, status="dropped", reason="not_html")
    body = record.content_stream().read()
    # Read the rest of the raw block: a short read means the file ends inside this record.
    while record.raw_stream.read(1 << 16):
        pass
    missing = getattr(record.raw_stream, "limit", 0)
    if missing:
        return _unreadable(path, offset, f"truncated record: {missing} bytes missing")
    return _document(fields, body, content_type_header)


def _read_jsonl(path: str) -> Iterator[RawRecord]:
    opener = gzip.open if path.lower().endswith(".gz") else open
    with opener(path, "rb") as stream:
        line_number = 0
        try:
            for line_number, line in enumerate(stream, start=1):
                if line.strip():
                    yield _jsonl_record(path, line_number, line)
        except Exception as exc:  # corrupt or truncated gzip: nothing after this point is readable
            yield _unreadable(path, line_number + 1, _describe(exc))


def _jsonl_record(path: str, line_number: int, line: bytes) -> RawRecord:
    try:
        obj = json.loads(line)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        return RawRecord(path, line_number, status="error", reason=f"invalid_json: {_describe(exc)}")
    if not isinstance(obj, dict):
        reason = f"invalid_json: expected an object, got {type(obj).__name__}"
        return RawRecord(path, line_number, status="error", reason=reason)
    fields = dict(
        source_path=path,
        offset=line_number,
        url=_str_or_none(obj.get("url")),
        record_id=_str_or_none(obj.get("id")),
        fetch_date=_str_or_none(obj.get("date")),
    )
    html, text = obj.get("html"), obj.get("text")
    if isinstance(html, str):
        content_type, source = "text/html", html
    elif isinstance(text, str):
        content_type, source = "text/plain", text
    else:
        return RawRecord(**fields, status="dropped", reason="missing_text")
    # JSON may carry lone surrogates ("\ud800"), which UTF-8 cannot encode; they become "?".
    body = source.encode("utf-8", "replace")
    if not body.strip():
        return RawRecord(**fields, content_type=content_type, status="dropped", reason="empty_body")
    document = body.decode("utf-8")
    return RawRecord(
        **fields,
        content_type=content_type,
        html=document if content_type == "text/html" else _text_to_html(document),
        content_hash=hashlib.sha256(body).hexdigest(),
    )


def _read_html(path: str) -> Iterator[RawRecord]:
    fields = dict(source_path=path, url=Path(path).resolve().as_uri(), content_type="text/html")
    yield _document(fields, Path(path).read_bytes(), None)


def _document(fields: dict, body: bytes, content_type_header: str | None) -> RawRecord:
    """An ``ok`` record for a non-empty body, else ``dropped`` as ``empty_body``."""
    if not body.strip():
        return RawRecord(**fields, status="dropped", reason="empty_body")
    return RawRecord(
        **fields, html=decode_body(body, content_type_header), content_hash=hashlib.sha256(body).hexdigest()
    )


def _text_to_html(text: str) -> str:
    """Plain text as paragraphs (blank-line separated) and lines; it has no headers."""
    paragraphs = re.split(r"\n\s*\n", text.strip())
    return "".join(f"<p>{html_lib.escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs if p.strip())


def _parse_content_type(header: str | None) -> tuple[str | None, str | None]:
    """(mime type, charset) from a Content-Type header value, both lower-case."""
    if not header:
        return None, None
    mime, *params = header.split(";")
    charset = None
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip("\"'").lower() or None
    return mime.strip().lower() or None, charset


def _meta_charset(body: bytes) -> str | None:
    match = _META_CHARSET.search(body[:_META_SCAN_BYTES])
    return match.group(1).decode("ascii").lower() if match else None


def _whatwg_alias(charset: str) -> str:
    """Browsers decode pages labelled latin-1 or ascii as windows-1252, and so must we: such
    pages routinely contain cp1252 quotes and dashes, which latin-1 turns into control characters."""
    try:
        name = codecs.lookup(charset).name
    except (LookupError, ValueError):
        return charset
    return "cp1252" if name in ("ascii", "iso8859-1") else charset


def _unreadable(path: str, offset: int | None, message: str) -> RawRecord:
    return RawRecord(path, offset, status="error", reason=f"unreadable_record: {message}")


def _describe(exc: Exception) -> str:
    return (str(exc) or type(exc).__name__).replace("\n", " ")[:_MAX_MESSAGE]


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)
