"""Work units of gzipped WARC files: cut at gzip member starts, every record read once, offsets unchanged."""

import gzip
import io
import itertools
import json
import os
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from warcio.warcwriter import WARCWriter

from tests.conftest import http_response
from udfs import ids
from udfs.readers import ReaderConfig, WorkUnit, can_read_back, plan_units, read_back, read_records


def record_bytes(url: str, body: bytes, kind: str = "response") -> bytes:
    """One uncompressed WARC record."""
    out = io.BytesIO()
    writer = WARCWriter(out, gzip=False)
    if kind == "response":
        writer.write_record(http_response(writer, url, body))
    else:
        writer.write_record(writer.create_warc_record(url, kind, payload=io.BytesIO(body)))
    return out.getvalue()


def write_members(path, records: list[bytes], stored: bool = False) -> str:
    """One gzip member per record; ``stored`` (level 0) leaves payload bytes verbatim in the file."""
    path.write_bytes(b"".join(gzip.compress(r, compresslevel=0 if stored else 6, mtime=0) for r in records))
    return str(path)


def everything(units, cfg=None):
    return [r for u in units for r in read_records(u, cfg or ReaderConfig())]


def check_units(path: str, split_bytes: int) -> list[WorkUnit]:
    cfg = ReaderConfig(split_bytes=split_bytes)
    units = plan_units([path], cfg)
    # contiguous byte ranges from 0 to the end of the file
    assert units[0].start == 0 and units[-1].end is None
    assert all(a.end == b.start for a, b in itertools.pairwise(units))
    assert everything(units, cfg) == list(read_records(path, cfg))  # same records, fields and offsets, in order
    return units


pages = st.lists(
    st.tuples(st.sampled_from(["response", "resource", "metadata"]), st.integers(0, 6000), st.booleans()),
    min_size=1,
    max_size=25,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pages=pages,
    split_bytes=st.sampled_from([1, 300, 1000, 4096, 20_000]),
    stored=st.booleans(),
    seed=st.integers(0, 99),
)
def test_union_of_units_is_the_whole_file(tmp_path, pages, split_bytes, stored, seed):
    rng = random.Random(seed)
    records = []
    for i, (kind, size, planted) in enumerate(pages):
        # random bytes do not compress: members of several kB span the split points
        body = b"<html><h2>Page</h2><p>" + rng.randbytes(size) + b"</p></html>"
        if planted:  # gzip magic inside a payload: a candidate cut the check must reject
            body += b"\x1f\x8b\x08\x00" + rng.randbytes(20) + gzip.compress(b"not a WARC record")
        records.append(record_bytes(f"https://example.org/{i}", body, kind))
    path = write_members(tmp_path / f"crawl-{seed}.warc.gz", records, stored)
    check_units(path, split_bytes)


def test_large_members_span_split_points_and_every_cut_is_a_member_start(tmp_path):
    rng = random.Random(1)
    records = [record_bytes(f"https://example.org/{i}", rng.randbytes(rng.randrange(100, 5000))) for i in range(40)]
    path = write_members(tmp_path / "crawl.warc.gz", records)
    offsets = [r.offset for r in read_records(path)]
    units = check_units(path, 3000)
    assert len(units) > 5
    assert {u.start for u in units} <= set(offsets)
    # some record's member starts before a multiple of split_bytes and ends after it
    ends = offsets[1:] + [offsets[-1] + 10**9]
    assert any(a < k * 3000 < b for a, b in zip(offsets, ends) for k in range(1, 40))


def test_planted_gzip_members_in_stored_payloads_are_not_cuts(tmp_path):
    fake = gzip.compress(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n", mtime=0)
    records = [record_bytes(f"https://example.org/{i}", b"<h2>x</h2>" + fake * 50) for i in range(20)]
    path = write_members(tmp_path / "crawl.warc.gz", records, stored=True)
    offsets = {r.offset for r in read_records(path)}
    units = check_units(path, 500)
    assert len(units) > 5 and {u.start for u in units} <= offsets


def test_cuts_come_from_a_cdxj_index_next_to_the_file(tmp_path):
    records = [record_bytes(f"https://example.org/{i}", random.Random(i).randbytes(2000)) for i in range(12)]
    path = write_members(tmp_path / "crawl.warc.gz", records)
    offsets = [r.offset for r in read_records(path)]
    index = [f'org,example)/{i} 20260101000000 {{"offset": "{o}", "length": "1"}}' for i, o in enumerate(offsets[::3])]
    index.append('org,example)/bad 20260101000000 {"offset": "17"}')  # not a member start: checked, not used
    (tmp_path / "crawl.warc.gz.cdxj").write_text("\n".join(index) + "\n")
    units = check_units(path, 1000)
    assert [u.start for u in units] == offsets[::3]


def test_classic_cdx_index_uses_the_compressed_offset_field(tmp_path):
    records = [record_bytes(f"https://example.org/{i}", random.Random(i).randbytes(2000)) for i in range(8)]
    path = write_members(tmp_path / "crawl.warc.gz", records)
    offsets = [r.offset for r in read_records(path)]
    lines = [" CDX N b a m s k r M S V g"] + [
        f"org,example)/{i} 2026 u text/html 200 - - - 1 {o} crawl.warc.gz" for i, o in enumerate(offsets[::2])
    ]
    (tmp_path / "crawl.warc.gz.cdx").write_text("\n".join(lines) + "\n")
    assert [u.start for u in check_units(path, 1000)] == offsets[::2]


def test_small_or_single_member_files_stay_one_unit(tmp_path):
    records = [record_bytes(f"https://example.org/{i}", b"<h2>x</h2>" * 200) for i in range(10)]
    small = write_members(tmp_path / "small.warc.gz", records)
    assert plan_units([small], ReaderConfig()) == [WorkUnit(small)]
    whole = tmp_path / "whole.warc.gz"
    whole.write_bytes(gzip.compress(b"".join(records)))  # one member for the whole file: no cut inside it
    assert plan_units([str(whole)], ReaderConfig(split_bytes=100)) == [WorkUnit(str(whole))]


def doc_id(rec):
    return ids.doc_id(rec.url, rec.content_hash, rec.source_path, rec.offset, rec.reason)


def test_doc_ids_match_the_whole_file_read(tmp_path):
    records = [record_bytes(f"https://example.org/{i}", random.Random(i).randbytes(1500)) for i in range(10)]
    path = write_members(tmp_path / "crawl.warc.gz", records)
    units = plan_units([path], ReaderConfig(split_bytes=2000))
    assert len(units) > 2
    assert [doc_id(r) for r in everything(units)] == [doc_id(r) for r in read_records(path)]
    json.dumps([u.start for u in units])  # plain ints: units go into Spark rows


def member_lengths(path: str) -> dict[int, int]:
    """offset -> length of every record's gzip member, as a CDX index lists them."""
    from warcio.archiveiterator import ArchiveIterator

    lengths = {}
    with open(path, "rb") as f:
        records = ArchiveIterator(f)
        for record in records:
            record.content_stream().read()
            lengths[records.get_record_offset()] = records.get_record_length()
    return lengths


def test_read_record_at_returns_the_record_the_reader_produced(tmp_path):
    from tests.conftest import SAMPLE_WARC
    from udfs.readers import read_record_at

    path = str(SAMPLE_WARC)
    lengths = member_lengths(path)
    rows = list(read_records(path))
    assert len(rows) > 20
    for row in rows:
        assert read_record_at(path, row.offset, lengths[row.offset]) == row
        assert read_record_at(path, row.offset) == row
    request = next(o for o in lengths if o not in {r.offset for r in rows})  # a request or warcinfo record
    assert read_record_at(path, request).status == "error"
    assert read_record_at(path, rows[1].offset + 7).reason.startswith("unreadable_record:")


def test_records_carry_the_length_a_read_back_needs(tmp_path):
    from tests.conftest import SAMPLE_WARC

    path = str(SAMPLE_WARC)
    lengths = member_lengths(path)
    rows = [r for r in read_records(path) if r.status == "ok"]
    assert rows and all(r.length == lengths[r.offset] for r in rows)
    assert all(read_back(path, r.offset, r.length, r.content_hash) == r for r in rows)
    plain = tmp_path / "plain.warc"
    plain.write_bytes(gzip.decompress(SAMPLE_WARC.read_bytes()))  # uncompressed: offsets in the plain file
    for row in (r for r in read_records(str(plain)) if r.status == "ok"):
        assert read_back(str(plain), row.offset, row.length, row.content_hash).html == row.html


def test_read_back_of_a_changed_or_missing_file_is_an_error_with_a_reason_code(tmp_path):
    from tests.conftest import SAMPLE_WARC

    path = tmp_path / "crawl.warc.gz"
    path.write_bytes(SAMPLE_WARC.read_bytes())
    first, second = [r for r in read_records(str(path)) if r.status == "ok"][:2]
    # The record's bytes are unchanged though the file's mtime is: read as ingest saw it.
    os.utime(path, ns=(0, 10**9))
    assert read_back(str(path), first.offset, first.length, first.content_hash) == first
    # Another record at that offset (the file rewritten), a content hash that differs, no record at all.
    changed = read_back(str(path), first.offset, first.length, second.content_hash)
    assert (changed.status, changed.reason.split(":")[0]) == ("error", "source_changed")
    shifted = read_back(str(path), first.offset + 3, first.length, first.content_hash)
    assert (shifted.status, shifted.reason.split(":")[0]) == ("error", "source_changed")
    path.unlink()
    gone = read_back(str(path), first.offset, first.length, first.content_hash)
    assert (gone.status, gone.reason.split(":")[0]) == ("error", "source_missing")


def test_read_back_of_json_lines_and_html_files(tmp_path):
    lines = [json.dumps({"url": f"http://j/{i}", "html": f"<h2>T{i}</h2><p>b</p>"}) for i in range(3)]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("\n".join(lines) + "\n")
    page = tmp_path / "p.html"
    page.write_bytes(b"<h2>T</h2><p>page</p>")
    for path in (jsonl, page):
        assert can_read_back(str(path))
        for row in read_records(str(path)):
            assert read_back(str(path), row.offset, row.length, row.content_hash) == row
    assert not can_read_back(str(tmp_path / "d.jsonl.gz")) and not can_read_back(str(tmp_path / "d.parquet"))
