"""Which parts of a page are its main content: the regions the segmenter leaves out, each with a reason.

Open-web pages put comment threads, related-links lists, share bars, footers, sidebars, newsletter and cookie
boxes and bylines next to the article, often under headers of their own ("10 thoughts on ...", "Related
Stories"). ``udfs.segment`` walks the page once; on entering a block-level element it asks ``Regions.label``
whether the element's ``class``/``id`` words name one of these regions, and every block of text inside it
carries that label (the innermost label wins). A label is a reason code (``MAIN_CONTENT_REASONS``) and the
evidence: the attribute and the word that matched (``class~=comments``). An id whose matched word is a word of
the element's first heading is a section anchor named after the title (documentation generators write ``<section
id="cookie-objects"><h2>Cookie Objects``) and gives no label.
A ``<figcaption>`` (``caption_tags``) is a ``caption`` whatever its class.

Two block rules in the jusText tradition label a block by its own text, wherever it stands, and leave only that
block out (a section of prose around it keeps its prose): a block of several lines that is mostly link text is
``related_links`` (``max_block_link_density``), and a short block (``max_promo_chars``) holding a call to action
(``promo_phrases``: "Do you want to be informed of our actions? Sign up here") is ``signup_or_consent``.

Two guards keep the article: the element that holds the main content (``<main>``, ``role="main"``,
``itemprop="articleBody"``, the page's first ``<article>`` and first ``<h1>``) and its ancestors are never
labelled, so a ``<body class="has-sidebar">`` or a ``<div class="content-sidebar-wrap">`` around the article stays main.
And a page with one ``<main>`` (or ``role="main"``) element has everything outside it labelled
``not_main_content`` (``outside_main``), unless a more specific label applies.

A section (a header and its body) is then left out when its header is labelled and its body has no main text,
or when more than ``max_left_out_share`` of its body's characters are labelled: its row is ``dropped`` with the
most common label's reason and ``main_content_v1`` measurements (characters by label, link density, the
evidence). A kept section loses its labelled blocks, and its measurements say how many characters were left
out by which reason.

Why class/id words and not a main-content extractor (trafilatura, resiliparse) as a mask: measured on
``benchmarks/realweb_extraction.py``, the words reach the boilerplate target at our walk's speed, keep the
header tree the paper's segmentation needs (the extractors' text output has no reliable header levels), and
every decision names the word that made it, so a user can tune the lists below.

This module is pure: no pyspark, no vllm.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, fields

# Every reason a section outside the main content is dropped with; the config field of the same name lists
# the class/id words that give it (``not_main_content`` has no words: it is the outside of <main>).
MAIN_CONTENT_REASONS = (
    "comments",
    "related_links",
    "share_bar",
    "page_footer",
    "sidebar",
    "signup_or_consent",
    "page_metadata",
    "advertising",
    "caption",
    "not_main_content",
)
NOT_MAIN_CONTENT = "not_main_content"
# The evidence of a block labelled by its own text, not by an element around it, starts with BLOCK_RULE: such a
# block is left out on its own and does not take its section with it (udfs.segment._left_out_sections).
BLOCK_RULE = "block "
LINK_LIST = BLOCK_RULE + "link_density="  # a block left out for its links (max_block_link_density)
PROMO = BLOCK_RULE + "phrase="  # a short block left out for a call to action in it (promo_phrases)
# Elements that can start a region: block-level ones, so that a label never cuts a paragraph in two.
REGION_TAGS = frozenset(
    {
        "article",
        "aside",
        "div",
        "dl",
        "figcaption",
        "figure",
        "footer",
        "header",
        "li",
        "main",
        "ol",
        "p",
        "section",
        "table",
        "ul",
    }
)
# Holders of the main content; they and their ancestors are never labelled. The first <article> and the first
# <h1> (the page title: what surrounds it is the page's subject, not a sidebar) count too.
MAIN_SELECTOR = "main, [role=main], [itemprop=articleBody]"
FIRST_OF = ("article", "h1")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_NON_WORD = re.compile(r"[^a-z0-9]+")
_WORD = re.compile(r"[a-z0-9]+")
_HEADINGS = "h1, h2, h3, h4, h5, h6"

Label = tuple[str, str]  # (reason, evidence such as "class~=comments")


@dataclass(frozen=True)
class MainContentConfig:
    """The words of class/id attributes that mark a region outside the main content, by reason (ours).

    Attribute values are cut into words at every non-alphanumeric character and at lower-to-upper case
    changes (``ArticlePage-authorInfo``: ``article``, ``page``, ``author``, ``info``), lower-cased; a word
    must equal a listed one. An empty list turns a reason off; ``enabled: false`` turns the detector off.
    """

    enabled: bool = True  # false: no main-content detection (every section is judged as before)
    outside_main: bool = True  # with one <main>/role=main on the page, what is outside it is not_main_content
    max_left_out_share: float = 0.5  # a section whose body is more than this share labelled is left out
    # a block of several lines (a list, a table, a paragraph with line breaks) whose visible characters are
    # more than this share link text is a related_links block wherever it stands (jusText's link density);
    # null: off
    max_block_link_density: float | None = 0.5
    # class/id words of a comment thread (comments)
    comments: tuple[str, ...] = (
        "comment",
        "comments",
        "commentlist",
        "respond",
        "replies",
        "disqus",
        "kommentare",
        "discussion",
    )
    # class/id words of related or recommended links (related_links)
    related_links: tuple[str, ...] = (
        "related",
        "relatedposts",
        "recommended",
        "recommendations",
        "popular",
        "trending",
        "teaser",
        "teasers",
        "nextstory",
        "pager",
        "pagination",
        "morestories",
    )
    # class/id words of sharing buttons (share_bar)
    share_bar: tuple[str, ...] = ("share", "sharing", "sharedaddy", "social", "addthis", "shariff", "sharebar")
    # class/id words of the page's footer (page_footer)
    page_footer: tuple[str, ...] = ("footer", "prefooter", "subfooter", "colophon", "copyright")
    # not "widget": Blogger and Elementor wrap the post itself in "widget" elements
    sidebar: tuple[str, ...] = ("sidebar", "widgets", "widgetcontainer", "widgetarea", "rail", "aside")
    # class/id words of ads, sponsored or affiliate blocks (advertising)
    advertising: tuple[str, ...] = (
        "ad",
        "ads",
        "advert",
        "advertisement",
        "advertising",
        "sponsored",
        "disclosure",
        "affiliate",
    )
    # class/id words of newsletter, registration, cookie boxes (signup_or_consent)
    signup_or_consent: tuple[str, ...] = (
        "newsletter",
        "subscribe",
        "subscription",
        "signup",
        "cookie",
        "cookies",
        "consent",
        "gdpr",
        "login",
        "register",
        "registration",
        "cta",
        "promo",
    )
    # class/id words of bylines, author boxes, dates, tags (page_metadata)
    page_metadata: tuple[str, ...] = (
        "byline",
        "author",
        "authors",
        "meta",
        "postmeta",
        "metaline",
        "utility",
        "tags",
        "tagcloud",
        "dateline",
        "timestamp",
    )
    # photo captions and credits ("Mike Blake/Reuters files") and the title a video player shows over its frame;
    # caption_tags: the elements that are a caption whatever their class
    caption: tuple[str, ...] = ("caption", "captions", "figcaption", "credit", "credits", "player")
    caption_tags: tuple[str, ...] = ("figcaption",)  # tags that are a caption whatever their class (caption)
    # A block of at most max_promo_chars characters holding one of these phrases (lower case) is a call to
    # action ("Do you want to be informed of our actions? Sign up here"): signup_or_consent, left out on its own.
    # An empty list turns the rule off.
    max_promo_chars: int = 160
    # phrases that make a short block a call to action (signup_or_consent)
    promo_phrases: tuple[str, ...] = (
        "sign up",
        "subscribe to our",
        "our newsletter",
        "push notifications",
        "download our app",
        "follow us on",
        "the latest news",
        "straight to your",
    )

    def __post_init__(self) -> None:
        if not 0 <= self.max_left_out_share < 1:
            raise ValueError(f"main_content.max_left_out_share must be in [0, 1), got {self.max_left_out_share}")
        if self.max_block_link_density is not None and not 0 <= self.max_block_link_density <= 1:
            raise ValueError(
                f"main_content.max_block_link_density must be in [0, 1] or null, got {self.max_block_link_density}"
            )
        if self.max_promo_chars < 1:
            raise ValueError(f"main_content.max_promo_chars must be >= 1, got {self.max_promo_chars}")
        for phrase in self.promo_phrases:
            if phrase != phrase.lower() or not phrase.strip():
                raise ValueError(f"main_content.promo_phrases: {phrase!r} must be non-empty lower-case text")
        for tag in self.caption_tags:
            if tag not in REGION_TAGS:
                raise ValueError(f"main_content.caption_tags: {tag!r} is not one of {sorted(REGION_TAGS)}")
        seen: dict[str, str] = {}
        for reason in _WORD_REASONS:
            for word in getattr(self, reason):
                if not _WORD.fullmatch(word):
                    raise ValueError(f"main_content.{reason}: {word!r} is not one lower-case word of [a-z0-9]")
                if word in seen:
                    raise ValueError(f"main_content.{reason}: {word!r} is listed under {seen[word]} too")
                seen[word] = reason


_WORD_REASONS = tuple(r for r in MAIN_CONTENT_REASONS if r != NOT_MAIN_CONTENT)
assert set(_WORD_REASONS) <= {f.name for f in fields(MainContentConfig)}


class Regions:
    """``MainContentConfig`` compiled for the walk: one per configuration (``regions``)."""

    def __init__(self, cfg: MainContentConfig) -> None:
        self.cfg = cfg
        self._reason_of = {word: reason for reason in _WORD_REASONS for word in getattr(cfg, reason)}

    def anchors(self, tree) -> tuple[int | None, frozenset[int]]:
        """(``mem_id`` of the page's one <main>/role=main element or None, ``mem_id`` of the elements never
        labelled: the main-content holders and their ancestors)."""
        holders = tree.css(MAIN_SELECTOR)
        mains = [n for n in holders if n.tag == "main" or n.attrs.get("role") == "main"]
        holders.extend(node for node in map(tree.css_first, FIRST_OF) if node is not None)
        protected = set()
        for node in holders:
            while node is not None and node.mem_id not in protected:
                protected.add(node.mem_id)
                node = node.parent
        main = mains[0].mem_id if len(mains) == 1 and self.cfg.outside_main else None
        return main, frozenset(protected)

    def label(self, node) -> Label | None:
        """The label the element's tag (``caption_tags``) or class or id words give, or None."""
        if node.tag in self.cfg.caption_tags:
            return "caption", f"<{node.tag}>"
        attrs = node.attrs  # looks attributes up one by one, without building the whole dict
        for name in ("class", "id"):
            value = attrs.get(name)
            if not value:
                continue
            words = _NON_WORD.split(_CAMEL.sub(" ", value).lower())
            for word in words:
                reason = self._reason_of.get(word)
                if reason:
                    if name == "id" and _anchors_its_heading(node, word):
                        break
                    return reason, f"{name}~={word}"
        return None


def _anchors_its_heading(node, word: str) -> bool:
    """Whether the id's matched word is a word of the element's first heading: a section anchor named after its
    title (Sphinx's ``<section id="cookie-objects"><h2>Cookie Objects``), which says nothing of its role."""
    heading = node.css_first(_HEADINGS)
    return heading is not None and word in _WORD.findall(heading.text().lower())


@functools.lru_cache(maxsize=8)
def regions(cfg: MainContentConfig) -> Regions:
    return Regions(cfg)


def verdict(label_chars: dict[str | None, int], header: Label | None, max_left_out_share: float) -> str | None:
    """The reason a section is left out, or None to keep it.

    ``label_chars``: the section body's characters by label reason (None: main content); ``header``: the
    header's own label. Left out: an all-labelled body (or an empty one under a labelled header), or one
    labelled above ``max_left_out_share``; the reason is the most common label's (the header's on a tie).
    """
    main = label_chars.get(None, 0)
    left_out = {reason: n for reason, n in label_chars.items() if reason is not None and n}
    total = main + sum(left_out.values())
    if not total:
        return header[0] if header else None
    if sum(left_out.values()) <= max_left_out_share * total:
        return None
    return max(left_out, key=lambda r: (left_out[r], header is not None and r == header[0]))
