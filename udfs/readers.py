"""Stream input files (WARC/ARC/WET, JSON Lines, Parquet, single HTML files) into ``RawRecord``s.

Work is planned in ``WorkUnit``s (``plan_units``), each read by one task (``read_records``):

- uncompressed JSON Lines: byte ranges of ``split_bytes``; a unit owns every line that *starts* in
  ``[start, end)`` (Hadoop's TextInputFormat rule), so neighbouring units never share or lose a line;
- Parquet: runs of whole row groups of about ``split_bytes`` (uncompressed), streamed in small batches;
- gzipped WARC and WET files larger than ``split_bytes``: byte ranges of about ``split_bytes`` of the
  compressed file, cut at gzip member starts (each record is its own member, which decompresses on its
  own); a unit owns every record whose member *starts* in ``[start, end)``, read past ``end`` to the end
  of its last record. The cuts come from the file's CDX(J) index when one lies next to it
  (``<file>.cdxj`` or ``<file>.cdx``), else from a scan for the gzip magic bytes from each target
  offset on; either way a cut is only taken where a member decompresses into a WARC record header
  (``_warc_member_at``), because payloads may hold gzip magic bytes too. A few 1 GB files thus still
  keep every core busy; a file with no valid cut (one big gzip member, say) stays one unit. A payload
  that is itself a gzipped WARC record would pass the check: give an index for such crawls;
- other WARC, ARC, WET, gzipped JSON Lines and HTML files: one unit per file (a plain stream's next record
  start found by scanning is ambiguous, and ARC records have no header to check).

Every record gets a status instead of raising:

- ``ok``: ``html`` holds the decoded document (plain text becomes paragraphs, see ``_text_to_html``);
- ``dropped``: a readable record we do not want: ``redirect`` (3xx), ``http_status_not_200``, ``not_html``
  (declared or, without a Content-Type, sniffed), ``bad_content_encoding`` (a gzip/deflate body that does
  not inflate, or an encoding we cannot undo), ``too_large`` (body over ``max_record_bytes``, never read
  further), ``binary_payload`` (NUL or control bytes in a body labelled as text), ``empty_body``
  (empty or whitespace only), ``missing_text`` (JSONL/Parquet row without a document field);
- ``error``: ``reason`` is ``"<code>: <message>"``. An unreadable WARC record or a corrupt/truncated file
  yields one ``unreadable_record`` error at the failing offset; a gzipped WARC/WET file is read on from the
  next gzip member holding a record header, other files end the unit there, because nothing after it can be
  located reliably. A JSON line that is not UTF-8 (``invalid_utf8``) or not JSON (``invalid_json``) is one
  error and the next line is read; a Parquet file without the configured columns is one ``missing_columns``
  error.

A read that fails on the network or the store rather than on the bytes (a dropped connection, a timeout) is
retried by ``udfs.sources.open_file`` and, if it keeps failing, raises ``sources.TransientReadError``: no
record of it, the task fails and the unit is read again (by Spark's retry, or the next run).

``offset`` locates a record: byte offset (WARC; JSONL, in the uncompressed stream), row number (Parquet),
None (HTML file); ``length`` is the bytes from there that hold it (a WARC record's gzip member, a JSONL
line), so that ``read_back`` can read one record again without the rest of its file. ``content_hash`` is
the sha256 of the body bytes after HTTP transfer/content decoding (chunked, gzip) and before charset
decoding, so the same page hashes alike however it was served.
Charsets: see ``decode_body``; ``charset_source`` says which evidence won.

Files are local paths or URLs (s3://, gs://, abfss://, https://, dbfs:/), all opened by ``open_input``.
A missing or unopenable file still raises ``OSError``: that is a bad argument, not a bad record.
This module is pure: no pyspark, no vllm.
"""

from __future__ import annotations

import bisect
import codecs
import dataclasses
import gzip
import hashlib
import html as html_lib
import io
import itertools
import json
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pyarrow.parquet as pq
from charset_normalizer import from_bytes
from warcio.archiveiterator import ArchiveIterator
from warcio.bufferedreaders import ChunkedDataReader

from udfs import sources

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_FORMATS = (
    ((".warc", ".warc.gz", ".arc", ".arc.gz", ".warc.wet", ".warc.wet.gz", ".wet", ".wet.gz"), "warc"),
    ((".jsonl", ".jsonl.gz", ".json", ".json.gz"), "jsonl"),
    ((".parquet",), "parquet"),
    ((".html", ".htm"), "html"),
)
# <meta charset="x"> and <meta http-equiv="Content-Type" content="text/html; charset=x">.
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([\w.:-]+)""", re.IGNORECASE)
_META_SCAN_BYTES = 4096  # browsers look at the first 1,024 bytes; pages often put <meta> later
# WHATWG MIME sniffing: a body is HTML when, after whitespace, it starts with one of these tags followed by a
# space or ">" (we also allow an XML prolog before it, as XHTML pages have, and "/" for "<br/>").
_HTML_START = re.compile(
    rb"""\s*(?:<\?xml[^>]{0,200}>\s*)?<(?:!--|(?:!doctype\s+html|html|head|script|iframe|h1|div|font|table|a|style|title|b|body|br|p)[\s>/])""",
    re.IGNORECASE,
)
_SNIFF_BYTES = 1024
# Bytes that never occur in text (WHATWG "binary data bytes"): C0 controls except tab, LF, FF, CR and ESC.
_BINARY_BYTES = bytes([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20)])
_BINARY_SCAN_BYTES = 8192
_MAX_BINARY_FRACTION = 0.01  # a stray NUL in a text page is noise; compressed or image data is ~10 %
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_WIDE_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_BE)  # (UTF-32-LE's starts like UTF-16-LE's)
_DETECT_BYTES = 65536  # charset-normalizer decodes its whole input once per candidate charset
_ASCII_BYTES = bytes(range(0x80))
_MIN_UTF8_EVIDENCE = 10  # valid multi-byte UTF-8 bytes per invalid byte for a body to count as UTF-8
_JSON_ESCAPE_FACTOR = 6  # "\u0001" is 6 bytes of JSON for 1 byte of text: the longest line a capped record needs
_PARQUET_BATCH_ROWS = 64
_CHUNK = 1 << 16
_MAX_MESSAGE = 200


@dataclass(frozen=True)
class ReaderConfig:
    """The ``ingest:`` section: bounds per record, how files are split into tasks, and field names."""

    max_record_bytes: int = 2 << 20  # decoded body; a bigger record is dropped as too_large, unread beyond this
    # target size of a work unit: JSONL byte ranges, Parquet row groups, byte ranges of gzipped WARC/WET files
    split_bytes: int = 128 << 20
    url_field: str = "url"  # JSONL keys / Parquet columns
    html_field: str = "html"  # the page's HTML
    text_field: str = "text"  # used when a record has no html
    id_field: str = "id"  # the record's own id, kept as record_id
    date_field: str = "date"  # the fetch date, kept as fetch_date
    # Keep each document's html in the documents table. Off: documents point at their record (file, offset,
    # length, content hash) and the segment stage reads it back (``read_back``), so the crawl is not copied.
    store_html: bool = False

    def __post_init__(self) -> None:
        for name in ("max_record_bytes", "split_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("url_field", "html_field", "text_field", "id_field", "date_field"):
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")


@dataclass(frozen=True)
class WorkUnit:
    """What one task reads: bytes ``[start, end)`` of an uncompressed JSONL file, the records whose gzip
    members start in bytes ``[start, end)`` of a WARC.gz file (``end=None``: to the end of the file), row
    groups ``[start, end)`` of a Parquet file, or a whole file (``start=0, end=None``)."""

    path: str
    start: int = 0
    end: int | None = None


@dataclass(frozen=True)
class RawRecord:
    """One input record; see the module docstring for status and reason."""

    source_path: str  # the input file
    offset: int | None = None  # see the module docstring
    length: int | None = None  # bytes from ``offset`` that hold the record (WARC: its gzip member; JSONL: its line)
    url: str | None = None
    record_id: str | None = None  # WARC-Record-ID as written (with <>), JSONL/Parquet "id"; None for ARC
    fetch_date: str | None = None  # ISO-8601 (WARC-Date)
    http_status: int | None = None
    content_type: str | None = None  # mime type only, lower-case; None when the record declares none
    html: str | None = None  # decoded document; None unless status is "ok"
    content_hash: str | None = None  # sha256 hex of the body bytes
    charset: str | None = None  # Python codec name the body was decoded with; None when the input held text
    charset_source: str | None = None  # "bom" | "header" | "meta" | "detected" | "default"
    status: str = "ok"  # "ok" | "dropped" | "error"
    reason: str | None = None


class Decoded(NamedTuple):
    text: str
    charset: str  # Python codec name, e.g. "utf-8", "cp1252"
    source: str  # "bom" | "header" | "meta" | "detected" | "default"


def input_format(path: str) -> str | None:
    """``"warc"`` (also ARC and WET), ``"jsonl"``, ``"parquet"`` or ``"html"`` from the file name; None if unknown."""
    name = os.fspath(path).lower()
    return next((fmt for suffixes, fmt in _FORMATS if name.endswith(suffixes)), None)


def detect_format(path: str) -> str:
    """``input_format``, or ValueError naming the accepted suffixes."""
    fmt = input_format(path)
    if fmt is None:
        known = ", ".join(s for suffixes, _ in _FORMATS for s in suffixes)
        raise ValueError(f"unsupported input file {path!r}: name must end with one of {known}")
    return fmt


def plan_units(paths: list[str], cfg: ReaderConfig) -> list[WorkUnit]:
    """Split input files into work units (see the module docstring), in path order.

    Reads only file sizes and Parquet footers; a Parquet file whose footer is unreadable is one unit, so its
    error is reported by the task that reads it, not raised here.
    """
    units: list[WorkUnit] = []
    for path in paths:
        fmt = detect_format(path)
        if fmt == "jsonl" and not path.lower().endswith(".gz"):
            size = sources.size(path)
            units += [WorkUnit(path, s, min(s + cfg.split_bytes, size)) for s in range(0, size, cfg.split_bytes)] or [
                WorkUnit(path, 0, 0)
            ]
        elif fmt == "parquet":
            units += _row_group_units(path, cfg.split_bytes)
        elif fmt == "warc" and path.lower().endswith((".warc.gz", ".wet.gz")):
            units += _gzip_member_units(path, cfg.split_bytes)
        else:
            units.append(WorkUnit(path))
    return units


def read_records(unit: WorkUnit | str, cfg: ReaderConfig = ReaderConfig()) -> Iterator[RawRecord]:
    """Stream the records of one work unit (or a whole file, given its path)."""
    unit = unit if isinstance(unit, WorkUnit) else WorkUnit(os.fspath(unit))
    readers = {"warc": _read_warc, "jsonl": _read_jsonl, "parquet": _read_parquet, "html": _read_html}
    yield from readers[detect_format(unit.path)](unit, cfg)


def decode_body(body: bytes, content_type_header: str | None) -> Decoded:
    """Decode a body with the best-supported charset; never raises.

    Order: a byte-order mark; then the header label, then the ``<meta>`` label, each if it is a known text
    codec that decodes the body strictly; else detection. Non-ASCII bytes that form UTF-8 (allowing one
    invalid byte per ``_MIN_UTF8_EVIDENCE`` valid ones) are UTF-8 whatever a label says: legacy text
    almost never forms valid multi-byte sequences, while servers that label UTF-8 pages latin-1 are common.
    Other bodies are detected by charset-normalizer; when it finds nothing, UTF-8 with replacement
    characters (``default``).
    """
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return Decoded(body.decode(codec, "replace"), codecs.lookup(codec).name, "bom")
    utf8 = _as_utf8(body)
    for source, label in (("header", _parse_content_type(content_type_header)[1]), ("meta", _meta_charset(body))):
        codec = _text_codec(label)
        if codec is None or (codec.startswith(("utf-16", "utf-32")) and b"\x00" not in body[:_SNIFF_BYTES]):
            continue  # no usable label; UTF-16/32 text of any script has NULs, so such a label is wrong
        if utf8 is not None:
            return Decoded(utf8, "utf-8", source if codec == "utf-8" else "detected")
        try:
            return Decoded(body.decode(codec), codec, source)
        except UnicodeDecodeError:  # a wrong label: try the next piece of evidence
            continue
    if utf8 is not None:
        return Decoded(utf8, "utf-8", "detected")
    if body.isascii():
        return Decoded(body.decode("ascii"), "utf-8", "default")
    detected = _detect_charset(body)
    if detected is not None:
        return Decoded(body.decode(detected, "replace"), detected, "detected")
    return Decoded(body.decode("utf-8", "replace"), "utf-8", "default")


def looks_like_html(body: bytes) -> bool:
    """WHATWG-style sniffing for a body served without a Content-Type."""
    sample = body[len(codecs.BOM_UTF8) :] if body.startswith(codecs.BOM_UTF8) else body
    return _HTML_START.match(sample[:_SNIFF_BYTES]) is not None


def is_binary(body: bytes, charset_label: str | None = None) -> bool:
    """True when the start of ``body`` holds bytes that text does not (NUL, most C0 controls).

    UTF-16/32 text is full of NULs: a body with their byte-order mark or label is not judged here.
    """
    if body.startswith(_WIDE_BOMS) or (charset_label or "").startswith(("utf-16", "utf-32")):
        return False
    sample = body[:_BINARY_SCAN_BYTES]
    binary = len(sample) - len(sample.translate(None, _BINARY_BYTES))
    return binary > len(sample) * _MAX_BINARY_FRACTION


# --- WARC, ARC and WET -----------------------------------------------------------------------------------


class _ContentEncodingError(ValueError):
    """A body whose Content-Encoding cannot be undone."""


def open_input(path: str, offset: int = 0, length: int | None = None):
    """A binary file object of the input file ``path``: the one place the readers open input files.

    ``path`` is a local path or a URL (object stores, HTTP, dbfs:/; see ``udfs.sources``). The object starts at
    ``offset``; without ``length`` it is seekable, with it it ends after ``length`` bytes, all a remote read fetches.
    """
    return sources.open_file(path, offset, length)


def _read_warc(unit: WorkUnit, cfg: ReaderConfig) -> Iterator[RawRecord]:
    # Each record of a gzipped WARC or WET file is its own gzip member: after a record that cannot be read,
    # reading goes on at the next member that holds a WARC record header (the check that cuts work units).
    # Other archives end at such a record: where their next record starts cannot be told from payload bytes.
    resyncs = unit.path.lower().endswith((".warc.gz", ".wet.gz"))
    with open_input(unit.path) as stream:
        size = sources.size(unit.path) if unit.end is None else unit.end
        start: int | None = unit.start
        while start is not None:
            stream.seek(start)  # warcio counts offsets from the stream's position: they stay absolute
            failed = None
            for row in _warc_records(stream, unit.path, unit.end, size, cfg):
                failed = row.offset if row.status == "error" else None  # an error is the last row of a run
                yield row
            start = _next_cut(stream, failed + 1, size, None) if resyncs and failed is not None else None


def _warc_records(stream, path: str, end: int | None, size: int, cfg: ReaderConfig) -> Iterator[RawRecord]:
    """The records of ``stream`` (at a record start) whose offsets are below ``end`` (None: all of them)."""
    # arc2warc presents ARC records as WARC responses, so one code path serves both; it is off
    # for WARC files because in that mode warcio accepts any line as an ARC record header.
    is_arc = path.lower().endswith((".arc", ".arc.gz"))
    records = ArchiveIterator(stream, arc2warc=is_arc)
    try:
        for record in records:
            if end is not None and records.offset >= end:
                return  # the next unit's first record
            if record.format != "warc":  # warcio reads an unknown first line as an ARC header
                yield _unreadable(path, records.offset, "not a WARC record")
                return
            if record.rec_type == "response":
                row = _warc_response(path, records.offset, record, is_arc, cfg)
            elif record.rec_type == "conversion":  # WET: text extracted from a response
                row = _warc_conversion(path, records.offset, record, cfg)
            else:
                continue  # warcinfo, request, metadata, revisit: not documents
            if row.status == "error":
                yield row
                return
            # The member's length (warcio reads the record to its end for it): all a read-back needs.
            yield dataclasses.replace(row, length=records.get_record_length())
    except Exception as exc:  # warcio raises many types (ArchiveLoadFailed, zlib.error, EOFError...)
        _raise_if_interrupted(exc)
        yield _unreadable(path, records.offset, _describe(exc))
        return
    # warcio ends silently on a file cut inside a record header or a gzip member.
    if records.offset < size:
        yield _unreadable(path, records.offset, f"{size - records.offset} bytes at the end are not a record")


def read_record_at(path: str, offset: int, length: int | None = None, cfg: ReaderConfig = ReaderConfig()) -> RawRecord:
    """The ``RawRecord`` that ``read_records`` produced for the WARC record at byte ``offset`` of ``path``.

    A gzip member decompresses on its own, so only the record's ``length`` bytes (its member, as a CDX
    index gives it) are read; without ``length`` the reader stops after the record. An offset that holds
    no document record (a request, or not a record start) yields an ``unreadable_record`` error.
    """
    if length is None:
        with open_input(path) as f:
            f.seek(offset)
            rows = list(_warc_records(f, path, offset + 1, offset + 1, cfg))
    else:  # only the member's bytes: a remote read fetches no more
        with open_input(path, offset, length) as f:
            rows = list(_warc_records(_Window(f.read(length), offset), path, offset + 1, offset + 1, cfg))
    return rows[0] if rows else _unreadable(path, offset, "no document record at this offset")


def can_read_back(path: str) -> bool:
    """Whether ``read_back`` finds a record of ``path`` by its offset without reading the file from the start:
    WARC/ARC/WET (gzipped ones are a gzip member per record), uncompressed JSON Lines and HTML files. Records
    of gzipped JSON Lines and of Parquet files keep their html in the documents table instead."""
    fmt = input_format(path)
    return fmt in ("warc", "html") or (fmt == "jsonl" and not path.lower().endswith(".gz"))


def read_back(
    path: str, offset: int | None, length: int | None, content_hash: str, cfg: ReaderConfig = ReaderConfig()
) -> RawRecord:
    """The record ingest read at ``offset`` of ``path`` (``can_read_back`` formats), checked against the
    ``content_hash`` ingest stored: a record is only ever segmented from the bytes that made its doc_id.

    Errors instead of a document: ``source_missing`` (the file is gone or unopenable: moved, deleted) and
    ``source_changed`` (no readable document at ``offset`` any more, or one whose body hashes otherwise: the
    file was rewritten since ingest). A file whose size or mtime changed but whose record is intact (touched,
    copied, appended to) reads fine: its bytes are the ones ingest saw.
    """
    try:
        fmt = detect_format(path)
        if fmt == "warc":
            record = read_record_at(path, offset, length, cfg)
        elif fmt == "html":
            record = next(_read_html(WorkUnit(path), cfg))
        else:
            with open_input(path, offset, length) as f:
                record = dataclasses.replace(_jsonl_record(path, offset, f.read(length), cfg), length=length)
    except (OSError, ValueError) as exc:  # ValueError: a format that cannot be read back
        _raise_if_interrupted(exc)
        return RawRecord(path, offset, status="error", reason=f"source_missing: {_describe(exc)}")
    if record.status != "ok" or record.content_hash != content_hash:
        found = record.reason if record.status != "ok" else f"content hash {record.content_hash[:12]}"
        reason = f"source_changed: at offset {offset} expected content hash {content_hash[:12]}, found {found}"
        return RawRecord(path, offset, status="error", reason=reason[:_MAX_MESSAGE])
    return record


class _Window(io.BytesIO):
    """Bytes read from ``base`` onwards of a file, telling positions as offsets in that file."""

    def __init__(self, data: bytes, base: int) -> None:
        super().__init__(data)
        self._base = base

    def tell(self) -> int:
        return super().tell() + self._base


def _record_fields(path: str, offset: int, record, is_arc: bool = False) -> dict:
    headers = record.rec_headers
    return dict(
        source_path=path,
        offset=offset,
        url=headers.get_header("WARC-Target-URI"),
        # arc2warc invents a random id per read, which would differ on every retry.
        record_id=None if is_arc else headers.get_header("WARC-Record-ID"),
        fetch_date=headers.get_header("WARC-Date"),
    )


def _warc_response(path: str, offset: int, record, is_arc: bool, cfg: ReaderConfig) -> RawRecord:
    http = record.http_headers
    # Common Crawl's own detection (WARC-Identified-Payload-Type) stands in for a missing HTTP header.
    content_type_header = (http.get_header("Content-Type") if http else None) or record.rec_headers.get_header(
        "WARC-Identified-Payload-Type"
    )
    status_code = http.get_statuscode() if http else None
    http_status = int(status_code) if status_code and status_code.isdigit() else None
    fields = dict(
        _record_fields(path, offset, record, is_arc),
        http_status=http_status,
        content_type=_parse_content_type(content_type_header)[0],
    )
    # Bodies of unwanted records are never read: warcio skips them when the iterator moves on.
    if http_status is not None and 300 <= http_status < 400:
        return RawRecord(**fields, status="dropped", reason="redirect")
    if http_status != 200:
        return RawRecord(**fields, status="dropped", reason="http_status_not_200")
    if fields["content_type"] is not None and fields["content_type"] not in _HTML_TYPES:
        return RawRecord(**fields, status="dropped", reason="not_html")
    try:
        body, bad_encoding = _http_body(http, record.raw_stream, cfg.max_record_bytes + 1), False
    except _ContentEncodingError:
        body, bad_encoding = b"", True
    missing = _drain(record)
    if missing:
        return _unreadable(path, offset, f"truncated record: {missing} bytes missing")
    if bad_encoding:
        return RawRecord(**fields, status="dropped", reason="bad_content_encoding")
    return _document(fields, body, cfg, content_type_header=content_type_header, sniff=fields["content_type"] is None)


def _warc_conversion(path: str, offset: int, record, cfg: ReaderConfig) -> RawRecord:
    content_type_header = record.rec_headers.get_header("Content-Type")
    fields = dict(
        _record_fields(path, offset, record), content_type=_parse_content_type(content_type_header)[0] or "text/plain"
    )
    if fields["content_type"] != "text/plain" and fields["content_type"] not in _HTML_TYPES:
        return RawRecord(**fields, status="dropped", reason="not_html")
    body = _read_at_most(record.raw_stream, cfg.max_record_bytes + 1)
    missing = _drain(record)
    if missing:
        return _unreadable(path, offset, f"truncated record: {missing} bytes missing")
    kind = "text" if fields["content_type"] == "text/plain" else "html"
    return _document(fields, body, cfg, kind=kind, content_type_header=content_type_header)


def _http_body(http, raw, limit: int) -> bytes:
    """The payload after transfer decoding (chunked) and content decoding (gzip, deflate), at most ``limit`` bytes.

    warcio's ``content_stream`` would decode too, but it takes an undecodable first block as plain data and
    ends a body that breaks later silently (printing to stderr); here both are ``_ContentEncodingError``.
    Common Crawl stores payloads decoded and renames the headers (X-Crawler-Content-Encoding), so this
    matters for WARCs written by other crawlers.
    """
    stream = (
        ChunkedDataReader(raw) if (http.get_header("Transfer-Encoding") or "").strip().lower() == "chunked" else raw
    )
    encoding = (http.get_header("Content-Encoding") or "identity").strip().lower()
    if encoding == "identity":
        return _read_at_most(stream, limit)
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise _ContentEncodingError(f"unsupported Content-Encoding {encoding!r}")
    return _inflate(stream, limit)


def _inflate(stream, limit: int) -> bytes:
    """Inflate a gzip or zlib stream (or raw deflate, which some servers send as "deflate"), at most ``limit``
    bytes of output: a compression bomb costs no more than a plain body."""
    data = stream.read(_CHUNK)
    if not data:
        return b""
    for wbits in (32 + zlib.MAX_WBITS, -zlib.MAX_WBITS):  # gzip or zlib header (auto), then headerless
        inflater = zlib.decompressobj(wbits)
        try:
            out = bytearray(inflater.decompress(data, limit))
            break
        except zlib.error as exc:
            error = exc
    else:
        raise _ContentEncodingError(str(error))
    try:
        while len(out) < limit and not inflater.eof:
            data = inflater.unconsumed_tail or stream.read(_CHUNK)
            if not data:
                raise _ContentEncodingError("compressed body ends early")
            out += inflater.decompress(data, limit - len(out))
    except zlib.error as exc:
        raise _ContentEncodingError(str(exc)) from None
    return bytes(out)


def _read_at_most(stream, limit: int) -> bytes:
    parts, n = [], 0
    while n < limit:
        data = stream.read(min(_CHUNK, limit - n))
        if not data:
            break
        parts.append(data)
        n += len(data)
    return b"".join(parts)


def _drain(record) -> int:
    """Read the rest of the record's block in bounded chunks; the bytes missing if the file ends inside it."""
    while record.raw_stream.read(_CHUNK):
        pass
    return getattr(record.raw_stream, "limit", 0)


# --- work units of gzipped WARC files -------------------------------------------------------------------


_GZIP_MAGIC = b"\x1f\x8b\x08"  # gzip id bytes and the deflate method
_SCAN_CHUNK = 1 << 20
_HEADER_PROBE = 1 << 14  # compressed bytes decompressed to check a WARC record header
_WARC_HEADER = re.compile(rb"WARC/\d\.\d+\r?\n(?:[!-9;-~]+:[^\r\n]*\r?\n)*?WARC-Type:", re.IGNORECASE)


def _gzip_member_units(path: str, split_bytes: int) -> list[WorkUnit]:
    """Byte ranges of about ``split_bytes``, each starting at a gzip member holding a WARC record header."""
    size = sources.size(path)
    if size <= split_bytes:
        return [WorkUnit(path)]
    indexed = _indexed_offsets(path)
    cuts = [0]
    with open_input(path) as f:
        target = split_bytes
        while target < size:
            cut = _next_cut(f, target, size, indexed)
            if cut is None:
                break
            cuts.append(cut)
            target = cut + split_bytes
    return [WorkUnit(path, a, b) for a, b in itertools.pairwise(cuts)] + [WorkUnit(path, cuts[-1], None)]


def _next_cut(f, target: int, size: int, indexed: list[int] | None) -> int | None:
    """The first offset at or after ``target`` where a WARC record's gzip member starts, or None."""
    if indexed is not None:
        i = bisect.bisect_left(indexed, target)
        return next((o for o in indexed[i:] if o < size and _warc_member_at(f, o)), None)
    pos = target
    while pos < size:
        f.seek(pos)
        chunk = f.read(_SCAN_CHUNK + len(_GZIP_MAGIC) - 1)
        found = chunk.find(_GZIP_MAGIC)
        while found >= 0:
            if _warc_member_at(f, pos + found):
                return pos + found
            found = chunk.find(_GZIP_MAGIC, found + 1)
        pos += _SCAN_CHUNK
    return None


def _warc_member_at(f, offset: int) -> bool:
    """Whether a gzip member starts at ``offset`` and decompresses into the start of a WARC record."""
    f.seek(offset)
    data = f.read(_HEADER_PROBE)
    if not data.startswith(_GZIP_MAGIC) or len(data) < 10 or data[3] & 0xE0:  # reserved flag bits are zero
        return False
    try:
        head = zlib.decompressobj(wbits=31).decompress(data, _HEADER_PROBE)
    except zlib.error:
        return False
    return _WARC_HEADER.match(head) is not None


def _indexed_offsets(path: str) -> list[int] | None:
    """Record offsets from ``<path>.cdxj`` (JSON block with "offset") or ``<path>.cdx`` (the "V" field), sorted."""
    for suffix in (".cdxj", ".cdx"):
        if sources.exists(path + suffix):
            return sorted(set(_cdx_offsets(path + suffix)))
    return None


def _cdx_offsets(index: str) -> Iterator[int]:
    field = None  # classic CDX: the position of "V" (compressed offset) in the " CDX ..." legend
    with io.TextIOWrapper(open_input(index), encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if line.startswith(" CDX "):
                legend = line.split()[1:]
                field = legend.index("V") if "V" in legend else None
                continue
            brace = line.find("{")
            try:
                if brace >= 0:
                    yield int(json.loads(line[brace:])["offset"])
                elif field is not None:
                    yield int(line.split()[field])
            except (ValueError, KeyError, IndexError, TypeError):
                continue  # a line we cannot read costs a cut, never a record: every cut is checked anyway


# --- JSON Lines ------------------------------------------------------------------------------------------


def _read_jsonl(unit: WorkUnit, cfg: ReaderConfig) -> Iterator[RawRecord]:
    path = unit.path
    max_line = cfg.max_record_bytes * _JSON_ESCAPE_FACTOR + _CHUNK
    with open_input(path) as raw, gzip.open(raw) if path.lower().endswith(".gz") else raw as stream:
        position = unit.start
        try:
            for offset, line, length in _lines(stream, unit.start, unit.end, max_line):
                position = offset + length
                if line is None:
                    yield RawRecord(path, offset, status="dropped", reason="too_large")
                elif line.strip():
                    yield dataclasses.replace(_jsonl_record(path, offset, line, cfg), length=length)
        except Exception as exc:  # corrupt or truncated gzip: nothing after this point is readable
            _raise_if_interrupted(exc)
            yield _unreadable(path, position, _describe(exc))


def _lines(stream, start: int, end: int | None, limit: int) -> Iterator[tuple[int, bytes | None, int]]:
    """``(offset, line, length)`` for every line that starts in ``[start, end)``; a line longer than ``limit``
    is skipped without being held in memory and comes as ``(offset, None, length)``."""
    offset = start
    if start > 0:  # the line running into ``start`` belongs to the unit before
        stream.seek(start - 1)
        offset = start - 1 + _skip_line(stream)
    while end is None or offset < end:
        line = stream.readline(limit + 1)
        if not line:
            return
        if len(line) > limit and not line.endswith(b"\n"):
            length = len(line) + _skip_line(stream)
            yield offset, None, length
        else:
            length = len(line)
            yield offset, line, length
        offset += length


def _skip_line(stream) -> int:
    """Consume the rest of the current line (newline included) in bounded chunks; its length."""
    n = 0
    while True:
        chunk = stream.readline(_CHUNK)
        n += len(chunk)
        if not chunk or chunk.endswith(b"\n"):
            return n


def _jsonl_record(path: str, offset: int, line: bytes, cfg: ReaderConfig) -> RawRecord:
    # JSON text is UTF-8 (RFC 8259): a line with other bytes is corrupt, and guessing its charset or replacing
    # the bytes would store text nobody wrote. The line is one error; the next line is read as usual.
    try:
        text = line.decode("utf-8-sig")  # a byte order mark may start the file
    except UnicodeDecodeError as exc:
        reason = f"invalid_utf8: byte 0x{line[exc.start]:02x} at byte {exc.start} of the line ({exc.reason})"
        return RawRecord(path, offset, status="error", reason=reason)
    try:
        obj = json.loads(text)
    except ValueError as exc:
        return RawRecord(path, offset, status="error", reason=f"invalid_json: {_describe(exc)}")
    if not isinstance(obj, dict):
        reason = f"invalid_json: expected an object, got {type(obj).__name__}"
        return RawRecord(path, offset, status="error", reason=reason)
    return _fields_record(path, offset, obj, cfg)


def _fields_record(path: str, offset: int, obj: dict, cfg: ReaderConfig) -> RawRecord:
    """A JSONL object or Parquet row: html preferred, else text; str values are text already, bytes are decoded."""
    fields = dict(
        source_path=path,
        offset=offset,
        url=_str_or_none(obj.get(cfg.url_field)),
        record_id=_str_or_none(obj.get(cfg.id_field)),
        fetch_date=_str_or_none(obj.get(cfg.date_field)),
    )
    html, text = obj.get(cfg.html_field), obj.get(cfg.text_field)
    if isinstance(html, (str, bytes)):
        kind, value, fields["content_type"] = "html", html, "text/html"
    elif isinstance(text, (str, bytes)):
        kind, value, fields["content_type"] = "text", text, "text/plain"
    else:
        return RawRecord(**fields, status="dropped", reason="missing_text")
    if isinstance(value, bytes):
        return _document(fields, value, cfg, kind=kind)
    # JSON may carry lone surrogates ("\ud800"), which UTF-8 cannot encode; they become "?".
    body = value.encode("utf-8", "replace")
    return _document(fields, body, cfg, kind=kind, text=body.decode("utf-8"))


# --- Parquet ---------------------------------------------------------------------------------------------


def _row_group_units(path: str, split_bytes: int) -> list[WorkUnit]:
    try:
        with open_input(path) as f:
            meta = pq.read_metadata(f)
    except Exception as exc:  # unreadable footer: the reading task reports it
        _raise_if_interrupted(exc)
        return [WorkUnit(path)]
    units, start, size = [], 0, 0
    for i in range(meta.num_row_groups):
        size += meta.row_group(i).total_byte_size
        if size >= split_bytes:
            units.append(WorkUnit(path, start, i + 1))
            start, size = i + 1, 0
    if start < meta.num_row_groups or not units:
        units.append(WorkUnit(path, start, meta.num_row_groups))
    return units


def _read_parquet(unit: WorkUnit, cfg: ReaderConfig) -> Iterator[RawRecord]:
    path, offset, source = unit.path, 0, None
    try:
        source = open_input(path)
        parquet = pq.ParquetFile(source)
        end = parquet.num_row_groups if unit.end is None else unit.end
        offset = sum(parquet.metadata.row_group(i).num_rows for i in range(unit.start))
        names = set(parquet.schema_arrow.names)
        if cfg.html_field not in names and cfg.text_field not in names:
            reason = f"missing_columns: neither {cfg.html_field!r} nor {cfg.text_field!r} in {sorted(names)}"[
                :_MAX_MESSAGE
            ]
            yield RawRecord(path, offset, status="error", reason=reason)
            return
        columns = [
            c for c in (cfg.url_field, cfg.id_field, cfg.date_field, cfg.html_field, cfg.text_field) if c in names
        ]
        for batch in parquet.iter_batches(
            batch_size=_PARQUET_BATCH_ROWS, row_groups=list(range(unit.start, end)), columns=columns
        ):
            for row in batch.to_pylist():
                yield _fields_record(path, offset, row, cfg)
                offset += 1
    except Exception as exc:  # ArrowInvalid, OSError: a corrupt footer or page
        _raise_if_interrupted(exc)
        yield _unreadable(path, offset, _describe(exc))
    finally:
        if source is not None:
            source.close()


# --- HTML files ------------------------------------------------------------------------------------------


def _read_html(unit: WorkUnit, cfg: ReaderConfig) -> Iterator[RawRecord]:
    url = unit.path if sources.is_url(unit.path) else Path(unit.path).resolve().as_uri()
    fields = dict(source_path=unit.path, url=url, content_type="text/html")
    with open_input(unit.path) as f:
        body = f.read(cfg.max_record_bytes + 1)
    yield _document(fields, body, cfg)


# --- shared ----------------------------------------------------------------------------------------------


def _document(
    fields: dict,
    body: bytes,
    cfg: ReaderConfig,
    *,
    kind: str = "html",
    content_type_header: str | None = None,
    sniff: bool = False,
    text: str | None = None,
) -> RawRecord:
    """The checks every record goes through, cheapest first: size cap, empty body, sniffing (no declared
    type), binary bytes, charset decoding. ``text`` is given when the input held text already (JSON)."""
    if len(body) > cfg.max_record_bytes:
        return RawRecord(**fields, status="dropped", reason="too_large")
    if not body.strip():
        return RawRecord(**fields, status="dropped", reason="empty_body")
    if sniff and not looks_like_html(body):
        return RawRecord(**fields, status="dropped", reason="not_html")
    if is_binary(body, _parse_content_type(content_type_header)[1]):
        return RawRecord(**fields, status="dropped", reason="binary_payload")
    charset = source = None
    if text is None:
        decoded = decode_body(body, content_type_header)
        text, charset, source = decoded.text, decoded.charset, decoded.source
    if not text.strip():  # whitespace beyond ASCII (NBSP, ideographic space, UTF-16 spaces)
        return RawRecord(**fields, status="dropped", reason="empty_body")
    return RawRecord(
        **fields,
        html=text if kind == "html" else _text_to_html(text),
        content_hash=hashlib.sha256(body).hexdigest(),
        charset=charset,
        charset_source=source,
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


def _text_codec(label: str | None) -> str | None:
    """The Python text codec for a charset label, or None (no label, unknown, or not a text codec like base64).

    Browsers decode pages labelled latin-1 or ascii as windows-1252, and so must we: such pages routinely
    contain cp1252 quotes and dashes, which latin-1 turns into control characters.
    """
    if not label:
        return None
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True):  # base64, zlib, rot13: bytes-to-bytes codecs
        return None
    return "cp1252" if info.name in ("ascii", "iso8859-1") else info.name


def _as_utf8(body: bytes) -> str | None:
    """The body as UTF-8 if it has non-ASCII bytes that are (almost all) valid UTF-8, else None."""
    if body.isascii():
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    text = body.decode("utf-8", "replace")
    invalid = text.count("\ufffd")
    valid = len(body.translate(None, _ASCII_BYTES)) - invalid  # non-ASCII bytes in valid sequences (about)
    return text if valid >= _MIN_UTF8_EVIDENCE * invalid else None


def _detect_charset(body: bytes) -> str | None:
    """charset-normalizer's best guess; among equally good guesses windows-1252, the web's legacy default
    (WHATWG): charset-normalizer scores cp1250 and cp1252 alike on French or German text and picks cp1250."""
    # A prefix cut at a newline: no legacy multi-byte charset uses 0x0A inside a character.
    sample = body[:_DETECT_BYTES]
    if len(body) > _DETECT_BYTES and b"\n" in sample:
        sample = sample[: sample.rindex(b"\n") + 1]
    matches = from_bytes(sample)
    best = matches.best()
    if best is None:
        return None
    tied = [
        m.encoding
        for m in matches
        if (m.percent_chaos, m.percent_coherence) == (best.percent_chaos, best.percent_coherence)
    ]
    return codecs.lookup("cp1252" if "cp1252" in tied else best.encoding).name


def _raise_if_interrupted(exc: BaseException) -> None:
    """Raise the ``sources.TransientReadError`` behind ``exc``, however a reader library wrapped it: a read that
    failed on the network after its retries is no corrupt record, and fails the task instead of ending the unit."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, sources.TransientReadError):
            raise exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__


def _unreadable(path: str, offset: int | None, message: str) -> RawRecord:
    return RawRecord(path, offset, status="error", reason=f"unreadable_record: {message}")


def _describe(exc: Exception) -> str:
    return (str(exc) or type(exc).__name__).replace("\n", " ")[:_MAX_MESSAGE]


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)
