"""Main-content extraction compared: our selectolax walker vs trafilatura vs resiliparse, on quality and speed.

    pip install '.[bench]'   # trafilatura and resiliparse are benchmark-only
    python benchmarks/extraction_compare.py [data/sample/python-docs-sample.warc.gz ...] [--repeat 3]

Gold standard: these are Sphinx pages, whose main content is the ``div[role=main]`` (``div.body``) element.
Per page, the extracted text and the gold text become bags of lower-cased words; token precision and
recall are their overlap over each bag (macro-averaged over pages). Segmentation needs the header
hierarchy, so the table also gives the share of the gold's headers (h1-h6 inside the main element) that
the extractor returns as headers, and the share it returns with the right level (trafilatura's Markdown
``#`` marks; resiliparse's plain text has none). Speed is pages per second of the extraction call alone,
one process, best of ``--repeat`` runs. Our walker runs as in the pipeline (text normalisation included,
PII masking off). Caveat: the gold is defined by the same markup rules our walker knows (Sphinx's
``sphinxsidebar``/``related`` classes), so this measures fitness for this corpus, not for the open web.
"""

from __future__ import annotations

import argparse
import collections
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from selectolax.lexbor import LexborHTMLParser

from udfs.readers import read_records
from udfs.segment import SegmentConfig, extract_blocks

SAMPLE = Path(__file__).resolve().parents[1] / "data/sample/python-docs-sample.warc.gz"
_WORD = re.compile(r"\w+")
_MARKDOWN_ESCAPE = re.compile(r"\\(.)")
_MARKDOWN_HEADER = re.compile(r"^(#{1,6}) +(.*)$", re.MULTILINE)


@dataclass(frozen=True)
class Extracted:
    text: str
    headers: list[tuple[int | None, str]]  # (level or None when the output has no levels, text)


def ours(html: str, cfg=SegmentConfig(mask_pii=False)) -> Extracted:
    blocks = extract_blocks(html, cfg)
    return Extracted("\n\n".join(text for _, text in blocks), [(level, text) for level, text in blocks if level])


def trafilatura_markdown(html: str) -> Extracted:
    import trafilatura

    markdown = _MARKDOWN_ESCAPE.sub(
        r"\1", trafilatura.extract(html, output_format="markdown", include_tables=True, include_comments=False) or ""
    )
    return Extracted(markdown, [(len(marks), text) for marks, text in _MARKDOWN_HEADER.findall(markdown)])


def resiliparse_main_content(html: str) -> Extracted:
    from resiliparse.extract.html2text import extract_plain_text

    text = extract_plain_text(html, main_content=True)
    return Extracted(text, [(None, line) for line in text.splitlines()])  # headers are lines, without a level


SYSTEMS: dict[str, Callable[[str], Extracted]] = {
    "ours (selectolax walker)": ours,
    "trafilatura 2.3 (markdown)": trafilatura_markdown,
    "resiliparse 2.0 (main_content)": resiliparse_main_content,
}


def gold(html: str) -> Extracted | None:
    main = LexborHTMLParser(html).css_first('div[role="main"], div.body')
    if main is None:
        return None
    for permalink in main.css("a.headerlink"):
        permalink.decompose()
    headers = [(int(h.tag[1]), " ".join(h.text().split())) for h in main.css("h1, h2, h3, h4, h5, h6")]
    return Extracted(main.text(separator=" "), headers)


def words(text: str) -> collections.Counter:
    return collections.Counter(_WORD.findall(text.lower()))


def norm(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def score(got: Extracted, want: Extracted) -> tuple[float, float, float, float]:
    """(token precision, token recall, header recall, header recall with the right level)."""
    g, w = words(got.text), words(want.text)
    common = sum((g & w).values())
    precision = common / max(1, sum(g.values()))
    recall = common / max(1, sum(w.values()))
    found = {norm(text) for _, text in got.headers}
    found_levels = {(level, norm(text)) for level, text in got.headers}
    headers = [(level, norm(text)) for level, text in want.headers]
    n = max(1, len(headers))
    return precision, recall, sum(t in found for _, t in headers) / n, sum(h in found_levels for h in headers) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("warcs", nargs="*", default=[str(SAMPLE)])
    parser.add_argument("--repeat", type=int, default=3, help="timing runs per system (best is reported)")
    args = parser.parse_args()
    pages = [(r.html, gold(r.html)) for path in args.warcs for r in read_records(path) if r.status == "ok"]
    pages = [(html, want) for html, want in pages if want is not None]
    print(f"{len(pages)} pages with a main element, {sum(len(h) for h, _ in pages) / 1e6:.1f} MB of HTML\n")
    print(f"{'extractor':<32}{'precision':>10}{'recall':>8}{'F1':>7}{'headers':>9}{'levels':>8}{'pages/s':>9}")
    for name, extract in SYSTEMS.items():
        best = float("inf")
        for _ in range(args.repeat):
            start = time.perf_counter()
            outputs = [extract(html) for html, _ in pages]
            best = min(best, time.perf_counter() - start)
        p, r, h, lv = (sum(col) / len(pages) for col in zip(*(score(o, want) for o, (_, want) in zip(outputs, pages))))
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        print(f"{name:<32}{p:>10.3f}{r:>8.3f}{f1:>7.3f}{h:>9.3f}{lv:>8.3f}{len(pages) / best:>9.1f}")


if __name__ == "__main__":
    main()
