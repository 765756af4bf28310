"""Turn an HTML document into header sections and filtered segment candidates.

The paper (Li et al. 2023) defines a segment as the text that follows an HTML header, including the
subtrees of lower-level headers. So:

1. the page body is flattened into blocks (paragraphs, list items, ``<pre>`` code, headers),
   dropping boilerplate such as scripts, navigation, banners, sidebars and forms;
2. each header h<k> owns every block up to the next header of level <= k (``html_to_sections``);
3. each section becomes one ``SegmentCandidate`` whose ``text`` is the section *body*: everything
   under the header, including sub-header lines, but not the header line itself (the header is a
   title, not part of an answer). The filters in ``udfs.filters`` judge the header and that body.

Text before the first header follows no header and is not part of any segment. A document with no
header at all yields a single level-0 section with an empty header, dropped as ``no_header``, so
that every document leaves a trace. Plain-text inputs (see ``udfs.readers``) have no headers.

This module is pure: no pyspark, no vllm.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from selectolax.lexbor import LexborHTMLParser

from udfs.filters import first_failure


@dataclass(frozen=True)
class SegmentConfig:
    """Segmentation and filter settings; defaults follow the paper, marked (ours) where it is silent."""

    min_chars: int = 600
    max_chars: int = 3000
    navigation_headers: tuple[str, ...] = (
        "advertisement", "forum", "quick link", "quick links", "free newsletter", "navigation",
        "table of contents", "related topics", "this page", "previous topic", "next topic",
    )
    repetition_ngram: int = 3  # word n-grams per sentence (ours)
    repetition_threshold: float = 0.8  # Jaccard at/above which two sentences repeat (ours)
    max_repeated_fraction: float = 0.3  # drop when more than this fraction of sentences repeat (ours)

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


@dataclass(frozen=True)
class Section:
    """A header and everything under it, up to the next header of the same or a higher level."""

    index: int  # order of the header in the document, 0-based
    level: int  # 1..6 for h1..h6; 0 for the single section of a document without headers
    header: str  # whitespace-normalised header text
    text: str  # header line, blank line, then the body (sub-header lines included)


@dataclass(frozen=True)
class SegmentCandidate:
    """One section judged by the filters; ``text`` is the body without the header line."""

    index: int
    level: int
    header: str
    text: str
    status: str  # "ok" | "dropped"
    reason: str | None  # snake_case reason when dropped


def html_to_sections(html: str) -> list[Section]:
    """Split a document into one section per header (see the module docstring)."""
    return [
        Section(index, level, header, f"{header}\n\n{body}" if header and body else header or body)
        for index, (level, header, body) in enumerate(_split_sections(html))
    ]


def segment_document(html: str, cfg: SegmentConfig) -> list[SegmentCandidate]:
    """One candidate per section, each either ``ok`` or ``dropped`` with the first failing reason."""
    candidates = []
    for index, (level, header, body) in enumerate(_split_sections(html)):
        reason = "no_header" if level == 0 else first_failure(header, body, cfg)
        candidates.append(SegmentCandidate(index, level, header, body, "dropped" if reason else "ok", reason))
    return candidates


def _split_sections(html: str) -> list[tuple[int, str, str]]:
    """(level, header, body) per header; a single (0, "", text) when the document has no header."""
    blocks = _blocks(html)
    heads = [i for i, (level, _) in enumerate(blocks) if level]
    if not heads:
        return [(0, "", "\n\n".join(text for _, text in blocks))]
    sections = []
    for n, start in enumerate(heads):
        level, header = blocks[start]
        end = next((i for i in heads[n + 1 :] if blocks[i][0] <= level), len(blocks))
        body = "\n\n".join(text for _, text in blocks[start + 1 : end] if text)
        sections.append((level, header, body))
    return sections


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
    {"sidebar", "sphinxsidebar", "related", "footer", "breadcrumb", "breadcrumbs", "navbar", "menu", "toc",
     "headerlink"}
)
_HEADINGS = {f"h{k}": k for k in range(1, 7)}
_PARAGRAPH_TAGS = frozenset(
    {
        "address", "article", "blockquote", "caption", "center", "details", "dialog", "div", "dl",
        "fieldset", "figcaption", "figure", "footer", "header", "hgroup", "hr", "main", "ol", "p",
        "section", "summary", "table", "ul",
    }
)
_LINE_TAGS = frozenset({"br", "dd", "dt", "li", "tr"})
_CELL_TAGS = frozenset({"td", "th"})
# C0/C1 control characters except tab, newline and carriage return (whitespace, handled elsewhere).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _blocks(html: str) -> list[tuple[int, str]]:
    """Flatten the body into (level, text) blocks: level 1..6 for headers, 0 for other text."""
    body = LexborHTMLParser(html).body
    writer = _BlockWriter()
    # Iterative depth-first walk: malformed pages nest deeper than Python's recursion limit.
    stack = [(body, False, False)] if body is not None else []  # (node, leaving, in_sectioning)
    while stack:
        node, leaving, in_sectioning = stack.pop()
        tag = node.tag
        if leaving:
            writer.close(tag)
        elif tag == "-text":
            writer.text(node.text_content)
        elif not node.is_element_node or _is_boilerplate(node, tag, in_sectioning):
            continue  # comments and boilerplate subtrees
        elif tag == "pre":
            writer.pre(node.text(deep=True))
        else:
            writer.open(tag)
            stack.append((node, True, in_sectioning))
            inner = in_sectioning or tag in _SECTIONING_TAGS
            stack.extend((child, False, inner) for child in reversed(list(node.iter(include_text=True))))
    writer.paragraph()
    return writer.blocks


def _is_boilerplate(node, tag: str, in_sectioning: bool) -> bool:
    if tag in _SKIP_TAGS or (tag in _PAGE_CHROME_TAGS and not in_sectioning):
        return True
    attrs = node.attributes
    return attrs.get("role") in _SKIP_ROLES or not _SKIP_CLASSES.isdisjoint((attrs.get("class") or "").split())


class _BlockWriter:
    """Collects inline text into lines, lines into blocks; headers become blocks of their own."""

    def __init__(self) -> None:
        self.blocks: list[tuple[int, str]] = []
        self._lines: list[str] = []
        self._inline: list[str] = []
        self._heading_level = 0
        self._heading_depth = 0  # a heading can contain another one (<h2><div><h3>); the outer wins

    def text(self, value: str) -> None:
        self._inline.append(value)

    def open(self, tag: str) -> None:
        if tag in _HEADINGS:
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
        if tag in _HEADINGS:
            self._heading_depth -= 1
            if not self._heading_depth:
                self.newline()
                # Empty headers are kept as blocks so that the header filter can report them.
                self.blocks.append((self._heading_level, " ".join(self._lines)))
                self._lines.clear()
        elif tag in _PARAGRAPH_TAGS:
            self.paragraph()
        elif tag in _LINE_TAGS:
            self.newline()

    def newline(self) -> None:
        line = " ".join(_CONTROL.sub("", "".join(self._inline)).split())
        self._inline.clear()
        if line:
            self._lines.append(line)

    def paragraph(self) -> None:
        self.newline()
        if self._lines and not self._heading_depth:  # inside a heading, blocks merge into its one line
            self.blocks.append((0, "\n".join(self._lines)))
            self._lines.clear()

    def pre(self, value: str) -> None:
        if self._heading_depth:
            self.text(value)
            return
        self.paragraph()
        # Keep the code's line breaks and indentation; drop trailing spaces and blank edges.
        value = _CONTROL.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))
        code = "\n".join(line.rstrip() for line in value.split("\n")).strip("\n")
        if code.strip():
            self.blocks.append((0, code))
