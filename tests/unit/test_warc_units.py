"""Work units of gzipped WARC files: cut at gzip member starts, every record read once, offsets unchanged."""

import gzip
import io
import itertools
import json
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from warcio.warcwriter import WARCWriter

from tests.conftest import http_response
from udfs import ids
from udfs.readers import ReaderConfig, WorkUnit, plan_units, read_records


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
