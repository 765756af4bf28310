"""The report's pure pieces: histogram data, throughput, pinned versions, verb/noun extraction, the HTML page."""

import dataclasses
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs.report import pinned_versions
from jobs.report_render import (
    EXPECTED_BINS,
    ExamplePair,
    FailedRun,
    JudgeCalibration,
    LengthStats,
    FAITHFULNESS_BINS,
    ReportData,
    RewritePair,
    RewriteStats,
    StageThroughput,
    YieldRow,
    bin_counts,
    render_html,
    stage_throughput,
)
from udfs.calibration import precision_recall
from udfs.instruction_stats import VerbObject, load_parser, top_verb_nouns, verb_objects
from udfs.tables import status_key


def test_bin_counts_edges():
    counts = bin_counts({1.0: 2, 2.49: 1, 2.5: 3, 5.0: 4, 7.0: 1, None: 9, float("nan"): 9})
    assert len(counts) == len(EXPECTED_BINS) - 1 == 16
    assert counts[0] == 2  # [1, 1.25)
    assert counts[5] == 1 and counts[6] == 3  # 2.49 in [2.25, 2.5), 2.5 in [2.5, 2.75)
    assert counts[-1] == 5  # 5.0 is in the last bin, 7.0 clipped into it
    assert sum(counts) == 11  # None and NaN are not counted


@given(st.dictionaries(st.floats(min_value=1, max_value=5), st.integers(min_value=0, max_value=1000)))
def test_bin_counts_keep_every_row(value_counts):
    assert sum(bin_counts(value_counts)) == sum(value_counts.values())


def test_status_key_drops_error_messages_and_keeps_qualified_codes():
    assert status_key("ok", None) == "ok"
    assert status_key("dropped", "too_short") == "dropped:too_short"
    assert status_key("error", "unreadable_record: <b>bad gzip</b>") == "error:unreadable_record"
    assert status_key("error", "invalid_json: Expecting value: line 1") == "error:invalid_json"
    assert status_key("dropped", "eval_overlap:sample_eval") == "dropped:eval_overlap:sample_eval"


def test_stage_throughput_from_runs_rows():
    stages = [
        {"stage": "ingest_v1", "rows_written": 29, "seconds": 2.0, "extra": {}},  # older rows have no rows_in
        {
            "stage": "curate_v1",
            "rows_in": 100,
            "rows_written": 100,
            "seconds": 4.0,
            "extra": {"tokens": {"prompt_tokens": 3000, "cached_tokens": 2000, "output_tokens": 1000}},
        },
        {"stage": "models_v1", "rows_written": 0, "seconds": 0.0, "extra": {}},
    ]
    ingest, curate, models = stage_throughput(stages)
    assert ingest.rows_in == 0 and ingest.rows_per_second == 14.5 and ingest.tokens_per_second is None
    assert curate.rows_per_second == 25 and curate.tokens_per_second == 1000
    assert models.rows_per_second is None


def test_pinned_versions_flat_and_nested():
    assert pinned_versions({"documents": 0, "segments": 2, "scores": None}) == {
        "documents": 0,
        "segments": 2,
        "scores": None,
    }
    nested = {
        "read": {"segments": 1, "candidates": {"path": "/t/candidates", "version": 3}},
        "written": {"segments": 2, "curated": 0},
        "config_sha": "abc",
        "flag": True,
    }
    assert pinned_versions(nested) == {"segments": 2, "candidates": 3, "curated": 0}


@pytest.fixture(scope="module")
def nlp():
    return load_parser()


def test_root_verb_and_object_on_fixed_sentences(nlp):
    sentences = {
        "Write a poem about the sea.": ("write", "poem"),
        "How do I create a virtual environment?": ("create", "environment"),
        "Can you write a function that sorts a list?": ("write", "function"),
        "Give me three examples of list comprehensions.": ("give", "example"),
        "Please summarize the following article.": ("summarize", "article"),
        "Explain how bisect.insort works in Python.": ("explain", None),  # a clause, no noun object
        "What is the difference between a list and a tuple?": (None, None),  # a question: no root verb
        "": (None, None),
    }
    assert [tuple(v) for v in verb_objects(nlp, list(sentences))] == list(sentences.values())


def test_top_verbs_count_pairs_and_break_ties_by_name():
    pairs = [VerbObject("write", "poem")] * 3 + [VerbObject("write", "story")] * 3 + [VerbObject("write", "essay")]
    pairs += [VerbObject("give", "example")] * 2 + [
        VerbObject("explain", None),
        VerbObject(None, None),
        VerbObject("add", "item"),
    ] * 2
    counts = top_verb_nouns(pairs, top_verbs=2, nouns_per_verb=2)
    assert (counts.parsed, counts.with_verb, counts.with_pair) == (15, 13, 11)
    assert counts.top == [("write", 7, [("poem", 3), ("story", 3)]), ("add", 2, [("item", 2)])]


HOSTILE = "<script>alert('x')</script>"


def report_data(**changes) -> ReportData:
    pr = [precision_recall([True, False, False], [True, True, x > 3], k=x) for x in (1.0, 3.0, 5.0)]
    data = ReportData(
        run_id="run-1",
        finished_at="2026-01-01T00:00:00+00:00",
        rule="score >= 5",
        k=5.0,
        score_column="score",
        table_versions={"documents": 0, "scores": 3},
        yields=[
            YieldRow("documents", 40),
            YieldRow("documents ok", 31, "documents"),
            YieldRow("curated (iteration 1)", 7, "documents ok"),
        ],
        drops={"documents": {"ok": 31, "dropped:not_html": 9}, "segments": {"ok": 5, f"dropped:{HOSTILE}": 1}},
        score_counts={1: {"5": 7, "none": 3}, 2: {"4": 2}},
        expected_scores={1: bin_counts({4.8: 7, 2.0: 3})},
        parse_failures={1: {"no_score": 3}},
        lengths=[
            LengthStats("seed", 3, {"instruction_chars": (50.0, 10.0, 48.0), "output_chars": (900.0, None, 850.0)}),
            LengthStats(
                f"pool {HOSTILE}", 2, {"instruction_chars": (20.0, 5.0, 20.0), "output_chars": (1500.0, 600.0, 1400.0)}
            ),
        ],
        examples=[ExamplePair(1, f"Explain {HOSTILE} tags", "<iframe src=x></iframe> $x$ text", 5, 4.8)],
        verbs=top_verb_nouns([VerbObject("write", "poem</b")] * 3 + [VerbObject("use", "$x$")]),
        throughput=[StageThroughput("curate_v1", 10, 10, 2.0, 500, 100)],
        calibration=[JudgeCalibration(1, f"m0-{HOSTILE}", pr[-1], pr)],
        notes=[f"a note with {HOSTILE}"],
    )
    return dataclasses.replace(data, **changes)


def test_html_embeds_every_plot_and_escapes_table_text():
    html = render_html(report_data())
    assert (
        html.count('src="data:image/png;base64,') == 7
    )  # yields, drops, scores, lengths, verbs, throughput, calibration
    assert "<script" not in html and "<iframe" not in html and "poem</b" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html and "poem&lt;/b" in html
    assert re.search(r"<td>curated \(iteration 1\)</td><td>7</td><td>22.6% of documents ok</td>", html)
    assert re.search(r"<td>dropped:not_html</td><td>9</td>", html)
    assert re.search(r"<td>seed</td><td>3</td><td>50 ± 10 \(48\)</td><td>900 ± 0 \(850\)</td><td>n/a</td>", html)
    assert re.search(
        r"<td>1</td><td>m0-&lt;script&gt;.*?</td><td>3</td><td>1</td><td>3</td><td>1</td><td>0.333</td><td>1.00</td>",
        html,
    )


def test_html_without_data_says_so():
    html = render_html(
        report_data(
            yields=[],
            drops={},
            score_counts={},
            expected_scores={},
            parse_failures={},
            lengths=[],
            examples=[],
            verbs=None,
            throughput=[],
            calibration=[],
        )
    )
    assert "data:image/png" not in html
    assert html.count("no data to plot") == 5 and "no curated pairs" in html and "run the calibrate stage" in html


def test_failed_runs_are_listed_with_stage_error_and_what_they_committed():
    failed = [
        FailedRun(
            "run-9", "2026-01-02T00:00:00+00:00", "augment_v1", f"EngineStalled: augment {HOSTILE}", {"segments": 12}
        ),
        FailedRun("run-8", "2026-01-01T00:00:00+00:00", "ingest_v2", "OSError: disk", {}),
    ]
    html = render_html(report_data(failed_runs=failed, failed_total=30))
    section = html.split('<h2 id="failed">', 1)[1].split("<h2", 1)[0]
    assert "30 run(s) of these tables failed; the latest 2" in section
    assert re.search(r"<td>run-9</td><td>augment_v1</td><td[^>]*>EngineStalled: augment &lt;script&gt;", section)
    assert "<td>segments +12</td>" in section and "<td>nothing</td>" in section
    assert "<script" not in section
    none = render_html(report_data()).split('<h2 id="failed">', 1)[1].split("<h2", 1)[0]
    assert "<p>none</p>" in none


def test_the_rewrite_section_compares_lengths_and_shows_pairs_side_by_side_escaped():
    stats = RewriteStats(
        rows=4,
        ok=1,
        min_faithfulness=0.5,
        segment_chars=(1200.0, 300.0, 1100.0),
        answer_chars=(600.0, 100.0, 550.0),
        length_ratio_median=0.5,
        faithfulness=(0.41, 0.38),
        faithfulness_bins=bin_counts({0.2: 2, 0.9: 1}, FAITHFULNESS_BINS),
        new_numbers_mean=0.75,
        new_entities_mean=1.0,
        with_new_numbers=2,
        answer_end={"eos": 3, "none": 1},
        pairs=[
            RewritePair(f"Explain {HOSTILE}", "<iframe>segment</iframe>", f"answer {HOSTILE}", "ok", 0.9, "[]", "[]")
        ],
    )
    html = render_html(report_data(rewrites=stats))
    assert html.count('src="data:image/png;base64,') == 8  # the seven plots and the rewrites'
    assert "<script" not in html and "<iframe" not in html
    assert re.search(r"4 curated segments rewritten, 1 ok \(faithfulness &gt;= 0.5\)", html)
    assert "answers ended by eos 3, none 1" in html
    assert re.search(r"<td>rewrite chars, mean ± std \(median\)</td><td>600 ± 100 \(550\)</td>", html)
    assert "&lt;iframe&gt;segment" in html and "answer &lt;script&gt;" in html
    assert "no rewrites in this run" in render_html(report_data())


@pytest.mark.parametrize(
    "text, shape",
    [
        ("How do I sort a list by a key?", "question"),
        ("What is a generator", "question"),
        ("Is there a way to read a file lazily", "question"),
        ("Explain how the bisect module finds an insertion point.", "request"),
        ("Write a function that converts RGB to HSV.", "request"),
        ("Please list the built-in sequence types.", "request"),
        ("The bisect module provides support for sorted lists.", "other"),
        ("", "other"),
    ],
)
def test_instruction_shape(text, shape):
    from udfs.instruction_stats import instruction_shape, load_parser

    assert instruction_shape(load_parser()(text)) == shape


def test_html_shows_the_judge_set_beside_the_baselines():
    from jobs.report_render import SelectionSet

    rows = [
        SelectionSet(1, "judge", 7, 1200.0, 1100.0, 1.0, 0.49),
        SelectionSet(1, "longest-k", 7, 2900.0, 2950.0, 0.166, 0.58),
        SelectionSet(1, "random-k", 7, 1000.0, 980.0, None, None),
    ]
    html = render_html(report_data(selection=rows))
    assert "set beside selection baselines" in html
    assert "<td>1</td><td>longest-k</td><td>7</td><td>2,900</td><td>2,950</td><td>0.166</td><td>0.58</td>" in html
    assert re.search(r"<td>random-k</td><td>7</td>.*?<td>n/a</td><td>n/a</td>", html)
    assert "no judged pairs yet" in render_html(report_data())
