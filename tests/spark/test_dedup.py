"""Exact and near-duplicate segments over the whole table: within one crawl drop and against earlier drops.

Each drop is a small WARC of generated pages run through the real ingest and segment stages (Spark, Delta via
delta-rs). Texts are random sentences, so only the planted copies and edits are similar.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from deltalake import DeltaTable

from jobs.config import load_pipeline_config
from jobs.stages import Context, run_stage
from jobs.stages.segment import dedup, near_dedup, stored_signatures
from jobs.storage import Storage
from tests.conftest import ROOT, write_warc
from udfs.text import normalize_for_dedup
from udfs.minhash import DedupConfig, minhash, shingle_hashes

RNG = random.Random(7)
NOUNS = (
    "river",
    "garden",
    "teacher",
    "market",
    "window",
    "engine",
    "letter",
    "forest",
    "kitchen",
    "harbor",
    "village",
    "painter",
    "bridge",
    "library",
    "student",
    "mountain",
    "station",
    "farmer",
    "journey",
    "island",
    "museum",
    "orchard",
    "captain",
    "lantern",
    "meadow",
    "workshop",
    "doctor",
    "valley",
    "bakery",
    "theater",
    "sailor",
    "canyon",
    "tower",
    "carpet",
    "desert",
    "poet",
    "clinic",
    "factory",
    "ladder",
    "cottage",
)
VERBS = (
    "watched",
    "repaired",
    "visited",
    "described",
    "carried",
    "painted",
    "followed",
    "opened",
    "measured",
    "cleaned",
    "admired",
    "borrowed",
    "studied",
    "crossed",
    "planted",
    "explored",
    "finished",
    "ignored",
)
ADJECTIVES = (
    "quiet",
    "narrow",
    "ancient",
    "bright",
    "heavy",
    "gentle",
    "crowded",
    "distant",
    "careful",
    "wooden",
    "golden",
    "patient",
    "humble",
    "sudden",
    "silver",
    "curious",
    "steady",
    "famous",
)


def sentence() -> list[str]:
    """Ten words of plain English (stop words included): passes the language and quality filters."""
    n = lambda: RNG.choice(NOUNS)  # noqa: E731
    return ["the", n(), "of", "the", n(), RNG.choice(VERBS), "a", RNG.choice(ADJECTIVES), n(), "today"]


def words(n_sentences: int) -> list[str]:
    return [w for _ in range(n_sentences) for w in sentence()]


def text_of(ws: list[str]) -> str:
    """Sentences of 10 words (~1,300 characters for 20 sentences): passes the length and repetition filters."""
    return " ".join(" ".join(ws[i : i + 10]).capitalize() + "." for i in range(0, len(ws), 10))


def edited(ws: list[str], every: int) -> list[str]:
    """A copy with one word in ``every`` replaced: each edit changes up to 5 of the text's 5-grams."""
    return [RNG.choice(NOUNS) if i % every == every // 2 else w for i, w in enumerate(ws)]


def jaccard(a: str, b: str) -> float:
    sa, sb = set(shingle_hashes(a, 5).tolist()), set(shingle_hashes(b, 5).tolist())
    return len(sa & sb) / len(sa | sb)


BASE, OTHER, LATER, FRESH = words(20), words(20), words(20), words(20)
TEXTS = {
    "base": text_of(BASE),
    "base_copy": text_of(BASE).upper().replace(".", "!"),  # same normalised text: an exact duplicate
    "other": text_of(OTHER),
    "other_near": text_of(edited(OTHER, 100)),  # 2 edits: J ~ 0.9
    "later": text_of(LATER),
    "later_near": text_of(edited(LATER, 66)),  # 3 edits: J ~ 0.86
    "later_below": text_of(edited(LATER, 22)),  # 9 edits: J ~ 0.63, below min_similarity 0.7
    "fresh": text_of(FRESH),
    "fresh_near": text_of(edited(FRESH, 100)),
}


def page(*sections: str) -> bytes:
    body = "".join(f"<h2>Section about {name.replace('_', ' ')}</h2><p>{TEXTS[name]}</p>" for name in sections)
    return f"<html><body>{body}</body></html>".encode()


DROP_1 = {"https://a.example/1": page("base", "other", "base_copy"), "https://a.example/2": page("other_near", "later")}
DROP_2 = {
    "https://b.example/1": page("base", "later_near"),
    "https://b.example/2": page("later_below", "fresh", "fresh_near"),
}


def run_drop(spark, tmp: Path, name: str, pages: dict[str, bytes], *overrides: str) -> int:
    warc = write_warc(tmp / f"{name}.warc.gz", pages)
    cfg = load_pipeline_config(
        str(ROOT / "conf/tiny.yaml"), [f"input.corpus={warc}", f"storage.root={tmp}/tables", *overrides]
    )
    ctx = Context(spark, Storage(spark, cfg.storage.root), cfg)
    run_stage(ctx, "ingest")
    return run_stage(ctx, "segment").rows_written


def by_text(tmp: Path) -> dict:
    """Segments keyed by the TEXTS name of their body, with (url, status, reason, duplicate_of) and the ids."""
    rows = DeltaTable(str(tmp / "tables/segments")).to_pandas()
    names = {text: name for name, text in TEXTS.items()}
    rows = rows[rows["text"].isin(names)]
    return {(names[r.text], r.url): r for r in rows.itertuples()}


def test_planted_similarities():
    assert jaccard(TEXTS["other"], TEXTS["other_near"]) > 0.85
    assert jaccard(TEXTS["later"], TEXTS["later_near"]) > 0.8 and jaccard(TEXTS["fresh"], TEXTS["fresh_near"]) > 0.85
    assert 0.6 < jaccard(TEXTS["later"], TEXTS["later_below"]) < 0.68  # just below min_similarity 0.7
    assert jaccard(TEXTS["base"], TEXTS["other"]) < 0.05


@pytest.fixture(scope="module")
def drops(spark, tmp_path_factory):
    """Two drops into one table."""
    tmp = tmp_path_factory.mktemp("dedup")
    run_drop(spark, tmp, "drop1", DROP_1)
    first = by_text(tmp)
    run_drop(spark, tmp, "drop2", DROP_2)
    return tmp, first, by_text(tmp)


def test_duplicates_within_one_drop(drops):
    _, first, _ = drops
    base, copy = first["base", "https://a.example/1"], first["base_copy", "https://a.example/1"]
    kept, dup = sorted([base, copy], key=lambda r: r.segment_id)
    assert (kept.status, dup.status, dup.reason, dup.duplicate_of) == (
        "ok",
        "dropped",
        "exact_duplicate",
        kept.segment_id,
    )
    near = [first["other", "https://a.example/1"], first["other_near", "https://a.example/2"]]
    kept, dup = sorted(near, key=lambda r: r.segment_id)  # the smaller id is kept
    assert (kept.status, dup.status, dup.reason, dup.duplicate_of) == (
        "ok",
        "dropped",
        "near_duplicate",
        kept.segment_id,
    )
    assert (
        kept.minhash is not None and len(kept.minhash_bands) == 14 and dup.minhash is None and dup.minhash_bands is None
    )
    assert first["later", "https://a.example/2"].status == "ok"


def test_duplicates_of_earlier_drops_and_within_the_new_one(drops):
    _, first, second = drops
    stored_base = next(
        r for r in (first["base", "https://a.example/1"], first["base_copy", "https://a.example/1"]) if r.status == "ok"
    )
    again = second["base", "https://b.example/1"]
    assert (again.status, again.reason, again.duplicate_of) == ("dropped", "exact_duplicate", stored_base.segment_id)
    near = second["later_near", "https://b.example/1"]
    assert (near.status, near.reason, near.duplicate_of) == (
        "dropped",
        "near_duplicate",
        first["later", "https://a.example/2"].segment_id,
    )
    below = second["later_below", "https://b.example/2"]
    assert (below.status, below.reason, below.duplicate_of) == ("ok", None, None)
    fresh = sorted(
        [second["fresh", "https://b.example/2"], second["fresh_near", "https://b.example/2"]],
        key=lambda r: r.segment_id,
    )
    assert [r.reason for r in fresh] == [None, "near_duplicate"] and fresh[1].duplicate_of == fresh[0].segment_id
    assert {r.minhash_scheme for r in second.values()} == {"minhash_v1/5gram/112perm/seed1/14x8"}


def test_rerun_adds_nothing(spark, drops):
    tmp, _, second = drops
    assert run_drop(spark, tmp, "drop2", DROP_2) == 0
    assert by_text(tmp).keys() == second.keys()


def test_stored_signatures_under_another_scheme_are_recomputed(spark):
    """Signatures stored under the configured scheme are used as stored; others (another config, or a table from
    before near dedup) are recomputed from the text, not ignored; dropped rows are no representatives."""
    cfg = DedupConfig()
    fresh = minhash(TEXTS["later"], cfg)
    fields = "segment_id string, text string, status string"
    stored = spark.createDataFrame(
        [
            ("s1", TEXTS["base"], "ok", [7] * 112, [1], cfg.scheme),
            ("s2", TEXTS["later"], "ok", [7] * 112, [1], "minhash_v0/other"),
            ("s3", TEXTS["other"], "dropped", None, None, cfg.scheme),
        ],
        f"{fields}, minhash array<int>, minhash_bands array<bigint>, minhash_scheme string",
    )
    got = {r.segment_id: (r.minhash, r.minhash_bands) for r in stored_signatures(stored, cfg).collect()}
    assert got == {"s1": ([7] * 112, [1]), "s2": (fresh.signature.view("int32").tolist(), fresh.band_keys.tolist())}
    old_table = stored.select("segment_id", "text", "status")
    assert {r.segment_id for r in stored_signatures(old_table, cfg).collect()} == {"s1", "s2"}


@pytest.mark.parametrize("min_similarity, marked", [(0.7, False), (0.5, True)])
def test_a_shared_band_key_is_confirmed_by_the_signatures(spark, min_similarity, marked):
    """Two segments share a band key but agree on half their signature positions: near duplicates only at <= 0.5."""
    cfg = DedupConfig(min_similarity=min_similarity)
    sig = list(range(cfg.num_perm))
    half = sig[: cfg.num_perm // 2] + [-v for v in sig[cfg.num_perm // 2 :]]
    rows = [("s1", "ok", None, None, sig, [1, 2]), ("s2", "ok", None, None, half, [1, 3])]
    df = spark.createDataFrame(
        rows,
        "segment_id string, status string, reason string, duplicate_of string, minhash array<int>, "
        "minhash_bands array<bigint>",
    )
    got = {r.segment_id: (r.reason, r.duplicate_of) for r in near_dedup(df, None, cfg).collect()}
    assert got == {"s1": (None, None), "s2": ("near_duplicate", "s1") if marked else (None, None)}


@pytest.mark.parametrize("near", [True, False])
def test_near_duplicates_can_be_switched_off(spark, near):
    texts = {"s1": TEXTS["other"], "s2": TEXTS["other_near"], "s3": TEXTS["base"], "s4": TEXTS["base_copy"]}
    rows = [(sid, text, normalize_for_dedup(text), "ok", None) for sid, text in texts.items()]
    df = spark.createDataFrame(rows, "segment_id string, text string, text_hash string, status string, reason string")
    got = {
        r.segment_id: (r.reason, r.duplicate_of) for r in dedup(df, None, DedupConfig(near_duplicates=near)).collect()
    }
    assert got == {
        "s1": (None, None),
        "s2": ("near_duplicate", "s1") if near else (None, None),
        "s3": (None, None),
        "s4": ("exact_duplicate", "s3"),
    }
