"""Unit tests for udfs.readers on tiny WARC, JSONL and HTML files written into tmp_path."""

import gzip
import hashlib
import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from udfs.readers import decode_body, detect_format, read_records

PAGE = b"<html><head><title>t</title></head><body><h2>Hello</h2><p>Caf\xc3\xa9 text.</p></body></html>"


def response(writer, url, body, status="200 OK", content_type="text/html; charset=utf-8", extra=()):
    headers = StatusAndHeaders(status, [("Content-Type", content_type), *extra], protocol="HTTP/1.1")
    return writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers)


def request(writer, url):
    headers = StatusAndHeaders("GET / HTTP/1.1", [("Host", "example.com")], is_http_request=True)
    return writer.create_warc_record(url, "request", payload=io.BytesIO(b""), http_headers=headers)


def write_warc(path, build, gzip_records=True):
    with open(path, "wb") as out:
        writer = WARCWriter(out, gzip=gzip_records)
        for record in build(writer):
            writer.write_record(record)
    return str(path)


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


@pytest.mark.parametrize("gzip_records", [True, False])
def test_warc_keeps_responses_only_and_gives_drop_reasons(tmp_path, gzip_records):
    path = write_warc(tmp_path / ("crawl.warc.gz" if gzip_records else "crawl.warc"), crawl, gzip_records)
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
    assert ok.content_hash == hashlib.sha256(PAGE).hexdigest()
    assert ok.record_id.startswith("<urn:uuid:") and ok.fetch_date.endswith("Z")
    assert rows[1].http_status == 404 and rows[1].html is None
    assert rows[2].content_type == "image/png"


def test_warc_offset_points_at_the_record(tmp_path):
    path = write_warc(tmp_path / "crawl.warc.gz", crawl)
    row = next(r for r in read_records(path) if r.url == "http://example.com/x")
    with open(path, "rb") as stream:
        stream.seek(row.offset)
        record = next(iter(ArchiveIterator(stream)))
        assert record.rec_headers.get_header("WARC-Record-ID") == row.record_id


def test_warc_decodes_gzip_content_encoding_and_chunked_transfer(tmp_path):
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(PAGE), PAGE)
    path = write_warc(
        tmp_path / "enc.warc.gz",
        lambda w: [
            response(w, "http://example.com/gz", gzip.compress(PAGE), extra=[("Content-Encoding", "gzip")]),
            response(w, "http://example.com/chunked", chunked, extra=[("Transfer-Encoding", "chunked")]),
        ],
    )
    rows = list(read_records(path))
    assert [r.status for r in rows] == ["ok", "ok"]
    assert [r.html for r in rows] == [PAGE.decode("utf-8")] * 2
    # The hash is over the decoded payload, so both serve the same content hash.
    assert {r.content_hash for r in rows} == {hashlib.sha256(PAGE).hexdigest()}


def three_pages(writer):
    return [response(writer, f"http://example.com/{i}", PAGE + b"x" * 500) for i in range(3)]


def record_offsets(path):
    with open(path, "rb") as stream:
        records = ArchiveIterator(stream)
        return [records.offset for _ in records]


@pytest.mark.parametrize("cut_into_third_record", [40, 10])
def test_truncated_warc_yields_good_records_then_one_error(tmp_path, cut_into_third_record):
    full = write_warc(tmp_path / "full.warc.gz", three_pages)
    third = record_offsets(full)[2]
    data = open(full, "rb").read()
    # Cutting 40 bytes in lands inside the compressed body, 10 bytes in inside the gzip header.
    cut = tmp_path / "cut.warc.gz"
    cut.write_bytes(data[: third + cut_into_third_record])
    rows = list(read_records(str(cut)))
    assert [r.status for r in rows] == ["ok", "ok", "error"]
    assert rows[2].reason.startswith("unreadable_record: ")
    assert rows[2].offset == third


def test_garbage_between_records_is_one_error_at_its_offset(tmp_path):
    full = write_warc(tmp_path / "full.warc", three_pages, gzip_records=False)
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


def test_decode_body_prefers_header_then_meta_then_utf8():
    text = "<meta charset='windows-1251'><p>Привет</p>"
    koi8 = text.encode("koi8-r")
    assert decode_body(koi8, "text/html; charset=KOI8-R") == text
    assert decode_body(text.encode("windows-1251"), "text/html") == text  # meta wins without header charset
    assert decode_body(text.encode("windows-1251"), None) == text
    assert decode_body("<p>héllo</p>".encode("utf-8"), None) == "<p>héllo</p>"


def test_decode_body_http_equiv_meta_and_latin1_label():
    body = '<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"><p>it\x92s</p>'.encode("latin-1")
    # Pages labelled latin-1 are decoded as windows-1252 (as browsers do): 0x92 is a quote, not a control.
    assert decode_body(body, None).endswith("<p>it\u2019s</p>")


def test_decode_body_falls_back_without_raising():
    assert decode_body(b"caf\xe9", "text/html; charset=no-such-charset") == "caf\ufffd"
    assert decode_body(b"caf\xe9", "text/html; charset=base64") == "caf\ufffd"  # not a text codec
    assert decode_body(b"\xff\xfe abc", None) == "\ufffd\ufffd abc"
    assert decode_body("żółw".encode("iso-8859-2"), 'text/html; charset="ISO-8859-2"') == "żółw"


@given(st.binary(max_size=300), st.one_of(st.none(), st.text(max_size=60)))
def test_decode_body_never_raises(body, header):
    assert isinstance(decode_body(body, header), str)


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
]


@pytest.mark.parametrize("name", ["docs.jsonl", "docs.jsonl.gz"])
def test_jsonl_records_and_reasons(tmp_path, name):
    rows = list(read_records(write_jsonl(tmp_path / name, JSONL_LINES)))
    assert [(r.offset, r.status, r.reason and r.reason.split(":")[0]) for r in rows] == [
        (1, "ok", None),
        (2, "ok", None),
        (3, "error", "invalid_json"),
        (5, "dropped", "missing_text"),
        (6, "error", "invalid_json"),
        (7, "dropped", "empty_body"),
    ]
    first, plain = rows[0], rows[1]
    assert (first.html, first.url, first.record_id) == ("<h2>A</h2><p>b</p>", "http://a", "7")
    assert first.fetch_date == "2023-01-01"
    assert first.content_type == "text/html" and plain.content_type == "text/plain"
    # Plain text becomes escaped paragraphs and lines, so the extractor sees the same structure.
    assert plain.html == "<p>First &lt;line&gt;<br>second line</p><p>Next paragraph</p>"
    assert plain.content_hash == hashlib.sha256(b"First <line>\nsecond line\n\nNext paragraph").hexdigest()


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
    assert rows[-1].offset == len(rows)


def test_html_file_is_one_record(tmp_path):
    page = tmp_path / "page.html"
    page.write_bytes(PAGE)
    (row,) = read_records(str(page))
    assert (row.status, row.offset, row.url) == ("ok", None, page.resolve().as_uri())
    assert row.html == PAGE.decode("utf-8") and row.content_type == "text/html"
    empty = tmp_path / "empty.htm"
    empty.write_bytes(b"")
    assert [(r.status, r.reason) for r in read_records(str(empty))] == [("dropped", "empty_body")]


@pytest.mark.parametrize(
    "name, fmt",
    [("a.warc.gz", "warc"), ("A.WARC", "warc"), ("a.arc.gz", "warc"), ("a.jsonl", "jsonl"), ("a.jsonl.gz", "jsonl"),
     ("a.json", "jsonl"), ("a.html", "html"), ("a.htm", "html")],
)
def test_detect_format(name, fmt):
    assert detect_format(name) == fmt


@pytest.mark.parametrize("name", ["a.txt", "a.warc.bz2", "warc", "a.gz"])
def test_detect_format_rejects_unknown_names(name):
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        detect_format(name)


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
