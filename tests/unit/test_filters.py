"""Unit tests for udfs.filters: each reason code, its boundaries, the measurements and the filter order."""

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from udfs.decontam import EvalSet
from udfs.filters import (
    FILTERS,
    MAX_SENTENCES,
    GopherConfig,
    SegmentView,
    boilerplate_filter,
    decontamination_filter,
    gopher_quality_filter,
    header_filter,
    language_filter,
    length_filter,
    measure,
    repetition_filter,
)
from udfs.segment import SegmentConfig

CFG = SegmentConfig(min_chars=10, max_chars=20)
DEFAULT = SegmentConfig()
PROSE = (
    "The library reads each file once and keeps only the parts that matter to the reader. "
    "It was written to be simple, so that a new user can understand it in an afternoon and change it with "
    "confidence. When something goes wrong, the error names the file and the line, and the rest of the work "
    "goes on. Most people use it from the command line, but it also works as a module inside a larger program, "
    "where it has the same behaviour and the same defaults."
)
CODE_HEAVY = (
    "Use sorted() with a key function to order records by one of their fields:\n\n"
    ">>> students = [('john', 'A', 15), ('jane', 'B', 12), ('dave', 'B', 10)]\n"
    ">>> sorted(students, key=lambda student: student[2])   # sort by age\n"
    "[('dave', 'B', 10), ('jane', 'B', 12), ('john', 'A', 15)]\n"
    ">>> for name, grade, age in students:\n"
    "...     print(name, age)\n...\n\n"
    "The key function is called once for each record, and the result is used for the comparisons. "
    "This is faster than a comparison function because the key is computed only one time for each item."
)


def view(text, header="Header", link_chars=0):
    return SegmentView(header, text, link_chars)


def distinct(count):
    return [f"Sentence number {i} talks about topic {i * 7}." for i in range(count)]


@pytest.mark.parametrize("length, reason", [(9, "too_short"), (10, None), (20, None), (21, "too_long")])
def test_length_boundaries(length, reason):
    result = length_filter(view("x" * length), CFG)
    assert (result.reason, result.values) == (reason, {"n_chars": length})


@pytest.mark.parametrize(
    "header, reason",
    [
        ("", "empty_header"),
        ("   ", "empty_header"),
        ("— ¶", "empty_header"),
        ("FAQ", "uppercase_header"),
        ("1. INTRODUCTION", "uppercase_header"),
        ("QUICK LINKS", "uppercase_header"),  # uppercase is checked before navigation
        ("Quick links", "navigation_header"),
        ("Table of Contents:", "navigation_header"),
        ("  related   TOPICS ", "navigation_header"),
        ("Free-Newsletter!", "navigation_header"),
        ("Navigation in Vim", None),
        ("Faq", None),
        ("3.11", None),
        ("Installing Python", None),
    ],
)
def test_header_reasons(header, reason):
    assert header_filter(view("", header), DEFAULT).reason == reason


def test_navigation_headers_come_from_config():
    cfg = SegmentConfig(navigation_headers=("sponsored",))
    assert header_filter(view("", "Sponsored"), cfg).reason == "navigation_header"
    assert header_filter(view("", "Advertisement"), cfg).reason is None


@pytest.mark.parametrize(
    "text, lang",
    [
        (PROSE, "en"),
        (CODE_HEAVY, "en"),
        (
            "Die Bibliothek liest jede Datei nur einmal und behält nur die Teile, die für den Leser wichtig sind. "
            "Sie wurde einfach geschrieben, damit neue Benutzer sie an einem Nachmittag verstehen können.",
            "de",
        ),
        (
            "La bibliothèque lit chaque fichier une seule fois et ne garde que les parties qui comptent pour le "
            "lecteur. Elle a été écrite pour être simple, afin qu'un nouvel utilisateur la comprenne vite.",
            "fr",
        ),
    ],
)
def test_language_is_measured_and_non_english_is_dropped(text, lang):
    result = language_filter(view(text), DEFAULT)
    assert result.values["lang"] == lang
    assert result.reason == (None if lang == "en" else "wrong_language")
    assert 0 <= result.values["target_score"] <= result.values["score"] <= 1


def test_language_list_and_threshold_come_from_config():
    german = "Die Bibliothek liest jede Datei nur einmal und behält nur die Teile, die für den Leser wichtig sind."
    assert language_filter(view(german), SegmentConfig(languages=("de", "en"))).reason is None
    kept_all = language_filter(view(german), SegmentConfig(languages=()))
    assert kept_all.reason is None and kept_all.values["lang"] == "de" and "target_score" not in kept_all.values
    assert language_filter(view(PROSE), SegmentConfig(language_threshold=1.0)).reason in (None, "wrong_language")
    with pytest.raises(ValueError, match="unknown language code"):
        SegmentConfig(languages=("english",))


def test_repetition_drops_repeated_and_near_repeated_sentences():
    assert repetition_filter(view(" ".join(distinct(10))), DEFAULT).reason is None
    assert repetition_filter(view("Buy cheap shoes online today. " * 5), DEFAULT).reason == "repeated_sentences"
    # 3 of 4 sentences are near-copies (Jaccard of 3-grams >= 0.8), one word added at the end.
    near = [
        "the quick brown fox jumps over the lazy dog near the river bank today",
        "the quick brown fox jumps over the lazy dog near the river bank today again",
        "the quick brown fox jumps over the lazy dog near the river bank today",
        "an entirely different sentence about something else",
    ]
    result = repetition_filter(view("\n".join(near)), DEFAULT)
    assert result.reason == "repeated_sentences" and result.values == {"sentences": 4, "repeated_fraction": 0.75}


def test_repetition_fraction_boundary():
    text = " ".join(distinct(7) + ["This one sentence repeats."] * 3)  # 3 of 10 repeat: 0.3, not > 0.3
    assert repetition_filter(view(text), DEFAULT).reason is None
    assert repetition_filter(view(text), SegmentConfig(max_repeated_fraction=0.29)).reason == "repeated_sentences"


def test_repetition_ignores_sentences_shorter_than_one_ngram():
    code = "\n".join(["...", "print(x)", "2"] * 10 + distinct(3))
    assert repetition_filter(view(code), DEFAULT).reason is None
    assert repetition_filter(view(code), SegmentConfig(repetition_ngram=1)).reason == "repeated_sentences"


def test_repetition_compares_only_the_first_max_sentences():
    text = " ".join(distinct(MAX_SENTENCES) + ["Spam spam spam spam."] * 50)
    assert repetition_filter(view(text), DEFAULT).reason is None
    short = " ".join(distinct(10) + ["Spam spam spam spam."] * 50)
    assert repetition_filter(view(short), DEFAULT).reason == "repeated_sentences"


@pytest.mark.parametrize(
    "text, reason",
    [
        (PROSE, None),
        (CODE_HEAVY, None),  # brackets, REPL prompts and "# comments" do not count against code
        ("Too few words to judge here.", "gopher_short_doc"),
        ("a " * 60, "gopher_below_avg_threshold"),
        ("incomprehensibilities " * 60, "gopher_above_avg_threshold"),
        (PROSE + " #python #coding #tips #code #dev #ai #ml #data #cloud #web #app", "gopher_too_many_hashes"),
        (PROSE.replace(".", "...").replace(",", "…"), "gopher_too_many_ellipsis"),
        ("\n".join(f"• item {i} of the list of the things to buy" for i in range(10)), "gopher_too_many_bullets"),
        (
            "\n".join(f"The list of the things we did and more {i}..." for i in range(10)),
            "gopher_too_many_end_ellipsis",
        ),
        ("The values of the table are: " + " ".join(str(i * 37) for i in range(60)), "gopher_below_alpha_threshold"),
        (" ".join(f"word{i} thing{i} stuff{i}" for i in range(30)), "gopher_enough_stop_words"),
    ],
)
def test_gopher_rules(text, reason):
    assert gopher_quality_filter(view(text), DEFAULT).reason == reason


def test_gopher_rules_can_be_turned_off_and_measure_anyway():
    cfg = SegmentConfig(gopher=GopherConfig(min_words=None))
    result = gopher_quality_filter(view("Too few words to judge here but with the and of."), cfg)
    assert (
        result.reason is None and result.values["words"] == 11 and result.values["stop_words"] == 5
    )  # to, with, the, and, of


def test_boilerplate_link_density_and_phrases():
    menu = "Home\nProducts\nAbout us\nContact\nCareers\nBlog"
    result = boilerplate_filter(view(menu, link_chars=sum(len(w) for w in menu.split())), DEFAULT)
    assert (result.reason, result.values["link_density"]) == ("high_link_density", 1.0)
    lines = "We use cookies. See our Privacy Policy.\nAll rights reserved.\nSign in to comment.\nA real sentence."
    assert boilerplate_filter(view(lines), DEFAULT).reason == "boilerplate_lines"
    assert boilerplate_filter(view(PROSE, link_chars=40), DEFAULT).reason is None


def test_decontamination_reason_names_the_set(tmp_path):
    prompts = tmp_path / "evals.jsonl"
    prompts.write_text(json.dumps({"question": PROSE.split(". ")[1]}) + "\n")
    other = tmp_path / "other.txt"
    other.write_text("Completely unrelated evaluation prompt about cooking pasta in salted water tonight\n")
    cfg = SegmentConfig(decontamination=(EvalSet("other", str(other)), EvalSet("my_eval", str(prompts), "question")))
    result = decontamination_filter(view(PROSE), cfg)
    assert result.reason == "eval_overlap:my_eval" and result.values["other"] == 0 and result.values["my_eval"] > 0
    assert decontamination_filter(view("Nothing in common with the sets."), cfg).reason is None


def test_measure_keeps_every_measurement_and_the_first_reason():
    reason, measurements = measure(view("FAQ " + PROSE, header="FAQ"), DEFAULT)
    assert reason == "too_short" and list(measurements) == [name for name, _ in FILTERS]
    assert measurements["language_v1"]["lang"] == "en"
    reason, measurements = measure(view(PROSE * 9, header="Fine"), DEFAULT)
    assert reason == "too_long" and list(measurements) == ["length_v1"]  # too-long text is not measured further


def test_filter_names_are_versioned_and_unique():
    names = [name for name, _ in FILTERS]
    assert len(set(names)) == len(names) == 7
    assert all(re.fullmatch(r"[a-z_]+_v\d+", name) for name in names)


REASONS = {
    None,
    "too_short",
    "too_long",
    "empty_header",
    "uppercase_header",
    "navigation_header",
    "wrong_language",
    "repeated_sentences",
    "high_link_density",
    "boilerplate_lines",
}


@settings(deadline=None)
@given(st.text(max_size=400), st.integers(0, 400))
def test_measure_returns_a_known_reason_and_json_measurements(text, link_chars):
    reason, measurements = measure(view(text, text[:30], link_chars), SegmentConfig(min_chars=5, max_chars=300))
    assert reason in REASONS or reason.startswith("gopher_")
    json.dumps(measurements)
