"""Unit tests for udfs.segment: HTML flattening, the header tree, and one candidate per section."""

import dataclasses
import html as html_lib
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from udfs.config import load_config
from udfs.filters import BoilerplateConfig, GopherConfig
from udfs.segment import Section, SegmentConfig, html_to_sections, segment_document


def paper_only(**kwargs) -> SegmentConfig:
    """The paper's filters only (length, header, repetition): tiny pages are too short for the others."""
    gopher_off = GopherConfig(**{f.name: None for f in dataclasses.fields(GopherConfig) if f.name != "stop_words"})
    return SegmentConfig(languages=(), gopher=gopher_off, boilerplate=BoilerplateConfig(None, None), **kwargs)


SAMPLE_EVAL = Path(__file__).resolve().parents[2] / "data/sample/eval-prompts.jsonl"
# Small limits so that tiny inline pages exercise every length decision.
CFG = paper_only(min_chars=20, max_chars=200)
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
    return 1\x20\x20\x20
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
    [
        ("min_chars", 0),
        ("max_chars", 20),
        ("repetition_ngram", 0),
        ("repetition_threshold", 0.0),
        ("repetition_threshold", 1.5),
        ("max_repeated_fraction", -0.1),
    ],
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


# --- bounded work per document ---------------------------------------------------------------------------


def reasons(page, cfg=CFG):
    return [(c.status, c.reason) for c in segment_document(page, cfg)]


def test_deep_nesting_is_dropped_before_parsing():
    page = "<h2>Deep</h2>" + "<div>" * 20_000 + "<p>text</p>" + "</div>" * 20_000
    assert reasons(page) == [("dropped", "too_deep")]
    # stray end tags first do not hide the nesting that follows
    assert reasons("</div>" * 20_000 + page) == [("dropped", "too_deep")]


def test_nesting_past_max_depth_is_dropped_while_walking():
    cfg = paper_only(min_chars=20, max_chars=200, max_depth=50)
    nested = "<h2>Deep</h2>" + "<span>" * 60 + LONG + "</span>" * 60
    assert reasons(nested, cfg) == [("dropped", "too_deep")]
    assert reasons(nested.replace("<span>" * 60, "<span>" * 40).replace("</span>" * 60, "</span>" * 40), cfg) == [
        ("ok", None)
    ]


def test_slow_document_is_dropped_as_parse_timeout():
    page = "<h2>Slow</h2>" + f"<p>{LONG}</p>" * 2000
    assert reasons(page, paper_only(min_chars=20, max_chars=200, parse_timeout_s=1e-9)) == [
        ("dropped", "parse_timeout")
    ]


def _explode_on(monkeypatch, word: str) -> None:
    """Make the segmenter's judging step raise for any section whose body contains ``word``."""
    import udfs.segment

    judge = udfs.segment._judge

    def judge_or_raise(node, part, body, cfg):
        if word in body.text:
            raise KeyError("x" * 2000)
        return judge(node, part, body, cfg)

    monkeypatch.setattr(udfs.segment, "_judge", judge_or_raise)


GOOD_PAGE = f"<h2>Good</h2><p>{LONG}</p>"
BAD_PAGE = f"<h2>Bad</h2><p>{LONG} explode</p>"


def test_unexpected_exception_is_one_error_row_with_the_message(monkeypatch):
    _explode_on(monkeypatch, "explode")
    assert reasons(GOOD_PAGE) == [("ok", None)]
    (row,) = segment_document(BAD_PAGE, CFG)
    assert row.status == "error" and row.reason.startswith("segment_error: KeyError: 'xxx")
    assert len(row.reason) <= 500 and row.text == "" and row.header == ""


def test_a_missing_evaluation_file_fails_loudly_instead_of_erroring_every_row(tmp_path):
    from udfs.decontam import EvalSet

    prompts = tmp_path / "eval.jsonl"
    prompts.write_text('{"prompt": "one two three four five six"}\n')
    cfg = dataclasses.replace(CFG, decontamination=(EvalSet("gone", str(prompts)),))
    prompts.unlink()  # validated on the driver, missing on this executor
    with pytest.raises(FileNotFoundError):
        segment_document(GOOD_PAGE, cfg)


def test_segment_documents_batch_goes_on_past_a_page_that_raises(monkeypatch):
    import pandas as pd

    from udfs import spark_udfs
    from udfs.readers import ReaderConfig

    _explode_on(monkeypatch, "explode")
    batch = pd.DataFrame(
        {"doc_id": ["d1", "d2", "d3"], "url": ["u1", "u2", "u3"], "html": [GOOD_PAGE, BAD_PAGE, GOOD_PAGE]}
    ).assign(source_path="p", offset=None, length=None, content_hash=None)  # html stored: nothing read back
    (frame,) = spark_udfs.segment_documents(CFG, ReaderConfig())(iter([batch]))
    assert list(frame["doc_id"]) == ["d1", "d2", "d3"]
    assert list(frame["status"]) == ["ok", "error", "ok"]
    assert frame["reason"][1].startswith("segment_error: KeyError:")


def test_huge_flat_pages_finish_and_are_split():
    # A generous time bound: this asserts the outcome, not the speed of a shared test machine.
    cfg = paper_only(parse_timeout_s=120)
    paragraphs = "".join(f"<p>Paragraph {i} of a very long page about one topic.</p>" for i in range(5_000))
    candidates = segment_document(f"<h2>Long</h2>{paragraphs}", cfg)
    assert len(candidates) > 80 and all(c.index == 0 for c in candidates)
    assert [c.part for c in candidates] == list(range(len(candidates)))
    assert all(c.status == "ok" and 600 <= len(c.text) <= 3000 for c in candidates[:-1])
    headers = "".join(f"<h{2 + i % 3}>Header {i}</h{2 + i % 3}><p>{LONG}</p>" for i in range(5_000))
    assert len(segment_document(headers, dataclasses.replace(cfg, min_chars=20, max_chars=200))) >= 5_000


def test_entity_bomb_and_one_giant_token_are_too_long_and_only_measured_for_length():
    (bomb,) = segment_document("<h2>Bomb</h2><p>" + "&amp;" * 200_000 + "</p>", CFG)
    assert (bomb.reason, bomb.text) == ("too_long", "&" * 200_000)
    (giant,) = segment_document("<h2>Giant</h2><p>" + "x" * 1_000_000 + "</p>", SegmentConfig())
    assert (giant.status, giant.reason, list(giant.measurements)) == ("dropped", "too_long", ["length_v1", "pii_v1"])


# --- normalisation ---------------------------------------------------------------------------------------


def test_control_bidi_and_zero_width_characters_are_removed():
    page = (
        "<h2>Sa\u200bfe\u202e header\x00</h2><p>Zero\u200bwidth, bi\u2066di\u2069 and \x07control \ufffd "
        f"characters: {LONG} Caf\u00c3\u00a9 mojibake.</p>"
    )
    (c,) = segment_document(page, CFG)
    assert c.header == "Safe header"
    assert c.text == f"Zerowidth, bidi and control characters: {LONG} Café mojibake."


def test_document_full_of_replacement_characters_is_dropped():
    page = f"<h2>Broken</h2><p>{LONG} " + "\ufffd" * 30 + "</p>"
    assert reasons(page) == [("dropped", "too_many_replacement_chars")]
    assert reasons(page, paper_only(min_chars=20, max_chars=200, max_replacement_fraction=0.5)) == [("ok", None)]


# --- splitting too-long sections -------------------------------------------------------------------------


def para(tag: str, n_chars: int) -> str:
    """Distinct words ("a0 a1 a2 ...") and a full stop, exactly ``n_chars`` characters."""
    return " ".join(f"{tag}{i}" for i in range(n_chars))[: n_chars - 1] + "."


SPLIT = paper_only(min_chars=100, max_chars=400)
I1, I2, I3 = para("a", 190), para("b", 190), para("c", 190)
OWN = para("o", 280)


def test_long_section_is_split_around_subsections_that_are_segments_of_their_own():
    s1, s2, s3 = para("x", 80), para("y", 80), para("w", 80)
    page = (
        f"<h2>Guide</h2><p>{I1}</p><h3>Alpha</h3><p>{s1}</p><h3>Beta</h3><p>{OWN}</p>"
        f"<h3>Gamma</h3><p>{s2}</p><h3>Delta</h3><p>{s3}</p>"
    )
    got = [(c.index, c.part, c.header, c.text, c.reason) for c in segment_document(page, SPLIT)]
    assert got == [
        (0, 0, "Guide", f"{I1}\n\nAlpha\n\n{s1}", None),  # Beta is judged on its own: it ends the part
        (0, 1, "Guide", f"Gamma\n\n{s2}\n\nDelta\n\n{s3}", None),
        (1, 0, "Alpha", s1, "too_short"),
        (2, 0, "Beta", OWN, None),
        (3, 0, "Gamma", s2, "too_short"),
        (4, 0, "Delta", s3, "too_short"),
    ]


def test_subheaders_mode_keeps_a_subsection_whole_and_paragraphs_mode_packs_paragraphs():
    s1 = para("x", 80)
    page = f"<h2>Guide</h2><p>{I1}</p><p>{I2}</p><h3>Alpha</h3><p>{s1}</p>"
    by_sub = [(c.text, c.reason) for c in segment_document(page, SPLIT) if c.index == 0]
    assert by_sub == [(f"{I1}\n\n{I2}", None), (f"Alpha\n\n{s1}", "too_short")]
    by_paragraph = [
        c.text for c in segment_document(page, dataclasses.replace(SPLIT, split_long="paragraphs")) if c.index == 0
    ]
    assert by_paragraph == [f"{I1}\n\n{I2}\n\nAlpha", s1]


def test_split_off_or_nothing_to_split_keeps_one_too_long_row():
    page = f"<h2>Guide</h2><p>{I1}</p><p>{I2}</p><p>{I3}</p>"
    off = segment_document(page, dataclasses.replace(SPLIT, split_long="off"))
    assert [(c.part, c.reason, len(c.text)) for c in off] == [(0, "too_long", 3 * 190 + 4)]
    covered = f"<h2>Guide</h2><h3>Beta</h3><p>{OWN}</p><h3>Beta again</h3><p>{para('p', 280)}</p>"
    assert [(c.index, c.part, c.reason) for c in segment_document(covered, SPLIT)] == [
        (0, 0, "too_long"),
        (1, 0, None),
        (2, 0, None),
    ]


def test_part_zero_keeps_the_unsplit_segment_id():
    from udfs.ids import stable_id
    from udfs.segment import segment_rows

    page = f"<h2>Guide</h2><p>{I1}</p><p>{I2}</p><p>{I3}</p>"
    rows = segment_rows("doc1", "https://x/", page, SPLIT)
    assert [r["part"] for r in rows] == [0, 1]
    assert rows[0]["segment_id"] == stable_id("segment", "doc1", 0)
    assert rows[1]["segment_id"] == stable_id("segment", "doc1", 0, 1)


# --- the filters on whole pages (default configuration) --------------------------------------------------

ENGLISH = (
    "The standard library offers a module for reading and writing files in many formats. It handles the details "
    "of opening, buffering and closing, so that a program can focus on the data itself. Each function documents "
    "the errors it raises, and the examples show how to recover from them. When a file is large, the module reads "
    "it in pieces, which keeps the memory use small and predictable. Most readers start with the tutorial, which "
    "walks through the common tasks one at a time and explains the choices behind the design of each function. "
    "Later chapters describe the less common options, such as custom encodings and the handling of damaged input."
)


def test_a_good_english_section_is_kept_with_its_measurements():
    (c,) = segment_document(f"<h2>Working with files</h2><p>{ENGLISH}</p>", SegmentConfig())
    assert (c.status, c.reason, c.lang) == ("ok", None, "en")
    assert c.lang_score > 0.9 and c.measurements["gopher_quality_v1"]["stop_words"] > 10
    assert c.measurements["pii_v1"] == {"email": 0, "card": 0, "ip": 0, "phone": 0}


def test_non_english_page_is_dropped():
    german = (
        "Die Standardbibliothek bietet ein Modul zum Lesen und Schreiben von Dateien in vielen Formaten. "
        "Es kümmert sich um das Öffnen, Puffern und Schließen, damit sich ein Programm auf die Daten selbst "
        "konzentrieren kann. Jede Funktion beschreibt die Fehler, die sie auslöst, und die Beispiele zeigen, "
        "wie man sich davon erholt. Wenn eine Datei groß ist, liest das Modul sie in Stücken, was den "
        "Speicherverbrauch klein und vorhersehbar hält. Die meisten Leser beginnen mit dem Tutorial, das die "
        "üblichen Aufgaben nacheinander durchgeht und die Entscheidungen hinter dem Entwurf jeder Funktion erklärt. "
        "Spätere Kapitel beschreiben die selteneren Optionen, etwa eigene Kodierungen und beschädigte Eingaben."
    )
    (c,) = segment_document(f"<h2>Arbeiten mit Dateien</h2><p>{german}</p>", SegmentConfig())
    assert (c.reason, c.lang) == ("wrong_language", "de")


def test_navigation_only_page_is_dropped():
    links = "".join(f'<li><a href="/p/{i}">Product number {i} in the catalogue</a></li>' for i in range(40))
    (c,) = segment_document(f"<h2>Our products</h2><ul>{links}</ul>", SegmentConfig())
    # A list of links and nothing else is outside the main content (udfs.main_content's link lists).
    assert c.reason == "related_links" and c.measurements["main_content_v1"]["link_density"] == 1.0


def test_repeated_sentences_page_is_dropped():
    (c,) = segment_document(
        f"<h2>Offers</h2><p>{'Buy the best shoes online at the lowest price today. ' * 15}</p>", SegmentConfig()
    )
    assert c.reason == "repeated_sentences"


def test_pii_is_masked_in_kept_text_and_counted():
    body = f"{ENGLISH} Write to jane.doe@example.com or call (212) 736-5000; the server is 8.8.8.8."
    (c,) = segment_document(f"<h2>Contact</h2><p>{body}</p>", SegmentConfig())
    assert c.status == "ok" and "jane.doe" not in c.text and "736-5000" not in c.text
    assert c.text.endswith("Write to <EMAIL_ADDRESS> or call <PHONE_NUMBER>; the server is <IP_ADDRESS>.")
    assert c.measurements["pii_v1"] == {"email": 1, "card": 0, "ip": 1, "phone": 1}


def test_segment_overlapping_an_evaluation_prompt_is_dropped():
    cfg = load_config(SegmentConfig, None, [f"decontamination=[{{name: sample_eval, path: {SAMPLE_EVAL}}}]"])
    lambda_text = (
        "Small anonymous functions can be created with the lambda keyword. This function returns the sum "
        "of its two arguments: lambda a, b: a+b. "
    )
    (c,) = segment_document(f"<h2>Lambda Expressions</h2><p>{lambda_text}{ENGLISH}</p>", cfg)
    assert c.reason == "eval_overlap:sample_eval" and c.measurements["decontamination_v1"]["sample_eval"] > 0
    (clean,) = segment_document(f"<h2>Files</h2><p>{ENGLISH}</p>", cfg)
    assert clean.status == "ok"
