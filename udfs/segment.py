"""Turn an HTML document into header sections and filtered segment candidates.

The paper (Li et al. 2023) defines a segment as the text that follows an HTML header, including the
subtrees of lower-level headers. So:

1. the page body is flattened into blocks (paragraphs, list items, ``<pre>`` code, headers),
   dropping boilerplate such as scripts, navigation, banners, sidebars and forms. Every block's
   text is normalised (``udfs.text.clean_text``) and has its personal data masked
   (``udfs.pii.mask_pii``), so all later steps see the text that is kept. Blocks outside the page's main
   content (comment threads, related links, share bars, footers, sidebars, ...) carry a label
   (``udfs.main_content``): a section that is mostly such blocks becomes one ``dropped`` row with the label's
   reason (``comments``, ``related_links``, ...) and its ``main_content_v1`` measurements, and no kept text
   holds a labelled block;
2. each header h<k> owns every block up to the next header of level <= k (``html_to_sections``);
3. each section becomes one ``SegmentCandidate`` whose ``text`` is the section *body*: everything
   under the header, including sub-header lines, but not the header line itself (the header is a
   title, not part of an answer). The filters in ``udfs.filters`` measure and judge it.

A section longer than ``max_chars`` is split (``split_long``) rather than dropped. Its sub-sections
that are long enough to be segments of their own (``min_chars`` or more) are judged on their own, so
the parts hold only the rest: the text before the first sub-header and the sub-sections too short to
stand alone, packed in document order into parts of at most ``max_chars``; a sub-section that is a
segment of its own ends the part before it. ``subheaders`` packs whole short sub-sections (cutting
the intro at paragraphs only when it alone is too long); ``paragraphs`` packs paragraph by paragraph.
A too-long section with nothing left to split off keeps one ``too_long`` row. Part 0 keeps the
section's segment id; later parts add their number to it (``segment_rows`` makes the table rows and their ids).

Text before the first header follows no header and is not part of any segment. A document with no
header at all yields a single level-0 section with an empty header, dropped as ``no_header``, so
that every document leaves a trace. Plain-text inputs (see ``udfs.readers``) have no headers.

Work per document is bounded: a page nested deeper than ``max_depth`` (estimated before parsing, so
the HTML5 tree builder, quadratic in nesting depth, never sees a pathological page; exact while
walking) is dropped as ``too_deep``, one that takes longer than ``parse_timeout_s`` as
``parse_timeout``, and one whose text is more than ``max_replacement_fraction`` U+FFFD (undecodable
bytes) as ``too_many_replacement_chars``: each as the document's single segment row. Everything else
is linear in the page size (nesting adds at most a factor of six, one per header level).

This module is pure: no pyspark, no vllm.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field, replace
from itertools import repeat
from typing import Any, Literal

import numpy as np
from selectolax.lexbor import LexborHTMLParser

from udfs import ids
from udfs.decontam import Decontamination, EvalSet
from udfs.filters import BoilerplateConfig, GopherConfig, SegmentView, language_codes, load_resources, measure
from udfs.main_content import (
    BLOCK_RULE,
    LINK_LIST,
    NOT_MAIN_CONTENT,
    PROMO,
    REGION_TAGS,
    Label,
    MainContentConfig,
    regions,
    verdict,
)
from udfs.pii import PLACEHOLDERS, mask_pii
from udfs.text import REPLACEMENT_CHAR, clean_text, normalize_for_dedup


@dataclass(frozen=True)
class SegmentConfig:
    """Segmentation and filter settings; defaults follow the paper, marked (ours) where it is silent."""

    min_chars: int = 600  # shorter segments are dropped (too_short)
    max_chars: int = 3000  # longer sections are split (split_long), or dropped as too_long
    # lower-cased headers that mark navigation (navigation_header)
    navigation_headers: tuple[str, ...] = (
        "advertisement",
        "forum",
        "quick link",
        "quick links",
        "free newsletter",
        "navigation",
        "table of contents",
        "related topics",
        "this page",
        "previous topic",
        "next topic",
    )
    repetition_ngram: int = 3  # word n-grams per sentence (ours)
    repetition_threshold: float = 0.8  # Jaccard at/above which two sentences repeat (ours)
    max_repeated_fraction: float = 0.3  # drop when more than this fraction of sentences repeat (ours)
    # --- extraction bounds, splitting and the filters beyond the paper's (all ours) ---
    max_depth: int = 512  # element nesting; real pages stay under ~100
    parse_timeout_s: float = 10.0  # per document: extraction, splitting and filters
    max_replacement_fraction: float = 0.01  # U+FFFD per extracted character
    split_long: Literal["subheaders", "paragraphs", "off"] = "subheaders"  # how a section over max_chars is cut
    languages: tuple[str, ...] = ("en",)  # ISO 639-1 codes to keep; empty: keep all (still measured)
    language_threshold: float = 0.5  # py3langid probability of a kept language
    gopher: GopherConfig = field(default_factory=GopherConfig)
    boilerplate: BoilerplateConfig = field(default_factory=BoilerplateConfig)
    main_content: MainContentConfig = field(default_factory=MainContentConfig)  # see udfs.main_content
    mask_pii: bool = True  # e-mails, phone numbers, public IPs and card numbers masked (udfs.pii)
    phone_region: str = "US"  # how phone numbers without a +country prefix are read
    # evaluation prompt files: overlapping text is dropped (eval_overlap:<set>)
    decontamination: tuple[EvalSet, ...] = ()
    decontamination_ngram: int = 13  # words of an n-gram shared with an evaluation prompt
    decontamination_min_words: int = 5  # shorter evaluation prompts are ignored

    def __post_init__(self) -> None:
        if self.min_chars < 1:
            raise ValueError(f"min_chars must be >= 1, got {self.min_chars}")
        if self.max_chars <= self.min_chars:
            raise ValueError(f"max_chars must be > min_chars ({self.min_chars}), got {self.max_chars}")
        if self.repetition_ngram < 1:
            raise ValueError(f"repetition_ngram must be >= 1, got {self.repetition_ngram}")
        for name in ("repetition_threshold", "max_repeated_fraction"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        for name in ("max_depth", "decontamination_ngram", "decontamination_min_words"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.parse_timeout_s <= 0:
            raise ValueError(f"parse_timeout_s must be > 0, got {self.parse_timeout_s}")
        for name in ("max_replacement_fraction", "language_threshold"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        unknown = sorted(set(self.languages) - language_codes())
        if unknown:
            raise ValueError(f"languages: unknown language code(s) {unknown} (py3langid knows ISO 639-1 codes)")
        names = [e.name for e in self.decontamination]
        if len(set(names)) != len(names):
            raise ValueError(f"decontamination: set names must be unique, got {names}")

    @property
    def eval_check(self) -> Decontamination:
        """The evaluation-set check of these settings: of segments here, and of generated instructions and seed
        pairs against the same sets."""
        return Decontamination(self.decontamination, self.decontamination_ngram, self.decontamination_min_words)


@dataclass(frozen=True)
class Section:
    """A header and everything under it, up to the next header of the same or a higher level."""

    index: int  # order of the header in the document, 0-based
    level: int  # 1..6 for h1..h6; 0 for the single section of a document without headers
    header: str  # whitespace-normalised header text
    text: str  # header line, blank line, then the body (sub-header lines included)


@dataclass(frozen=True)
class SegmentCandidate:
    """One section (or one part of a split section) as judged by the filters."""

    index: int  # the section's index
    part: int  # 0, or the part number of a split section
    level: int
    header: str
    text: str  # the body without the header line
    status: str  # "ok" | "dropped" | "error"
    reason: str | None  # snake_case reason when dropped; "segment_error: <type>: <message>" on error
    measurements: dict[str, Any] = field(default_factory=dict)  # filter name -> its measurements

    @property
    def lang(self) -> str | None:
        return self.measurements.get("language_v1", {}).get("lang")

    @property
    def lang_score(self) -> float | None:
        return self.measurements.get("language_v1", {}).get("score")


MAX_ERROR_CHARS = 500  # of an error row's reason


class DocumentTooComplex(Exception):
    """The document exceeds a work bound; ``reason`` is the drop reason (``too_deep``, ``parse_timeout``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def extract_blocks(html: str, cfg: SegmentConfig | None = None) -> list[tuple[int, str]]:
    """The page's main content as (level, text) blocks: 1..6 for headers, 0 for other text (step 1 above)."""
    cfg = cfg or SegmentConfig()
    blocks = _blocks(html, cfg, time.monotonic() + cfg.parse_timeout_s)
    _left_out_sections(_section_tree(blocks), blocks, cfg)
    return [(b.level, b.text) for b in blocks if b.region is None]


def html_to_sections(html: str, cfg: SegmentConfig | None = None) -> list[Section]:
    """Split a document's main content into one section per header (see the module docstring)."""
    cfg = cfg or SegmentConfig()
    blocks = _blocks(html, cfg, time.monotonic() + cfg.parse_timeout_s)
    nodes = _section_tree(blocks)
    left_out = _left_out_sections(nodes, blocks, cfg)
    sections = []
    for node in nodes:
        if node.index in left_out:
            continue
        body = _join(blocks[node.start + 1 : node.end]).text
        sections.append(
            Section(
                node.index,
                node.level,
                node.header,
                f"{node.header}\n\n{body}" if node.header and body else node.header or body,
            )
        )
    return sections


def segment_document(html: str, cfg: SegmentConfig) -> list[SegmentCandidate]:
    """One or more candidates per section, each ``ok`` or ``dropped`` with the first failing reason.

    A document that exceeds a work bound yields one dropped candidate instead (see the module docstring);
    one that raises anything else yields one ``error`` candidate whose reason names the exception, so a
    single odd page is recorded and the stage goes on instead of failing on every retry.
    """
    load_resources(cfg)  # outside the try: a broken environment fails the stage (see load_resources)
    deadline = time.monotonic() + cfg.parse_timeout_s
    try:
        blocks = _blocks(html, cfg, deadline)
        bad = sum(b.replacement_chars for b in blocks)
        if bad > cfg.max_replacement_fraction * max(1, sum(len(b.text) + b.replacement_chars for b in blocks)):
            return [_document_dropped("too_many_replacement_chars")]
        nodes = _section_tree(blocks)
        left_out = _left_out_sections(nodes, blocks, cfg)
        bodies = [_join(blocks[n.start + 1 : n.end]) for n in nodes]
        candidates = []
        for node, body in zip(nodes, bodies):
            _check_deadline(deadline)
            if node.index in left_out:
                candidates.append(left_out[node.index])
                continue
            parts = [body]
            if len(body.text) > cfg.max_chars and cfg.split_long != "off" and node.level:
                parts = [_join(p) for p in _split(node, nodes, bodies, blocks, cfg)] or parts
            for number, part in enumerate(parts):
                candidates.append(_judge(node, number, part, cfg))
        return candidates
    except DocumentTooComplex as exc:
        return [_document_dropped(exc.reason)]
    except Exception as exc:  # noqa: BLE001 - one odd page must not fail the stage on every retry
        return [SegmentCandidate(0, 0, 0, "", "", "error", _error_reason(exc))]


def _error_reason(exc: Exception) -> str:
    """``segment_error: <type>: <message>``, bounded: the row must stay small whatever the message."""
    return f"segment_error: {type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]


def segment_rows(doc_id: str, url: str, html: str, cfg: SegmentConfig) -> list[dict[str, Any]]:
    """The segments table's rows of one document (``udfs.tables.SEGMENT_ROWS_SCHEMA``), ids included:
    ``segment_document``'s candidates keyed by document and span, with the hash exact dedup compares."""
    return [_row(doc_id, url, c) for c in segment_document(html, cfg)]


def error_row(doc_id: str, url: str, reason: str) -> dict[str, Any]:
    """The one segments row of a document that could not be segmented at all (its record unreadable)."""
    return _row(doc_id, url, SegmentCandidate(0, 0, 0, "", "", "error", reason[:MAX_ERROR_CHARS]))


def _row(doc_id: str, url: str, c: SegmentCandidate) -> dict[str, Any]:
    return {
        "segment_id": ids.segment_id(doc_id, c.index, c.part),
        "doc_id": doc_id,
        "url": url,
        "section_index": c.index,
        "header_level": c.level,
        "header": c.header,
        "text": c.text,
        "n_chars": len(c.text),
        "text_hash": ids.text_hash(normalize_for_dedup(c.text)),
        "status": c.status,
        "reason": c.reason,
        "part": c.part,
        "lang": c.lang,
        "lang_score": c.lang_score,
        "measurements": json.dumps(c.measurements, sort_keys=True),
    }


def _judge(node: _Node, part: int, body: _Text, cfg: SegmentConfig) -> SegmentCandidate:
    reason, measurements = measure(SegmentView(node.header, body.text, body.link_chars), cfg)
    measurements["pii_v1"] = dict(zip(PLACEHOLDERS, body.pii))
    if body.left_out:  # only then: a section with nothing left out keeps the measurements it always had
        measurements["main_content_v1"] = {"left_out_chars": body.left_out}
    if node.level == 0:
        reason = "no_header"
    return SegmentCandidate(
        node.index, part, node.level, node.header, body.text, "dropped" if reason else "ok", reason, measurements
    )


def _document_dropped(reason: str) -> SegmentCandidate:
    return SegmentCandidate(0, 0, 0, "", "", "dropped", reason)


def _check_deadline(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise DocumentTooComplex("parse_timeout")


# --- blocks -> sections ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Block:
    level: int  # 1..6 for a header, 0 for other text
    text: str  # cleaned and PII-masked
    link_chars: int = 0  # non-space characters inside <a> elements
    pii: tuple[int, ...] = (0, 0, 0, 0)  # masked items per PLACEHOLDERS kind
    replacement_chars: int = 0  # U+FFFD removed by cleaning
    region: Label | None = None  # set when outside the main content (udfs.main_content): left out of every text


@dataclass(frozen=True)
class _Text:
    """Blocks joined into one text, with their link characters and PII counts summed."""

    text: str
    link_chars: int
    pii: tuple[int, ...]
    left_out: dict[str, int]  # characters of the blocks outside the main content, by reason; not in ``text``


@dataclass(frozen=True)
class _Node:
    """A header's section as a slice of the block list: the header block and everything up to ``end``."""

    index: int
    level: int
    header: str
    start: int  # the header block (for the level-0 section of a header-less document: -1)
    end: int
    children: tuple[int, ...]  # node indices of the top-level sub-sections


def _section_tree(blocks: list[_Block]) -> list[_Node]:
    """One node per header, in document order; a single level-0 node when there is no header. O(blocks)."""
    heads = [i for i, b in enumerate(blocks) if b.level]
    if not heads:
        return [_Node(0, 0, "", -1, len(blocks), ())]
    ends: dict[int, int] = {}
    children: dict[int, list[int]] = {i: [] for i in heads}
    open_heads: list[int] = []  # levels strictly increasing: the chain of sections containing this point
    for i in heads:
        while open_heads and blocks[open_heads[-1]].level >= blocks[i].level:
            ends[open_heads.pop()] = i
        if open_heads:
            children[open_heads[-1]].append(i)
        open_heads.append(i)
    for i in open_heads:
        ends[i] = len(blocks)
    number = {head: n for n, head in enumerate(heads)}
    return [
        _Node(number[i], blocks[i].level, blocks[i].text, i, ends[i], tuple(number[c] for c in children[i]))
        for i in heads
    ]


def _join(blocks: list[_Block], left_out_too: bool = False) -> _Text:
    """The main-content blocks (or, ``left_out_too``, all) joined by blank lines."""
    left_out = {} if left_out_too else _left_out_chars(blocks)
    blocks = [b for b in blocks if left_out_too or b.region is None]
    texts = [b.text for b in blocks if b.text]
    pii = tuple(map(sum, zip(*(b.pii for b in blocks)))) if blocks else (0,) * len(PLACEHOLDERS)
    return _Text("\n\n".join(texts), sum(b.link_chars for b in blocks), pii, left_out)


def _left_out_chars(blocks: list[_Block]) -> dict[str, int]:
    """Characters of the blocks outside the main content, by reason."""
    chars: dict[str, int] = {}
    for b in blocks:
        if b.region is not None:
            chars[b.region[0]] = chars.get(b.region[0], 0) + len(b.text)
    return chars


def _left_out_sections(nodes: list[_Node], blocks: list[_Block], cfg: SegmentConfig) -> dict[int, SegmentCandidate]:
    """The dropped candidate of each section outside the main content (``udfs.main_content.verdict``), by index.

    Sub-sections are judged before their parents, and a left-out one's blocks all get its label (in
    ``blocks``, in place) so that no parent's text keeps them and a parent is judged on the rest.
    """
    left_out: dict[int, SegmentCandidate] = {}
    mc = cfg.main_content
    if not mc.enabled:
        return left_out
    taken = [False] * len(blocks)  # in a left-out sub-section: judged there, not again in its parents
    for node in reversed(nodes):
        if not node.level:
            continue
        span = [b for i, b in enumerate(blocks[node.start + 1 : node.end], node.start + 1) if not taken[i]]
        # A link list or a call to action only leaves its own block out: a section of prose and a list keeps
        # its prose (a section of nothing but link lists is one).
        judged = [b for b in span if not (b.region and b.region[1].startswith(BLOCK_RULE))]
        if not any(b.region is None and b.text for b in judged):
            judged = span
        chars: dict[str | None, int] = {
            **_left_out_chars(judged),
            None: sum(len(b.text) for b in judged if not b.region),
        }
        header = blocks[node.start].region
        reason = verdict(chars, header, mc.max_left_out_share)
        if reason is None:
            continue
        body = _join(span, left_out_too=True)
        evidence = (
            header
            if header and header[0] == reason
            else next(b.region for b in span if b.region and b.region[0] == reason)
        )
        visible = len(body.text) - sum(map(body.text.count, " \n"))
        measurements = {
            "main_content_v1": {
                "matched": evidence[1],
                "main_chars": chars.pop(None),
                "left_out_chars": chars,
                "link_density": round(min(1.0, body.link_chars / visible), 4) if visible else 0.0,
            }
        }
        left_out[node.index] = SegmentCandidate(
            node.index, 0, node.level, node.header, body.text, "dropped", reason, measurements
        )
        label = (reason, evidence[1])
        for i in range(node.start, node.end):
            taken[i] = True
            if blocks[i].region is None:
                blocks[i] = replace(blocks[i], region=label)
    return left_out


def _split(
    node: _Node, nodes: list[_Node], bodies: list[_Text], blocks: list[_Block], cfg: SegmentConfig
) -> list[list[_Block]]:
    """The block lists of the parts of a too-long section (see the module docstring)."""
    first_child = nodes[node.children[0]].start if node.children else node.end
    groups: list[list[_Block] | None] = [blocks[node.start + 1 : first_child]]  # None: a sub-section judged on its own
    for c in node.children:
        child = nodes[c]
        groups.append(None if len(bodies[c].text) >= cfg.min_chars else blocks[child.start : child.end])
    units: list[list[_Block] | None] = []
    for group in groups:
        if group is not None and (cfg.split_long == "paragraphs" or _size(group) > cfg.max_chars):
            units.extend([b] for b in group)
        else:
            units.append(group)
    parts: list[list[_Block]] = []
    current: list[_Block] = []
    size = 0  # _size(current)
    for unit in [*units, None]:
        unit_size = _size(unit) if unit is not None else 0
        if unit is None or (size and size + 2 + unit_size > cfg.max_chars):
            if size:
                parts.append(current)
            current, size = [], 0
        if unit_size:
            current.extend(unit)
            size += unit_size + 2 if size else unit_size
    return parts


def _size(blocks: list[_Block]) -> int:
    """len() of the main-content blocks joined by blank lines."""
    texts = [len(b.text) for b in blocks if b.text and b.region is None]
    return sum(texts) + 2 * (len(texts) - 1) if texts else 0


# --- HTML -> blocks --------------------------------------------------------------------------------------


# Elements that never hold main content.
_SKIP_TAGS = frozenset(
    {"script", "style", "noscript", "template", "svg", "iframe", "nav", "aside", "form", "button", "select", "textarea"}
)
# <header>/<footer> are page banners only outside sectioning content (the ARIA banner/contentinfo
# rule); inside an <article> they hold its title and byline, so those are kept.
_PAGE_CHROME_TAGS = frozenset({"header", "footer"})
_SECTIONING_TAGS = frozenset({"article", "aside", "main", "nav", "section"})
_SKIP_ROLES = frozenset({"navigation", "search", "banner", "contentinfo", "complementary", "menu", "menubar"})
# Common class names of navigation chrome; "headerlink" is the Sphinx/MkDocs "¶" permalink.
_SKIP_CLASSES = frozenset(
    {
        "sidebar",
        "sphinxsidebar",
        "related",
        "footer",
        "breadcrumb",
        "breadcrumbs",
        "navbar",
        "menu",
        "toc",
        "headerlink",
    }
)
_HEADINGS = {f"h{k}": k for k in range(1, 7)}
_PARAGRAPH_TAGS = frozenset(
    {
        "address",
        "article",
        "blockquote",
        "caption",
        "center",
        "details",
        "dialog",
        "div",
        "dl",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "header",
        "hgroup",
        "hr",
        "main",
        "ol",
        "p",
        "section",
        "summary",
        "table",
        "ul",
    }
)
_LINE_TAGS = frozenset({"br", "dd", "dt", "li", "tr"})
_CELL_TAGS = frozenset({"td", "th"})
# Start and end tags of elements that nest (void elements and those whose end tag the parser implies
# are left out), for the pre-parse depth estimate.
_NESTING_TAG = re.compile(
    r"<(/?)(?!(?:area|base|br|col|embed|hr|img|input|link|meta|param|source|track|wbr|p|li|dt|dd|tr|td|th|"
    r"option|optgroup|thead|tbody|tfoot|colgroup|caption|rb|rt|rp|html|head|body|frame)\b)[a-zA-Z]",
    re.IGNORECASE,
)
_DEPTH_STEP = {"": 1, "/": -1}
# The estimate counts unclosed inline elements that the parser would close, so it gets this much slack
# over max_depth before a page is dropped unparsed; the walk enforces max_depth exactly.
_ESTIMATE_SLACK = 4
_DEADLINE_EVERY = 512  # nodes walked between two looks at the clock


def _estimated_depth(html: str, limit: int) -> int:
    """Deepest element nesting the tags imply (stray end tags never go below zero); 0 below ``limit`` tags."""
    if html.count("<") <= limit:  # cannot nest deeper than it has tags: skip the scan
        return 0
    steps = np.fromiter(map(_DEPTH_STEP.__getitem__, _NESTING_TAG.findall(html)), dtype=np.int64)
    if not steps.size:
        return 0
    depth = np.cumsum(steps)
    return int((depth - np.minimum(np.minimum.accumulate(depth), 0)).max())


def _blocks(html: str, cfg: SegmentConfig, deadline: float) -> list[_Block]:
    """Flatten the body into blocks: level 1..6 for headers, 0 for other text."""
    if _estimated_depth(html, cfg.max_depth * _ESTIMATE_SLACK) > cfg.max_depth * _ESTIMATE_SLACK:
        raise DocumentTooComplex("too_deep")
    tree = LexborHTMLParser(html)
    body = tree.body
    writer = _BlockWriter(cfg)
    labels = regions(cfg.main_content) if cfg.main_content.enabled else None
    main, protected = labels.anchors(tree) if labels and body is not None else (None, frozenset())
    outside: Label | None = (NOT_MAIN_CONTENT, "outside <main>") if main is not None else None
    # Iterative depth-first walk: malformed pages nest deeper than Python's recursion limit. An element
    # is pushed twice: to enter it (its node) and to leave it (its tag, read once on entering; with the
    # label around it, given back on leaving).
    # (node or tag, leaving, in_sectioning, depth, label)
    stack = [(body, False, False, 0, outside)] if body is not None else []
    writer.label(outside)
    walked = 0
    while stack:
        node, leaving, in_sectioning, depth, label = stack.pop()
        walked += 1
        if walked % _DEADLINE_EVERY == 0:
            _check_deadline(deadline)
        if leaving:
            writer.close(node)
            writer.label(label)
            continue
        tag = node.tag
        if tag == "-text":
            writer.text(node.text_content)
        elif not node.is_element_node or _is_boilerplate(node, tag, in_sectioning):
            continue  # comments and boilerplate subtrees
        elif tag == "pre":
            writer.pre(node.text(deep=True))
        else:
            if depth >= cfg.max_depth:
                raise DocumentTooComplex("too_deep")
            own = label
            if labels is not None and tag in REGION_TAGS and depth:  # <body> holds everything
                mem_id = node.mem_id
                if mem_id == main:
                    own = None
                elif mem_id not in protected:
                    own = labels.label(node) or label
                writer.label(own)
            writer.open(tag)
            stack.append((tag, True, in_sectioning, depth, label))
            children = list(node.iter(include_text=True))
            children.reverse()
            inner = in_sectioning or tag in _SECTIONING_TAGS
            stack.extend(zip(children, repeat(False), repeat(inner), repeat(depth + 1), repeat(own)))
    writer.paragraph()
    return writer.blocks


def _block_label(text: str, link_chars: int, mc: MainContentConfig) -> Label | None:
    """The label a block's own text gives (jusText-style block rules), or None."""
    # A list of links to elsewhere, whatever its markup; one line ("Source code: Lib/json.py") is not a list.
    if link_chars and mc.max_block_link_density is not None and "\n" in text:
        density = link_chars / max(1, len(text) - sum(map(text.count, " \n")))
        if density > mc.max_block_link_density:
            return "related_links", f"{LINK_LIST}{min(1.0, density):.2f}"
    # A short call to action ("Do you want to be informed of our actions? Sign up here") inside the article.
    if len(text) <= mc.max_promo_chars and mc.promo_phrases:
        lower = text.lower()
        for phrase in mc.promo_phrases:
            if phrase in lower:
                return "signup_or_consent", PROMO + phrase
    return None


def _is_boilerplate(node, tag: str, in_sectioning: bool) -> bool:
    if tag in _SKIP_TAGS or (tag in _PAGE_CHROME_TAGS and not in_sectioning):
        return True
    attrs = node.attrs  # looks attributes up one by one, without building the whole dict
    return attrs.get("role") in _SKIP_ROLES or not _SKIP_CLASSES.isdisjoint((attrs.get("class") or "").split())


class _BlockWriter:
    """Collects inline text into lines, lines into blocks; headers become blocks of their own."""

    def __init__(self, cfg: SegmentConfig) -> None:
        self.blocks: list[_Block] = []
        self._cfg = cfg
        self._lines: list[str] = []
        self._inline: list[str] = []
        self._heading_level = 0
        self._heading_depth = 0  # a heading can contain another one (<h2><div><h3>); the outer wins
        self._link_depth = 0
        self._link_chars = 0  # in the block being built
        self._label: Label | None = None  # of the text being collected (udfs.main_content)

    def label(self, label: Label | None) -> None:
        """Text from here on is outside the main content (a label) or in it (None); a change ends the block."""
        if label != self._label:
            self.paragraph()
            self._label = label

    def text(self, value: str) -> None:
        self._inline.append(value)
        if self._link_depth:
            self._link_chars += len(value) - sum(map(value.count, " \t\n\r\f"))

    def open(self, tag: str) -> None:
        if tag == "a":
            self._link_depth += 1
        elif tag in _HEADINGS:
            if not self._heading_depth:
                self.paragraph()
                self._heading_level = _HEADINGS[tag]
            self._heading_depth += 1
        elif tag in _PARAGRAPH_TAGS:
            self.paragraph()
        elif tag in _LINE_TAGS:
            self.newline()
        elif tag in _CELL_TAGS:
            self.text(" ")

    def close(self, tag: str) -> None:
        if tag == "a":
            self._link_depth -= 1
        elif tag in _HEADINGS:
            self._heading_depth -= 1
            if not self._heading_depth:
                self.newline()
                # Empty headers are kept as blocks so that the header filter can report them.
                self._emit(self._heading_level, " ".join(self._lines))
                self._lines.clear()
        elif tag in _PARAGRAPH_TAGS:
            self.paragraph()
        elif tag in _LINE_TAGS:
            self.newline()

    def newline(self) -> None:
        line = " ".join("".join(self._inline).split())
        self._inline.clear()
        if line:
            self._lines.append(line)

    def paragraph(self) -> None:
        self.newline()
        if self._lines and not self._heading_depth:  # inside a heading, blocks merge into its one line
            self._emit(0, "\n".join(self._lines))
            self._lines.clear()

    def pre(self, value: str) -> None:
        if self._heading_depth:
            self.text(value)
            return
        self.paragraph()
        self._emit(0, value, code=True)

    def _emit(self, level: int, raw: str, code: bool = False) -> None:
        """Clean, mask and append one block; ``raw`` is whitespace-collapsed lines, or code as written."""
        replacement_chars = raw.count(REPLACEMENT_CHAR)
        text = clean_text(raw)
        # Cleaning can remove characters between spaces: collapse again. Code keeps its indentation,
        # without trailing spaces and blank edges.
        lines = (line.rstrip() if code else " ".join(line.split()) for line in text.split("\n"))
        text = "\n".join(line for line in lines if code or line).strip("\n")
        if not text.strip() and not level:  # empty headers stay: the header filter reports them
            return
        pii = (0,) * len(PLACEHOLDERS)
        if self._cfg.mask_pii:
            masked = mask_pii(text, self._cfg.phone_region)
            text, pii = masked.text, tuple(masked.counts.values())
        link_chars = self._link_chars if not level else 0
        label = self._label
        mc = self._cfg.main_content
        if label is None and not level and mc.enabled:
            label = _block_label(text, link_chars, mc)
        self.blocks.append(_Block(level, text, link_chars, pii, replacement_chars, label))
        self._link_chars = 0
