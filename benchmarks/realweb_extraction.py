"""What the segment stage keeps on the open web: main-text and boilerplate snippets kept, beside trafilatura.

    pip install '.[bench]'   # trafilatura is benchmark-only
    python benchmarks/realweb_extraction.py [/work/shared/data/realweb-eval.warc.gz] [--json realweb-eval.json] \
        [--set min_chars=300 ...] [--no-trafilatura]

Data: trafilatura's evaluation set served as a crawl (953 real pages, many sites and languages) and its
per-URL snippets: ``with`` (main text a good extraction keeps) and ``without`` (boilerplate it must drop).
Our side is the corpus stages as the pipeline runs them: ``udfs.readers`` (ingest) then ``segment_document``
(segment); a page's kept text is the text of its ``ok`` segments. Two settings are run: the defaults (600-3,000
characters, English only) and the same with every language kept (``languages=[]``), since most of the set is
not English. ``--set`` changes both (``SegmentConfig`` keys, as under ``segment:`` in conf/*.yaml).

trafilatura runs with datatrove's ``Trafilatura`` settings (``favor_precision``, no comments, ``deduplicate``).
Speeds are pages per CPU second of this process (the machine may be shared), reading excluded.

A snippet is kept when its normalised text occurs in the page's normalised kept text. Both sides are
normalised alike: ``udfs.text.clean_text`` (what our segmenter applies to every block), then whitespace
collapsed. Shares are over pages with kept text (at least one ``ok`` segment; for trafilatura, a non-empty
extraction); trafilatura is also scored on exactly our pages with kept text.

The set is also the one the main-content rules were tuned on. To show how much of that is fitted to it, URLs
are split in two halves by hash (sha256 of the URL, even first byte: ``tune``; odd: ``held_out``); the rules
were tuned looking at the ``tune`` half only, and every figure is printed for each half and overall. The page
language (for the per-language lines) is py3langid's on the page's ``with`` snippets.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path

from udfs.config import apply_override, build
from udfs.readers import read_records
from udfs.segment import SegmentConfig, segment_document
from udfs.text import clean_text

DATA = Path("/work/shared/data")
LANGUAGES_SHOWN = ("en", "de", "fr", "es", "zh")  # the rest is summed as "other"


def normalise(text: str) -> str:
    return " ".join(clean_text(text).split())


def split_of(url: str) -> str:
    return "tune" if hashlib.sha256(url.encode()).digest()[0] % 2 == 0 else "held_out"


def page_language(snippets: list[str]) -> str:
    import py3langid

    lang = py3langid.classify(" ".join(snippets))[0]
    return lang if lang in LANGUAGES_SHOWN else "other"


def ours(html: str, cfg: SegmentConfig) -> str:
    return "\n".join(c.text for c in segment_document(html, cfg) if c.status == "ok")


def trafilatura_text(html: str) -> str:
    import trafilatura

    return trafilatura.extract(html, favor_precision=True, include_comments=False, deduplicate=True) or ""


def kept(snippets: list[str], text: str) -> int:
    return sum(normalise(s) in text for s in snippets if normalise(s))


def report(title: str, kept_texts: dict[str, str], gold: dict, pages: list[str]) -> None:
    """One line per group: pages with kept text, share of `with` snippets kept, share of `without` kept."""
    groups: dict[tuple[str, str], list[int]] = collections.defaultdict(lambda: [0, 0, 0, 0, 0])
    for url in pages:
        text = kept_texts.get(url, "")
        if not text:
            continue
        g = gold[url]
        with_, without = [s for s in g["with"] if normalise(s)], [s for s in g["without"] if normalise(s)]
        row = (1, kept(with_, text), len(with_), kept(without, text), len(without))
        for key in (("all", "all"), (split_of(url), "all"), ("all", g["lang"]), (split_of(url), g["lang"])):
            groups[key] = [a + b for a, b in zip(groups[key], row)]
    print(f"\n{title}")
    print(f"  {'split':<9}{'lang':<7}{'pages':>6}{'with kept':>12}{'without kept':>14}")
    for split in ("all", "tune", "held_out"):
        for lang in ("all", *LANGUAGES_SHOWN, "other"):
            n, w, nw, b, nb = groups.get((split, lang), [0] * 5)
            if n and (lang == "all" or split == "all"):
                print(f"  {split:<9}{lang:<7}{n:>6}{w / max(nw, 1):>12.1%}{b / max(nb, 1):>14.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("warc", nargs="?", default=str(DATA / "realweb-eval.warc.gz"))
    parser.add_argument("--json", default=str(DATA / "realweb-eval.json"), help="the URL -> snippets file")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    parser.add_argument("--no-trafilatura", action="store_true")
    args = parser.parse_args()
    raw: dict = {}
    for item in args.overrides:
        apply_override(raw, item)
    base = build(SegmentConfig, raw)
    gold = json.loads(Path(args.json).read_text())
    for g in gold.values():
        g["lang"] = page_language(g["with"])
    docs = {r.url: r.html for r in read_records(args.warc) if r.status == "ok" and r.url in gold}
    pages = sorted(docs)
    print(f"{len(pages)} pages read of {len(gold)} in {args.json}; split: {collections.Counter(map(split_of, pages))}")
    ours_by_setting = {}
    for name, cfg in (("defaults", base), ("languages=[] (all kept)", replace(base, languages=()))):
        start = time.process_time()
        texts = {url: normalise(ours(docs[url], cfg)) for url in pages}
        seconds = time.process_time() - start
        ours_by_setting[name] = texts
        report(f"ours, {name} ({len(pages) / seconds:.1f} pages/s CPU, one core)", texts, gold, pages)
    if args.no_trafilatura:
        return
    start = time.process_time()
    theirs = {url: normalise(trafilatura_text(docs[url])) for url in pages}
    seconds = time.process_time() - start
    report(f"trafilatura 2.3.1, its own pages with text ({len(pages) / seconds:.1f} pages/s CPU)", theirs, gold, pages)
    for name, texts in ours_by_setting.items():
        same = [url for url in pages if texts[url]]
        report(f"trafilatura on our pages with kept text, {name}", theirs, gold, same)


if __name__ == "__main__":
    main()
