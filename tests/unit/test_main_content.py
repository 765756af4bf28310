"""Sections outside the page's main content are dropped with a reason of their own and its measurements."""

import dataclasses

import pytest

from udfs.config import ConfigError, build
from udfs.filters import BoilerplateConfig, GopherConfig
from udfs.main_content import MAIN_CONTENT_REASONS, MainContentConfig
from udfs.segment import SegmentConfig, html_to_sections, segment_document

_GOPHER_OFF = GopherConfig(**{f.name: None for f in dataclasses.fields(GopherConfig) if f.name != "stop_words"})
# Small limits and only the paper's filters, so that tiny pages reach every decision.
CFG = SegmentConfig(
    min_chars=20, max_chars=400, languages=(), gopher=_GOPHER_OFF, boilerplate=BoilerplateConfig(None, None)
)
PROSE = "The article explains how the heap invariant is kept after every push and pop."
PUSH = "A push appends the item and sifts it up until its parent is no larger than it is."
COMMENT = "Great post, thanks for writing it up so clearly for all of us."


def article(extra: str = "", before: str = "") -> str:
    return f"""<body class="single-post has-sidebar">{before}
      <div class="content-sidebar-wrap"><article class="post tag-comments">
        <h1>Heaps in practice</h1><p>{PROSE}</p>
        <h2>Pushing</h2><p>{PUSH}</p>
        {extra}
      </article></div></body>"""


def rows(page: str, cfg: SegmentConfig = CFG) -> dict[str, tuple]:
    return {c.header: (c.status, c.reason, c.measurements.get("main_content_v1")) for c in segment_document(page, cfg)}


def test_comment_thread_under_its_own_header_is_dropped_as_comments_and_the_article_stays():
    page = article(f'<div id="comments" class="comments-area"><h2>12 thoughts on Heaps</h2><p>{COMMENT}</p></div>')
    got = rows(page)
    assert got["Heaps in practice"][:2] == ("ok", None) and got["Pushing"][:2] == ("ok", None)
    status, reason, measured = got["12 thoughts on Heaps"]
    assert (status, reason) == ("dropped", "comments")
    assert measured["matched"] == "class~=comments" and measured["main_chars"] == 0
    assert measured["left_out_chars"] == {"comments": len(COMMENT)} and 0 <= measured["link_density"] <= 1
    # The thread is not in any kept text, not even the h1's, whose section spans the whole article.
    assert all(COMMENT not in c.text for c in segment_document(page, CFG) if c.status == "ok")


def test_related_links_footer_share_bar_newsletter_and_sidebar_each_get_their_reason():
    blocks = {
        "related_links": '<section class="related-posts"><h3>You may also like</h3><p>{}</p></section>',
        "page_footer": '<div class="site-footer"><h3>Sites of interest</h3><p>{}</p></div>',
        "share_bar": '<div class="shareBar"><h3>Share this story</h3><p>{}</p></div>',
        "signup_or_consent": '<div class="newsletter-box"><h3>Get our newsletter</h3><p>{}</p></div>',
        "sidebar": '<div id="sidebar-right"><h3>Most read</h3><p>{}</p></div>',
        "advertising": '<div class="ad-slot"><h3>Advertisement</h3><p>{}</p></div>',
        "page_metadata": '<div class="ArticlePage-authorInfo"><h3>About the writer</h3><p>{}</p></div>',
    }
    filler = "Words about {0} that are not the article at all ({0})"
    page = article("".join(html.format(filler.format(reason)) for reason, html in blocks.items()))
    got = {c.reason: c for c in segment_document(page, CFG) if c.status == "dropped"}
    assert set(got) == set(blocks)
    assert all(f"({reason})" in got[reason].text for reason in blocks)  # the row shows what was left out
    assert got["share_bar"].measurements["main_content_v1"]["matched"] == "class~=share"  # shareBar: share, bar


def test_a_share_bar_inside_a_section_is_left_out_of_its_text_and_measured():
    bar = '<div class="social-share"><p>Share on Facebook Share on X</p></div>'
    (kept,) = [c for c in segment_document(article(), CFG) if c.header == "Pushing"]
    (cut,) = [c for c in segment_document(article(bar), CFG) if c.header == "Pushing"]
    assert cut.status == "ok" and cut.text == kept.text
    assert cut.measurements["main_content_v1"] == {"left_out_chars": {"share_bar": len("Share on Facebook Share on X")}}
    assert "main_content_v1" not in kept.measurements  # nothing left out: the measurements are as before


def test_outside_the_one_main_element_is_not_main_content():
    page = f"""<body><main><h2>Real section</h2><p>{PROSE}</p></main>
      <div class="box"><h2>Other things</h2><p>{PUSH}</p></div></body>"""
    got = rows(page)
    assert got["Real section"][:2] == ("ok", None)
    assert got["Other things"][:2] == ("dropped", "not_main_content")
    assert got["Other things"][2]["matched"] == "outside <main>"
    assert rows(page, dataclasses.replace(CFG, main_content=MainContentConfig(outside_main=False)))["Other things"][
        :2
    ] == ("ok", None)


def test_a_link_list_block_is_left_out_but_the_prose_of_its_section_is_kept():
    links = "".join(f'<li><a href="/p{i}">Another story number {i}</a></li>' for i in range(6))
    page = f"<h2>Story</h2><p>{PROSE}</p><ul>{links}</ul>"
    (c,) = segment_document(page, CFG)
    assert (c.status, c.text) == ("ok", PROSE)
    assert set(c.measurements["main_content_v1"]["left_out_chars"]) == {"related_links"}
    # One line of links is not a list ("Source code: Lib/heapq.py" on the Python docs stays).
    (one,) = segment_document(f'<h2>Story</h2><p>{PROSE}</p><p><a href="/x">Source code: Lib/heapq.py</a></p>', CFG)
    assert one.text.endswith("Source code: Lib/heapq.py") and "main_content_v1" not in one.measurements


def test_the_article_holder_and_its_ancestors_are_never_labelled():
    # <body class="has-sidebar">, <div class="content-sidebar-wrap"> and <article class="tag-comments">
    # all carry listed words, but hold the article: every section stays.
    assert {r[:2] for r in rows(article()).values()} == {("ok", None)}
    # The first <h1> anchors the page too, without <article> or <main>.
    page = f'<div class="popular-wrapper"><h1>Title</h1><p>{PROSE}</p></div>'
    assert rows(page)["Title"][:2] == ("ok", None)


def test_detector_off_keeps_what_it_would_leave_out():
    page = article(f'<div class="comments"><h2>Comments</h2><p>{COMMENT}</p></div>')
    off = dataclasses.replace(CFG, main_content=MainContentConfig(enabled=False))
    assert rows(page, off)["Comments"][:2] == ("ok", None)
    assert rows(page)["Comments"][:2] == ("dropped", "comments")
    assert [s.header for s in html_to_sections(page)] == ["Heaps in practice", "Pushing"]


def test_every_reason_is_registered_and_each_list_is_tunable():
    page = article(f'<div class="comments"><h2>Comments</h2><p>{COMMENT}</p></div>')
    tuned = dataclasses.replace(CFG, main_content=MainContentConfig(comments=()))
    assert rows(page, tuned)["Comments"][:2] == ("ok", None)  # an empty list turns the reason off
    assert {f.name for f in dataclasses.fields(MainContentConfig)} >= set(MAIN_CONTENT_REASONS) - {"not_main_content"}
    cfg = build(SegmentConfig, {"main_content": {"comments": ["kommentare"], "max_left_out_share": 0.2}})
    assert cfg.main_content.comments == ("kommentare",) and cfg.main_content.max_left_out_share == 0.2


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"comments": ["Comment-List"]}, "main_content.comments"),
        ({"sidebar": ["share"]}, "listed under share_bar"),
        ({"max_left_out_share": 1.0}, "max_left_out_share"),
        ({"max_block_link_density": 1.5}, "max_block_link_density"),
        ({"max_promo_chars": 0}, "max_promo_chars"),
        ({"promo_phrases": ["Sign up"]}, "promo_phrases"),
        ({"caption_tags": ["span"]}, "caption_tags"),
    ],
)
def test_bad_main_content_settings_are_errors_naming_the_key(raw, message):
    with pytest.raises(ValueError, match=message):
        MainContentConfig(**raw)


def test_unknown_main_content_key_is_an_error_naming_it():
    with pytest.raises(ConfigError, match="main_content.comment_words"):
        build(SegmentConfig, {"main_content": {"comment_words": []}})


def test_an_id_named_after_its_heading_is_an_anchor_not_a_region():
    # Sphinx writes <section id="cookie-objects"><h2>Cookie Objects</h2>: the Python docs' http.cookies page.
    docs = f'<section id="cookie-objects"><h2>Cookie Objects</h2><p>{PROSE}</p></section>'
    assert rows(docs)["Cookie Objects"][:2] == ("ok", None)
    thread = f'<div id="comments"><h2>12 thoughts on Heaps</h2><p>{COMMENT}</p></div>'
    assert rows(thread)["12 thoughts on Heaps"][:2] == ("dropped", "comments")


def test_a_figcaption_or_credit_in_the_article_is_left_out_as_caption_and_the_prose_stays():
    credit = "Mike Blake/Reuters files"
    for markup, matched in (
        (f"<figure><img src=x.jpg><figcaption>{credit}</figcaption></figure>", "<figcaption>"),
        (f'<div class="summary-credit"><p>{credit}</p></div>', "class~=credit"),
    ):
        (c,) = [c for c in segment_document(article(markup), CFG) if c.header == "Pushing"]
        assert (c.status, c.text) == ("ok", PUSH)
        assert c.measurements["main_content_v1"] == {"left_out_chars": {"caption": len(credit)}}
        (row,) = [c for c in segment_document(f"<h2>Photo</h2>{markup}", CFG) if c.header == "Photo"]
        assert (row.status, row.reason) == ("dropped", "caption")
        assert row.measurements["main_content_v1"]["matched"] == matched


def test_dates_and_disclosures_get_their_reasons():
    page = article(
        '<div class="metaline"><p>11 Jan 2019</p></div>'
        '<section class="editorial-disclosure"><p>This post contains references to products.</p></section>'
    )
    (c,) = [c for c in segment_document(page, CFG) if c.header == "Pushing"]
    assert (c.status, c.text) == ("ok", PUSH)
    assert set(c.measurements["main_content_v1"]["left_out_chars"]) == {"page_metadata", "advertising"}


def test_a_short_call_to_action_block_is_left_out_on_its_own():
    promo = "Do you want to be informed of our actions? Sign up here"
    page = article(f"<p><i>{promo}</i></p><p>{PROSE}</p>")
    (c,) = [c for c in segment_document(page, CFG) if c.header == "Pushing"]
    assert c.status == "ok" and promo not in c.text and c.text.endswith(PROSE)
    assert c.measurements["main_content_v1"] == {"left_out_chars": {"signup_or_consent": len(promo)}}
    # A section of nothing else is dropped with the block's reason and evidence.
    (row,) = segment_document(f"<h2>Stay informed</h2><p>{promo}</p>", CFG)
    assert (row.status, row.reason) == ("dropped", "signup_or_consent")
    assert row.measurements["main_content_v1"]["matched"] == "block phrase=sign up"
    # A long paragraph that mentions signing up is prose, not a call to action.
    long = PROSE + " Users sign up with an email address and then " + PUSH
    (kept,) = [c for c in segment_document(article(f"<p>{long}</p>"), CFG) if c.header == "Pushing"]
    assert long in kept.text and "main_content_v1" not in kept.measurements
    # Nor is a short line that only shares a word with one (the Python docs' imaplib: IMAP4.subscribe).
    docs = f"<h2>IMAP4.subscribe(mailbox)</h2><p>Subscribe to new mailbox.</p><p>{PROSE}</p>"
    assert rows(docs)["IMAP4.subscribe(mailbox)"] == ("ok", None, None)
    off = dataclasses.replace(CFG, main_content=MainContentConfig(promo_phrases=()))
    assert rows(f"<h2>Stay informed</h2><p>{promo}</p>", off)["Stay informed"][:2] == ("ok", None)
