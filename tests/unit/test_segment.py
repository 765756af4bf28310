"""Unit tests for udfs.segment: HTML flattening, the header tree, and one candidate per section."""

import html as html_lib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from udfs.segment import Section, SegmentConfig, html_to_sections, segment_document

# Small limits so that tiny inline pages exercise every length decision.
CFG = SegmentConfig(min_chars=20, max_chars=200)
LONG = "Plenty of distinct words make this paragraph long enough."


def test_header_owns_its_subtree_until_the_next_header_of_same_or_higher_level():
    page = """
      <p>Preamble before any header belongs to no section.</p>
      <h1>Guide</h1><p>Intro.</p>
      <h2>Install</h2><p>Run it.</p>
        <h3>On Linux</h3><p>Use apt.</p>
      <h2>Use</h2><p>Call it.</p>
    """
    assert html_to_sections(page) == [
        Section(0, 1, "Guide", "Guide\n\nIntro.\n\nInstall\n\nRun it.\n\nOn Linux\n\nUse apt.\n\nUse\n\nCall it."),
        Section(1, 2, "Install", "Install\n\nRun it.\n\nOn Linux\n\nUse apt."),
        Section(2, 3, "On Linux", "On Linux\n\nUse apt."),
        Section(3, 2, "Use", "Use\n\nCall it."),
    ]


def test_candidate_text_is_the_body_without_its_own_header_line():
    candidates = segment_document("<h2>Install</h2><p>Run it.</p><h3>On Linux</h3><p>Use apt.</p>", CFG)
    assert [c.text for c in candidates] == ["Run it.\n\nOn Linux\n\nUse apt.", "Use apt."]


def test_block_structure_is_kept_and_whitespace_normalised():
    page = """<h2>  Block
        structure &amp; more </h2>
      <p>First   paragraph
         wraps.</p><p>Second<br>line two</p>
      <ul><li>one</li><li>two <b>bold</b></li></ul>
      <table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>
      <pre>def f():
    return 1   
</pre>
      <p>After\x00 code\x07.</p>"""
    (section,) = html_to_sections(page)
    assert section.header == "Block structure & more"
    assert section.text == (
        "Block structure & more\n\nFirst paragraph wraps.\n\nSecond\nline two\n\none\ntwo bold\n\na b\nc d\n\n"
        "def f():\n    return 1\n\nAfter code."
    )


def test_boilerplate_is_removed_but_article_header_is_kept():
    page = """
      <header><h1>Site banner</h1></header>
      <nav><h2>Menu</h2><a>Home</a></nav>
      <div class="sphinxsidebar"><h3>Previous topic</h3><p>Sidebar.</p></div>
      <div role="navigation"><h3>Navigation</h3></div>
      <article><header><h1>Real title<a class="headerlink" href="#t">¶</a></h1></header>
        <p>Body text.</p><script>var x = 1;</script><style>p {}</style><!-- comment -->
        <form><input value="search"><button>Go</button></form>
        <footer>Posted by someone</footer></article>
      <footer><p>Copyright</p></footer>
    """
    (section,) = html_to_sections(page)
    assert (section.level, section.header) == (1, "Real title")
    assert section.text == "Real title\n\nBody text.\n\nPosted by someone"


def test_heading_nested_in_heading_is_one_header():
    (section,) = html_to_sections("<h2>Outer <div>part <h3>inner</h3></div></h2><p>Text.</p>")
    assert (section.level, section.header, section.text) == (2, "Outer part inner", "Outer part inner\n\nText.")


def test_document_without_header_is_one_section_dropped_as_no_header():
    page = f"<p>{LONG}</p><p>{LONG} Again.</p>"
    assert html_to_sections(page) == [Section(0, 0, "", f"{LONG}\n\n{LONG} Again.")]
    (candidate,) = segment_document(page, CFG)
    assert (candidate.level, candidate.status, candidate.reason) == (0, "dropped", "no_header")
    assert [c.reason for c in segment_document("", CFG)] == ["no_header"]


@pytest.mark.parametrize(
    "header, body, reason",
    [
        ("Good header", LONG, None),
        ("Good header", "Too short.", "too_short"),
        ("Good header", LONG * 4, "too_long"),
        ("", LONG, "empty_header"),
        ("ALL CAPS", LONG, "uppercase_header"),
        ("Quick Links:", LONG, "navigation_header"),
        ("Good header", "The same sentence again. " * 6, "repeated_sentences"),
    ],
)
def test_each_drop_reason_through_segment_document(header, body, reason):
    (candidate,) = segment_document(f"<h2>{header}</h2><p>{body}</p>", CFG)
    assert (candidate.status, candidate.reason) == ("dropped" if reason else "ok", reason)


def test_every_candidate_has_exactly_one_status():
    page = "".join(f"<h{1 + i % 3}>Header {i}</h{1 + i % 3}><p>{LONG if i % 2 else 'short'}</p>" for i in range(9))
    candidates = segment_document(page, CFG)
    assert [c.index for c in candidates] == list(range(9))
    assert {c.status for c in candidates} == {"ok", "dropped"}
    assert all((c.status == "ok") == (c.reason is None) for c in candidates)


def test_sphinx_like_page_keeps_content_and_drops_chrome():
    page = """<body><div class="related" role="navigation"><h3>Navigation</h3><ul><li>index</li></ul></div>
      <div class="document"><div class="body" role="main"><section id="m">
      <h1>textwrap — Text wrapping<a class="headerlink" href="#m">¶</a></h1>
      <dl class="py function"><dt class="sig">textwrap.wrap(<em>text</em>)<a class="headerlink">¶</a></dt>
      <dd><p>Wraps the single paragraph in text.</p></dd></dl></section></div></div>
      <div class="sphinxsidebar" role="navigation"><h3>This Page</h3><ul><li>Report a Bug</li></ul></div>
      <div class="footer">© Copyright 2001-2023.</div></body>"""
    (section,) = html_to_sections(page)
    assert section.header == "textwrap — Text wrapping"
    assert section.text == "textwrap — Text wrapping\n\ntextwrap.wrap(text)\n\nWraps the single paragraph in text."


@pytest.mark.parametrize(
    "field, value",
    [("min_chars", 0), ("max_chars", 20), ("repetition_ngram", 0), ("repetition_threshold", 0.0),
     ("repetition_threshold", 1.5), ("max_repeated_fraction", -0.1)],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SegmentConfig(**{"min_chars": 20, "max_chars": 200, field: value})


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@given(st.text(max_size=40), st.text(max_size=300))
def test_extracted_text_has_no_control_characters(header, body):
    page = f"<h2>{header}</h2><p>{body}</p><pre>{body}</pre><h3>{html_lib.escape(body)}</h3>"
    for section in html_to_sections(page):
        assert not _CONTROL.search(section.text) and "\n" not in section.header
        assert section.text.startswith(section.header)
    for candidate in segment_document(page, CFG):
        assert not _CONTROL.search(candidate.text)
        assert (candidate.status == "ok") == (candidate.reason is None)
