"""Unit tests for udfs.readers on tiny WARC, WET, JSONL, Parquet and HTML files written into tmp_path.

Every bad input asserts its reason code; offsets are checked against where the record really is.
"""

import gzip
import hashlib
import io
import json
import os
import tracemalloc
import zlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders

from tests.conftest import http_response as response
from tests.conftest import write_records
from udfs import sources
from udfs.config import ConfigError, load_config
from udfs.readers import (
    ReaderConfig,
    WorkUnit,
    decode_body,
    detect_format,
    is_binary,
    looks_like_html,
    plan_units,
    read_back,
    read_records,
)

PAGE = b"<html><head><title>t</title></head><body><h2>Hello</h2><p>Caf\xc3\xa9 text.</p></body></html>"
FRENCH = (
    "<html><body><h2>Café</h2><p>"
    + "Le café est très bon, à la française. Élève, où êtes-vous? Ça va très bien. " * 3
    + "</p></body></html>"
)
RUSSIAN = (
    "<html><body><h2>Привет</h2><p>"
    + "Привет, как дела? Это тестовая страница на русском языке. Спасибо. " * 3
    + "</p></body></html>"
)


def request(writer, url):
    headers = StatusAndHeaders("GET / HTTP/1.1", [("Host", "example.com")], is_http_request=True)
    return writer.create_warc_record(url, "request", payload=io.BytesIO(b""), http_headers=headers)


def conversion(writer, url, text: bytes):
    return writer.create_warc_record(url, "conversion", payload=io.BytesIO(text), warc_content_type="text/plain")


def one_response(tmp_path, body, cfg=ReaderConfig(), name="one.warc.gz", **kwargs):
    """The single record read from a WARC holding one response (kwargs: status, content_type, headers)."""
    path = write_records(tmp_path / name, lambda w: [response(w, "http://example.com/", body, **kwargs)])
    (row,) = read_records(path, cfg)
    return row


def crawl(writer):
    return [
        writer.create_warcinfo_record("crawl.warc.gz", {"software": "test"}),
        request(writer, "http://example.com/ok"),
        response(writer, "http://example.com/ok", PAGE),
        response(writer, "http://example.com/missing", b"<html>not found</html>", status="404 Not Found"),
        response(writer, "http://example.com/logo.png", b"\x89PNG\r\n", content_type="image/png"),
        response(writer, "http://example.com/empty", b"  \n"),
        response(writer, "http://example.com/x", PAGE, content_type="application/xhtml+xml"),
    ]


# --- WARC records ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("gzip_records", [True, False])
def test_warc_keeps_responses_only_and_gives_drop_reasons(tmp_path, gzip_records):
    path = write_records(tmp_path / ("crawl.warc.gz" if gzip_records else "crawl.warc"), crawl, gzip_records)
    rows = list(read_records(path))
    assert [(r.url, r.status, r.reason) for r in rows] == [
        ("http://example.com/ok", "ok", None),
        ("http://example.com/missing", "dropped", "http_status_not_200"),
        ("http://example.com/logo.png", "dropped", "not_html"),
        ("http://example.com/empty", "dropped", "empty_body"),
        ("http://example.com/x", "ok", None),
    ]
    ok = rows[0]
    assert ok.html == PAGE.decode("utf-8")
    assert (ok.http_status, ok.content_type, ok.source_path) == (200, "text/html", path)
    assert (ok.charset, ok.charset_source) == ("utf-8", "header")
    assert ok.content_hash == hashlib.sha256(PAGE).hexdigest()
    assert ok.record_id.startswith("<urn:uuid:") and ok.fetch_date.endswith("Z")
    assert rows[1].http_status == 404 and rows[1].html is None
    assert rows[2].content_type == "image/png"


def test_warc_offset_points_at_the_record(tmp_path):
    path = write_records(tmp_path / "crawl.warc.gz", crawl)
    row = next(r for r in read_records(path) if r.url == "http://example.com/x")
    with open(path, "rb") as stream:
        stream.seek(row.offset)
        record = next(iter(ArchiveIterator(stream)))
        assert record.rec_headers.get_header("WARC-Record-ID") == row.record_id


@pytest.mark.parametrize(
    "status, reason",
    [
        ("200 OK", None),
        ("301 Moved Permanently", "redirect"),
        ("302 Found", "redirect"),
        ("304 Not Modified", "redirect"),
        ("404 Not Found", "http_status_not_200"),
        ("500 Internal Server Error", "http_status_not_200"),
        ("206 Partial Content", "http_status_not_200"),
    ],
)
def test_http_status(tmp_path, status, reason):
    row = one_response(tmp_path, PAGE, status=status, headers=(("Location", "http://example.com/new"),))
    assert (row.reason, row.http_status) == (reason, int(status.split()[0]))


def test_warc_decodes_gzip_content_encoding_and_chunked_transfer(tmp_path):
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(PAGE), PAGE)
    raw_deflate = zlib.compressobj(wbits=-15)
    path = write_records(
        tmp_path / "enc.warc.gz",
        lambda w: [
            response(w, "http://example.com/gz", gzip.compress(PAGE), headers=[("Content-Encoding", "gzip")]),
            response(w, "http://example.com/chunked", chunked, headers=[("Transfer-Encoding", "chunked")]),
            response(w, "http://example.com/deflate", zlib.compress(PAGE), headers=[("Content-Encoding", "deflate")]),
            response(
                w,
                "http://example.com/raw",
                raw_deflate.compress(PAGE) + raw_deflate.flush(),
                headers=[("Content-Encoding", "Deflate")],
            ),
            # Common Crawl stores bodies decoded and renames the header: nothing to undo.
            response(w, "http://example.com/cc", PAGE, headers=[("X-Crawler-Content-Encoding", "gzip")]),
        ],
    )
    rows = list(read_records(path))
    assert [r.status for r in rows] == ["ok"] * 5
    assert [r.html for r in rows] == [PAGE.decode("utf-8")] * 5
    # The hash is over the decoded payload, so all serve the same content hash.
    assert {r.content_hash for r in rows} == {hashlib.sha256(PAGE).hexdigest()}


@pytest.mark.parametrize(
    "body, encoding",
    [
        (gzip.compress(PAGE)[:-30], "gzip"),  # cut: the stream never ends
        (gzip.compress(PAGE)[:20] + b"\x00" * 40 + gzip.compress(PAGE)[60:], "gzip"),  # corrupt inside
        (PAGE, "gzip"),  # labelled gzip, sent plain
        (b"\x1f\x8b\x08\x00garbage", "x-gzip"),
        (PAGE, "br"),  # an encoding we cannot undo
        (PAGE, "compress"),
    ],
)
def test_body_that_does_not_decode_is_bad_content_encoding(tmp_path, body, encoding):
    row = one_response(tmp_path, body, headers=(("Content-Encoding", encoding),))
    assert (row.status, row.reason) == ("dropped", "bad_content_encoding")


def test_gzip_bomb_is_too_large_and_inflated_only_up_to_the_cap(tmp_path):
    bomb = gzip.compress(b"<p>" + b"a" * (20 << 20), 1)
    cfg = ReaderConfig(max_record_bytes=1 << 20)
    tracemalloc.start()
    row = one_response(tmp_path, bomb, cfg, headers=(("Content-Encoding", "gzip"),))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert (row.status, row.reason) == ("dropped", "too_large")
    assert peak < 8 << 20  # 20 MiB of body never sat in memory


@pytest.mark.parametrize("size, reason", [(1000, None), (1001, "too_large")])
def test_size_cap_in_every_format(tmp_path, size, reason):
    cfg = ReaderConfig(max_record_bytes=1000)
    page = b"<p>" + b"x" * (size - 3)
    assert one_response(tmp_path, page, cfg).reason == reason
    (tmp_path / "page.html").write_bytes(page)
    assert next(read_records(str(tmp_path / "page.html"), cfg)).reason == reason
    jsonl = write_jsonl(tmp_path / "p.jsonl", [json.dumps({"html": page.decode()})])
    assert next(read_records(jsonl, cfg)).reason == reason
    pq.write_table(pa.table({"url": ["u"], "html": [page.decode()]}), tmp_path / "p.parquet")
    assert next(read_records(str(tmp_path / "p.parquet"), cfg)).reason == reason


def test_huge_jsonl_line_is_skipped_unread_and_the_next_line_still_read(tmp_path):
    cfg = ReaderConfig(max_record_bytes=1000)
    lines = [json.dumps({"html": "<p>" + "x" * (10 << 20) + "</p>"}), json.dumps({"html": "<p>next</p>"})]
    path = write_jsonl(tmp_path / "huge.jsonl", lines)
    tracemalloc.start()
    rows = list(read_records(path, cfg))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [(r.offset, r.reason) for r in rows] == [(0, "too_large"), (len(lines[0]) + 1, None)]
    assert peak < 4 << 20


@pytest.mark.parametrize(
    "body, identified, status, reason",
    [
        (PAGE, None, "ok", None),
        (b"\n  <!DOCTYPE html><html><p>x</p></html>", None, "ok", None),
        (b'<?xml version="1.0"?>\n<html xmlns="http://www.w3.org/1999/xhtml"><p>x</p></html>', None, "ok", None),
        (b"just some words, no markup", None, "dropped", "not_html"),
        (b'{"json": true}', None, "dropped", "not_html"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", None, "dropped", "not_html"),
        # Common Crawl's own detection stands in for the missing header.
        (b"just some words", "text/html", "ok", None),
        (PAGE, "application/pdf", "dropped", "not_html"),
    ],
)
def test_missing_content_type_is_sniffed(tmp_path, body, identified, status, reason):
    def build(w):
        record = response(w, "http://example.com/", body, content_type=None)
        if identified:
            record.rec_headers.add_header("WARC-Identified-Payload-Type", identified)
        return [record]

    (row,) = read_records(write_records(tmp_path / "sniff.warc.gz", build))
    assert (row.status, row.reason) == (status, reason)
    assert row.content_type == identified


@pytest.mark.parametrize(
    "body",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10" + bytes(range(256)),
        gzip.compress(PAGE * 20),  # compressed, but no Content-Encoding said so
        b"%PDF-1.4\n" + zlib.compress(bytes(range(256)) * 8),
        b"<html>" + b"\x00" * 100 + b"</html>",
    ],
)
def test_binary_payload_labelled_html(tmp_path, body):
    row = one_response(tmp_path, body)
    assert (row.status, row.reason) == ("dropped", "binary_payload")


def test_text_with_a_stray_nul_or_utf16_is_not_binary(tmp_path):
    stray = b"<html><body>" + b"<p>plenty of ordinary text here.</p>" * 30 + b"\x00</body></html>"
    assert one_response(tmp_path, stray).status == "ok"
    page = "<html><p>Ünïcode, wide</p></html>"
    for bom, codec in [
        (b"", "utf-16"),
        (b"", "utf-32"),
        (b"\xfe\xff", "utf-16-be"),
        (b"\x00\x00\xfe\xff", "utf-32-be"),
    ]:
        row = one_response(tmp_path, bom + page.encode(codec), content_type="text/html")
        assert (row.status, row.charset_source, row.html) == ("ok", "bom", page), codec
    labelled = one_response(tmp_path, "<p>Ünï</p>".encode("utf-16-le"), content_type="text/html; charset=utf-16le")
    assert (labelled.status, labelled.charset, labelled.html) == ("ok", "utf-16-le", "<p>Ünï</p>")


@pytest.mark.parametrize("body", [b"", b" ", b" \r\n\t \n", "\u00a0\u3000\n".encode("utf-8"), " \n".encode("utf-16")])
def test_empty_and_whitespace_only_bodies(tmp_path, body):
    row = one_response(tmp_path, body, content_type="text/html")
    assert (row.status, row.reason, row.html) == ("dropped", "empty_body", None)


# --- charsets -------------------------------------------------------------------------------------------


def test_charset_label_is_honoured_when_correct(tmp_path):
    koi8 = one_response(tmp_path, RUSSIAN.encode("koi8-r"), content_type="text/html; charset=KOI8-R")
    assert (koi8.html, koi8.charset, koi8.charset_source) == (RUSSIAN, "koi8-r", "header")
    meta = RUSSIAN.replace("<body>", "<head><meta charset='windows-1251'></head><body>")
    row = one_response(tmp_path, meta.encode("cp1251"), content_type="text/html")
    assert (row.html, row.charset, row.charset_source) == (meta, "cp1251", "meta")


def test_invalid_utf8_never_crashes_and_mostly_utf8_stays_utf8(tmp_path):
    body = FRENCH.encode("utf-8").replace(b"</p>", b"\xff\xfe</p>")
    row = one_response(tmp_path, body)
    assert (row.status, row.charset, row.charset_source) == ("ok", "utf-8", "header")
    assert "Le café est très bon" in row.html and row.html.count("\ufffd") == 2


def test_wrong_charset_label_is_detected(tmp_path):
    # Labelled UTF-8, really windows-1252: strict decoding fails, so the label is not believed.
    row = one_response(tmp_path, FRENCH.encode("cp1252"))
    assert (row.status, row.charset_source, row.html) == ("ok", "detected", FRENCH)
    # Labelled latin-1, really UTF-8: valid multi-byte UTF-8 is no accident.
    row = one_response(tmp_path, FRENCH.encode("utf-8"), content_type="text/html; charset=iso-8859-1")
    assert (row.charset, row.charset_source, row.html) == ("utf-8", "detected", FRENCH)


@pytest.mark.parametrize("label", ["x-no-such-charset", "base64", "utf-16"])
def test_unknown_or_unusable_charset_label_is_detected(tmp_path, label):
    row = one_response(tmp_path, RUSSIAN.encode("cp1251"), content_type=f"text/html; charset={label}")
    assert (row.status, row.charset, row.charset_source, row.html) == ("ok", "cp1251", "detected", RUSSIAN)


def test_missing_label_is_detected_or_defaults(tmp_path):
    assert decode_body(FRENCH.encode("cp1252"), None) == decode_body(FRENCH.encode("cp1252"), "text/html")
    assert decode_body(FRENCH.encode("cp1252"), None).source == "detected"
    assert decode_body(b"<p>plain ascii</p>", None) == ("<p>plain ascii</p>", "utf-8", "default")
    assert decode_body("<p>héllo</p>".encode("utf-8"), None) == ("<p>héllo</p>", "utf-8", "detected")


def test_decode_body_http_equiv_meta_and_latin1_label():
    body = '<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"><p>it\x92s</p>'.encode("latin-1")
    # Pages labelled latin-1 are decoded as windows-1252 (as browsers do): 0x92 is a quote, not a control.
    decoded = decode_body(body, None)
    assert decoded.text.endswith("<p>it\u2019s</p>") and (decoded.charset, decoded.source) == ("cp1252", "meta")
    assert decode_body("żółw".encode("iso-8859-2"), 'text/html; charset="ISO-8859-2"') == (
        "żółw",
        "iso8859-2",
        "header",
    )


LABELS = [
    "utf-8",
    "utf-16",
    "utf-32-be",
    "base64",
    "rot13",
    "x-bogus",
    "latin-1",
    "shift_jis",
    "iso-2022-jp",
    "utf-7",
    "",
]


@given(
    st.binary(max_size=300),
    st.one_of(st.none(), st.text(max_size=60), st.sampled_from(LABELS).map(lambda c: f"text/html; charset={c}")),
)
def test_decode_body_never_raises(body, header):
    decoded = decode_body(body, header)
    assert isinstance(decoded.text, str) and decoded.source in {"bom", "header", "meta", "detected", "default"}


@given(
    st.text(max_size=200).filter(lambda t: not t.startswith("\ufeff")),
    st.sampled_from([None, "utf-8", "iso-8859-1", "koi8-r", "utf-16", "x-bogus"]),
)
def test_utf8_text_decodes_to_itself_whatever_the_label(text, label):
    assert decode_body(text.encode("utf-8"), label and f"text/html; charset={label}").text == text


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")) | st.sampled_from("\t\n\r"), max_size=300))
def test_text_is_never_binary(text):
    assert not is_binary(text.encode("utf-8"))


def test_looks_like_html():
    assert (
        looks_like_html(b"\xef\xbb\xbf<!doctype HTML>") and looks_like_html(b"<br/>") and looks_like_html(b"<!-- x -->")
    )
    assert not looks_like_html(b"<brx>") and not looks_like_html(b"hello <html>")


# --- WET ------------------------------------------------------------------------------------------------


def wet(writer):
    return [
        writer.create_warcinfo_record("crawl.warc.wet.gz", {"software": "test"}),
        conversion(writer, "http://example.com/a", "Title line\nsecond line\n\nNext paragraph é".encode("utf-8")),
        conversion(writer, "http://example.com/empty", b" \n"),
        conversion(writer, "http://example.com/b", b"More <text>"),
    ]


def test_wet_conversion_records_become_paragraphs(tmp_path):
    path = write_records(tmp_path / "crawl.warc.wet.gz", wet)
    assert detect_format(path) == "warc" and plan_units([path], ReaderConfig()) == [WorkUnit(path)]
    rows = list(read_records(path))
    assert [(r.url, r.status, r.reason, r.content_type) for r in rows] == [
        ("http://example.com/a", "ok", None, "text/plain"),
        ("http://example.com/empty", "dropped", "empty_body", "text/plain"),
        ("http://example.com/b", "ok", None, "text/plain"),
    ]
    assert rows[0].html == "<p>Title line<br>second line</p><p>Next paragraph é</p>"
    assert rows[2].html == "<p>More &lt;text&gt;</p>" and rows[0].record_id.startswith("<urn:uuid:")


# --- truncated and corrupt files ------------------------------------------------------------------------


def three_pages(writer):
    return [response(writer, f"http://example.com/{i}", PAGE + b"x" * 500) for i in range(3)]


def record_offsets(path):
    with open(path, "rb") as stream:
        records = ArchiveIterator(stream)
        return [records.offset for _ in records]


@pytest.mark.parametrize(
    "build, name",
    [
        (three_pages, "cut.warc.gz"),
        (lambda w: [conversion(w, f"http://e/{i}", b"text " * 200) for i in range(3)], "cut.warc.wet.gz"),
    ],
)
@pytest.mark.parametrize("cut_into_third_record", [40, 10])
def test_truncated_warc_yields_good_records_then_one_error(tmp_path, build, name, cut_into_third_record):
    full = write_records(tmp_path / ("full-" + name), build)
    third = record_offsets(full)[2]
    data = open(full, "rb").read()
    # Cutting 40 bytes in lands inside the compressed body, 10 bytes in inside the gzip header.
    cut = tmp_path / name
    cut.write_bytes(data[: third + cut_into_third_record])
    rows = list(read_records(str(cut)))
    assert [r.status for r in rows] == ["ok", "ok", "error"]
    assert rows[2].reason.startswith("unreadable_record: ")
    assert (rows[2].offset, rows[2].source_path) == (third, str(cut))


def test_uncompressed_warc_cut_inside_a_body_is_a_truncated_record(tmp_path):
    full = write_records(tmp_path / "full.warc", three_pages, gzip=False)
    third = record_offsets(full)[2]
    cut = tmp_path / "cut.warc"
    cut.write_bytes(open(full, "rb").read()[: third + 400])
    rows = list(read_records(str(cut)))
    assert [r.status for r in rows] == ["ok", "ok", "error"]
    assert rows[2].offset == third and "truncated record" in rows[2].reason


def test_garbage_between_records_is_one_error_at_its_offset(tmp_path):
    full = write_records(tmp_path / "full.warc", three_pages, gzip=False)
    offsets = record_offsets(full)
    data = open(full, "rb").read()
    bad = tmp_path / "bad.warc"
    bad.write_bytes(data[: offsets[1]] + b"this is not a warc record\r\n\r\n" + data[offsets[1] :])
    rows = list(read_records(str(bad)))
    assert [r.status for r in rows] == ["ok", "error"]
    assert rows[1].offset == offsets[1]
    assert rows[1].reason.startswith("unreadable_record: ") and "this is not a warc record" in rows[1].reason


@pytest.mark.parametrize(
    "content, message",
    [
        (b"garbage\n", "Unknown archive format"),
        # warcio reads most other first lines as an ARC header; a .warc file must hold WARC records.
        (b"<html><body>a page, not an archive</body></html>", "not a WARC record"),
    ],
)
def test_file_that_is_no_warc_is_one_error_not_an_exception(tmp_path, content, message):
    path = tmp_path / "fake.warc.gz"
    path.write_bytes(content)
    rows = list(read_records(str(path)))
    assert [(r.status, r.offset) for r in rows] == [("error", 0)]
    assert rows[0].reason.startswith("unreadable_record: ") and message in rows[0].reason


# --- JSON Lines -----------------------------------------------------------------------------------------


def write_jsonl(path, lines):
    data = "\n".join(lines).encode("utf-8") + b"\n"
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return str(path)


JSONL_LINES = [
    json.dumps({"html": "<h2>A</h2><p>b</p>", "text": "ignored", "url": "http://a", "id": 7, "date": "2023-01-01"}),
    json.dumps({"text": "First <line>\nsecond line\n\nNext paragraph"}),
    "{not json",
    "",
    json.dumps({"url": "http://no-text"}),
    json.dumps(["a", "list"]),
    json.dumps({"text": "   "}),
    json.dumps({"html": "<p>\u0000\u0001\u0002\u0003</p>"}),
]


def line_offsets(lines):
    offsets, at = [], 0
    for line in lines:
        offsets.append(at)
        at += len(line.encode("utf-8")) + 1
    return offsets


@pytest.mark.parametrize("name", ["docs.jsonl", "docs.jsonl.gz"])
def test_jsonl_records_and_reasons(tmp_path, name):
    rows = list(read_records(write_jsonl(tmp_path / name, JSONL_LINES)))
    at = line_offsets(JSONL_LINES)
    assert [(r.offset, r.status, r.reason and r.reason.split(":")[0]) for r in rows] == [
        (at[0], "ok", None),
        (at[1], "ok", None),
        (at[2], "error", "invalid_json"),
        (at[4], "dropped", "missing_text"),
        (at[5], "error", "invalid_json"),
        (at[6], "dropped", "empty_body"),
        (at[7], "dropped", "binary_payload"),
    ]
    first, plain = rows[0], rows[1]
    assert (first.html, first.url, first.record_id) == ("<h2>A</h2><p>b</p>", "http://a", "7")
    assert first.fetch_date == "2023-01-01" and (first.charset, first.charset_source) == (None, None)
    assert first.content_type == "text/html" and plain.content_type == "text/plain"
    # Plain text becomes escaped paragraphs and lines, so the extractor sees the same structure.
    assert plain.html == "<p>First &lt;line&gt;<br>second line</p><p>Next paragraph</p>"
    assert plain.content_hash == hashlib.sha256(b"First <line>\nsecond line\n\nNext paragraph").hexdigest()


def test_jsonl_field_names_are_configurable(tmp_path):
    path = write_jsonl(
        tmp_path / "c.jsonl", [json.dumps({"link": "http://a", "body": "<p>x</p>", "html": "<p>not this</p>"})]
    )
    (row,) = read_records(path, ReaderConfig(url_field="link", html_field="body"))
    assert (row.url, row.html) == ("http://a", "<p>x</p>")


def test_jsonl_lone_surrogate_does_not_break_the_record(tmp_path):
    rows = list(read_records(write_jsonl(tmp_path / "s.jsonl", ['{"html": "<p>a\\ud800b</p>"}'])))
    assert rows[0].status == "ok" and rows[0].html == "<p>a?b</p>"


def test_truncated_jsonl_gz_keeps_earlier_lines_and_reports_error(tmp_path):
    lines = [json.dumps({"html": f"<p>{i} {'x' * 50}</p>"}) for i in range(200)]
    data = gzip.compress(("\n".join(lines) + "\n").encode())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    rows = list(read_records(str(path)))
    assert rows[-1].status == "error" and rows[-1].reason.startswith("unreadable_record: ")
    assert rows[0].status == "ok" and all(r.status == "ok" for r in rows[:-1])
    assert rows[-1].offset == line_offsets(lines)[len(rows) - 1]  # the first line that could not be read


def test_jsonl_is_split_into_byte_ranges_that_share_no_line(tmp_path):
    lines = [json.dumps({"html": f"<p>{i} {'x' * (i * 7 % 50)}</p>"}) for i in range(40)]
    path = write_jsonl(tmp_path / "r.jsonl", lines)
    cfg = ReaderConfig(split_bytes=300)
    units = plan_units([path], cfg)
    assert len(units) == -(-os.path.getsize(path) // 300) and units[0] == WorkUnit(path, 0, 300)
    assert units[-1].end == os.path.getsize(path)
    split = [(r.offset, r.html) for u in units for r in read_records(u, cfg)]
    assert split == [(r.offset, r.html) for r in read_records(path, cfg)]
    assert [offset for offset, _ in split] == line_offsets(lines)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(0, 40), max_size=25), st.integers(1, 200))
def test_byte_ranges_cover_every_line_once(tmp_path, lengths, split):
    lines = [json.dumps({"text": "y" * n}) for n in lengths]
    path = tmp_path / "p.jsonl"
    path.write_bytes(b"".join(line.encode() + b"\n" for line in lines))
    cfg = ReaderConfig(split_bytes=split)
    offsets = [r.offset for u in plan_units([str(path)], cfg) for r in read_records(u, cfg)]
    assert offsets == line_offsets(lines)


def test_gzipped_jsonl_and_empty_jsonl_are_one_unit(tmp_path):
    gz = write_jsonl(tmp_path / "a.jsonl.gz", JSONL_LINES)
    empty = tmp_path / "e.jsonl"
    empty.write_bytes(b"")
    assert plan_units([gz, str(empty)], ReaderConfig(split_bytes=10)) == [WorkUnit(gz), WorkUnit(str(empty), 0, 0)]
    assert list(read_records(WorkUnit(str(empty), 0, 0))) == []


# --- Parquet --------------------------------------------------------------------------------------------


def write_parquet(path, columns: dict, row_group_size=2):
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return str(path)


def test_parquet_rows_with_html_or_text(tmp_path):
    path = write_parquet(
        tmp_path / "d.parquet",
        {
            "url": ["http://a", "http://b", "http://c", "http://d", "http://e"],
            "html": ["<h2>A</h2><p>x</p>", None, None, "  ", "<p>\x00\x00\x00</p>"],
            "text": [None, "Plain\n\ntext", None, None, None],
            "id": [1, 2, 3, 4, 5],
        },
    )
    rows = list(read_records(path))
    assert [(r.offset, r.url, r.status, r.reason) for r in rows] == [
        (0, "http://a", "ok", None),
        (1, "http://b", "ok", None),
        (2, "http://c", "dropped", "missing_text"),
        (3, "http://d", "dropped", "empty_body"),
        (4, "http://e", "dropped", "binary_payload"),
    ]
    assert (
        rows[0].html == "<h2>A</h2><p>x</p>" and rows[1].html == "<p>Plain</p><p>text</p>" and rows[1].record_id == "2"
    )


def test_parquet_binary_column_is_charset_decoded_and_names_are_configurable(tmp_path):
    path = write_parquet(
        tmp_path / "b.parquet", {"link": ["http://r"], "raw": pa.array([RUSSIAN.encode("cp1251")], pa.binary())}
    )
    (row,) = read_records(path, ReaderConfig(url_field="link", html_field="raw"))
    assert (row.url, row.html, row.charset, row.charset_source) == ("http://r", RUSSIAN, "cp1251", "detected")


def test_parquet_is_split_by_row_group(tmp_path):
    n = 7
    path = write_parquet(
        tmp_path / "g.parquet", {"url": [f"http://{i}" for i in range(n)], "html": [f"<p>{i}</p>" for i in range(n)]}
    )
    assert pq.ParquetFile(path).num_row_groups == 4
    per_group = plan_units([path], ReaderConfig(split_bytes=1))
    assert per_group == [WorkUnit(path, i, i + 1) for i in range(4)]
    assert plan_units([path], ReaderConfig()) == [WorkUnit(path, 0, 4)]
    rows = [r for u in per_group for r in read_records(u)]
    assert [(r.offset, r.url) for r in rows] == [(i, f"http://{i}") for i in range(n)]
    assert [r.offset for r in read_records(per_group[2])] == [4, 5]


def test_parquet_without_document_columns_or_footer_is_one_error(tmp_path):
    path = write_parquet(tmp_path / "n.parquet", {"url": ["http://a"], "body": ["<p>x</p>"]})
    (row,) = read_records(path)
    assert row.status == "error" and row.reason.startswith("missing_columns: ") and row.offset == 0
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(open(path, "rb").read()[:-20])
    assert plan_units([str(cut)], ReaderConfig()) == [WorkUnit(str(cut))]  # planning does not raise
    (row,) = read_records(str(cut))
    assert (row.status, row.offset, row.source_path) == ("error", 0, str(cut)) and row.reason.startswith(
        "unreadable_record: "
    )


# --- HTML files, formats, config ------------------------------------------------------------------------


def test_html_file_is_one_record(tmp_path):
    page = tmp_path / "page.html"
    page.write_bytes(PAGE)
    (row,) = read_records(str(page))
    assert (row.status, row.offset, row.url) == ("ok", None, page.resolve().as_uri())
    assert row.html == PAGE.decode("utf-8") and row.content_type == "text/html"
    assert (row.charset, row.charset_source) == ("utf-8", "detected")
    empty = tmp_path / "empty.htm"
    empty.write_bytes(b"")
    assert [(r.status, r.reason) for r in read_records(str(empty))] == [("dropped", "empty_body")]


@pytest.mark.parametrize(
    "name, fmt",
    [
        ("a.warc.gz", "warc"),
        ("A.WARC", "warc"),
        ("a.arc.gz", "warc"),
        ("a.warc.wet.gz", "warc"),
        ("a.jsonl", "jsonl"),
        ("a.jsonl.gz", "jsonl"),
        ("a.json", "jsonl"),
        ("a.parquet", "parquet"),
        ("a.html", "html"),
        ("a.htm", "html"),
    ],
)
def test_detect_format(name, fmt):
    assert detect_format(name) == fmt


@pytest.mark.parametrize("name", ["a.txt", "a.warc.bz2", "warc", "a.gz", "a.warc.wat.gz"])
def test_detect_format_rejects_unknown_names(name):
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        detect_format(name)


@pytest.mark.parametrize(
    "override, key",
    [
        ("max_record_bytes=0", "max_record_bytes"),
        ("split_bytes=-1", "split_bytes"),
        ("url_field=", "url_field"),
        ("max_record_byte=5", "max_record_byte"),
    ],
)
def test_reader_config_errors_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key):
        load_config(ReaderConfig, None, [override])


def test_arc_file_response_becomes_a_record(tmp_path):
    http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n" + PAGE
    desc = b"1 0 test\nURL IP-address Archive-date Content-type Archive-length\n"
    data = b"filedesc://t.arc 0.0.0.0 20230101000000 text/plain %d\n%s\n" % (len(desc), desc)
    data += b"http://example.com/ 1.2.3.4 20230101000000 text/html %d\n%s\n" % (len(http), http)
    path = tmp_path / "old.arc"
    path.write_bytes(data)
    (row,) = read_records(str(path))
    assert (row.status, row.url, row.html) == ("ok", "http://example.com/", PAGE.decode())
    assert row.fetch_date == "2023-01-01T00:00:00Z"
    assert row.record_id is None  # warcio would invent a random one on every read


# --- corrupt records and transient read errors -----------------------------------------------------------


def five_pages(writer):
    return [response(writer, f"http://example.com/{i}", PAGE + b"x" * 500) for i in range(5)]


def test_a_corrupt_record_of_a_gzipped_warc_is_one_error_and_the_next_records_are_read(tmp_path):
    full = write_records(tmp_path / "full.warc.gz", five_pages)
    offsets = record_offsets(full)
    data = bytearray(open(full, "rb").read())
    data[offsets[2] + 60 : offsets[2] + 90] = b"\x00" * 30  # inside the third record's deflate stream
    bad = tmp_path / "bad.warc.gz"
    bad.write_bytes(bytes(data))
    rows = list(read_records(str(bad)))
    assert [(r.offset, r.status) for r in rows] == [(o, "error" if o == offsets[2] else "ok") for o in offsets]
    assert rows[2].reason.startswith("unreadable_record: ")
    assert [r.url for r in rows if r.status == "ok"] == [f"http://example.com/{i}" for i in (0, 1, 3, 4)]
    # a work unit ending inside the file resyncs only up to its end: the next unit owns what follows
    assert [r.offset for r in read_records(WorkUnit(str(bad), 0, offsets[4]))] == offsets[:4]


def test_a_jsonl_line_with_invalid_utf8_is_one_error_naming_the_byte_and_the_next_lines_are_read(tmp_path):
    good = [json.dumps({"html": f"<p>line {i} café</p>", "url": f"http://j/{i}"}, ensure_ascii=False) for i in range(3)]
    bad = b'{"html": "<p>caf\xe9\xff</p>", "url": "http://j/bad"}'  # Latin-1 e-acute and a stray byte
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join([good[0].encode(), bad, good[1].encode(), good[2].encode()]) + b"\n")
    rows = list(read_records(str(path)))
    assert [r.status for r in rows] == ["ok", "error", "ok", "ok"]
    assert (
        rows[1].reason.startswith("invalid_utf8: byte 0xe9 at byte 16 ") and rows[1].offset == len(good[0].encode()) + 1
    )
    assert [r.html for r in rows if r.status == "ok"] == [f"<p>line {i} café</p>" for i in range(3)]


class Flaky(io.RawIOBase):
    """A file whose ``fail_at``-th read (counted over every opening) raises a connection reset, ``times`` times."""

    def __init__(self, stream, state: dict):
        self._stream, self._state = stream, state

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, pos, whence=io.SEEK_SET):
        return self._stream.seek(pos, whence)

    def tell(self):
        return self._stream.tell()

    def readinto(self, buffer):
        self._state["reads"] += 1
        if self._state["reads"] >= self._state["fail_at"] and self._state["times"] > 0:
            self._state["times"] -= 1
            raise ConnectionResetError(104, "Connection reset by peer")
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self):
        self._stream.close()
        super().close()


@pytest.fixture
def flaky(monkeypatch):
    """Make every file the readers open flaky: set ``state["times"]`` to how often its reads fail."""
    state = {"reads": 0, "fail_at": 3, "times": 0}
    real = sources._open_at
    monkeypatch.setattr(sources, "_open_at", lambda *a: Flaky(real(*a), state))
    monkeypatch.setattr(sources, "RETRY_PAUSE_SECONDS", 0.001)
    return state


def flaky_inputs(tmp_path):
    """A WARC.gz, a JSONL and a Parquet file of hardly compressible text, each read in several calls."""
    noise = [hashlib.sha256(str(i).encode()).hexdigest() * 3000 for i in range(8)]  # 192 KB each
    warc = write_records(
        tmp_path / "f.warc.gz",
        lambda w: [response(w, f"http://e/{i}", f"<p>{n}</p>".encode()) for i, n in enumerate(noise)],
    )
    jsonl = write_jsonl(tmp_path / "f.jsonl", [json.dumps({"html": f"<p>{n}</p>"}) for n in noise])
    parquet = tmp_path / "f.parquet"
    write_parquet(parquet, {"url": [f"u{i}" for i in range(8)], "html": [f"<p>{n}</p>" for n in noise]})
    return [str(warc), jsonl, str(parquet)]


def test_a_transient_read_error_is_retried_and_the_unit_reads_as_without_it(tmp_path, flaky):
    for path in flaky_inputs(tmp_path):
        clean = [(r.offset, r.status, r.content_hash) for r in read_records(path)]
        flaky.update(reads=0, times=2)
        assert [(r.offset, r.status, r.content_hash) for r in read_records(path)] == clean, path
        assert flaky["times"] == 0 and all(status == "ok" for _, status, _ in clean)  # it did fail, twice


def test_a_read_that_keeps_failing_raises_instead_of_ending_the_unit_as_read(tmp_path, flaky):
    for path in flaky_inputs(tmp_path):
        flaky.update(reads=0, times=10**6)
        with pytest.raises(sources.TransientReadError, match=r"failed 5 times on the network or the store") as err:
            list(read_records(path))
        assert path in str(err.value) and "ConnectionResetError" in str(err.value), path


def test_read_back_of_a_record_is_retried_and_a_lasting_network_failure_is_no_missing_source(tmp_path, flaky):
    path = flaky_inputs(tmp_path)[0]
    first = next(read_records(path))
    flaky.update(reads=0, fail_at=1, times=1)
    assert read_back(path, first.offset, first.length, first.content_hash).status == "ok"
    flaky.update(reads=0, times=10**6)
    with pytest.raises(sources.TransientReadError):
        read_back(path, first.offset, first.length, first.content_hash)


def test_only_network_and_store_errors_count_as_transient():
    assert sources.is_transient(ConnectionResetError()) and sources.is_transient(TimeoutError())
    wrapped = sources.SourceError("s3://b/k: cannot be read")
    wrapped.__context__ = type("ReadTimeoutError", (Exception,), {})("read timed out")  # botocore's, by name
    assert sources.is_transient(wrapped)
    assert not sources.is_transient(FileNotFoundError()) and not sources.is_transient(zlib.error("bad"))
    assert not sources.is_transient(PermissionError()) and not sources.is_transient(ValueError())
