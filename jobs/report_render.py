"""The run report's content, pure: plain data in, PNG plots (matplotlib, Agg) and one self-contained HTML page out.

``jobs.report`` fills a ``ReportData`` from the Delta tables; everything here is testable without Spark.
Table text comes from the web and from generated instructions, so it is hostile: the page is rendered
by Jinja2 with autoescaping, and plot labels are escaped so that "$...$" in data is never read as math.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import jinja2
import matplotlib
from markupsafe import Markup
from matplotlib.figure import Figure

from udfs.calibration import PrecisionRecall
from udfs.instruction_stats import VerbNounCounts

EXPECTED_BINS = tuple(1 + 0.25 * i for i in range(17))  # edges of the expected-score histogram, 1..5
FAITHFULNESS_BINS = tuple(0.1 * i for i in range(11))  # edges of the faithfulness histogram, 0..1
SCORE_LABELS = ("1", "2", "3", "4", "5", "none")  # parsed scores; "none": the judge wrote no parseable score
EXAMPLE_CHARS = 400  # of each example's output shown
LENGTH_FIELDS = ("instruction_chars", "output_chars", "instruction_tokens", "output_tokens")
PLOT_STYLE = {"font.size": 9}
FAILED_SHOWN = 20  # failed runs listed in the report, newest first


@dataclass(frozen=True)
class LengthStats:
    name: str  # "seed", "pool", "curated (iteration 1)"
    pairs: int
    stats: dict[str, tuple[float | None, float | None, float | None]]  # LENGTH_FIELDS -> (mean, std, median)


@dataclass(frozen=True)
class YieldRow:
    step: str  # "segments kept", "curated (iteration 1)"
    rows: int
    of: str | None = None  # the step this one is a fraction of


@dataclass(frozen=True)
class StageThroughput:
    stage: str
    rows_in: int
    rows_out: int
    seconds: float
    tokens_in: int  # LLM stages: prompt tokens
    tokens_out: int

    @property
    def rows_per_second(self) -> float | None:
        return max(self.rows_in, self.rows_out) / self.seconds if self.seconds > 0 else None

    @property
    def tokens_per_second(self) -> float | None:
        tokens = self.tokens_in + self.tokens_out
        return tokens / self.seconds if self.seconds > 0 and tokens else None


@dataclass(frozen=True)
class ExamplePair:
    iteration: int
    instruction: str  # generated from web text: hostile
    output: str  # the web segment, cut to EXAMPLE_CHARS
    score: int | None
    expected_score: float | None


@dataclass(frozen=True)
class RewritePair:
    instruction: str  # generated: hostile
    segment: str  # web text, cut to EXAMPLE_CHARS: hostile
    answer: str  # the rewrite, cut to EXAMPLE_CHARS: hostile
    status: str  # ok, or why it was dropped (unfaithful_rewrite)
    faithfulness: float | None
    new_numbers: str  # JSON list
    new_entities: str  # JSON list


@dataclass(frozen=True)
class RewriteStats:
    """The rewrites of the run (``rewrites`` table): how long against their segments, how faithful, how they
    ended, and a few side by side."""

    rows: int
    ok: int
    min_faithfulness: float | None  # the threshold rows were gated with (the latest row's)
    segment_chars: tuple[float | None, float | None, float | None]  # ok rewrites' segments: (mean, std, median)
    answer_chars: tuple[float | None, float | None, float | None]  # ok rewrites: (mean, std, median)
    length_ratio_median: float | None  # median of answer chars / segment chars over ok rewrites
    faithfulness: tuple[float | None, float | None]  # measured rewrites: (mean, median)
    faithfulness_bins: list[int]  # measured rewrites per FAITHFULNESS_BINS bin
    new_numbers_mean: float | None  # per measured rewrite
    new_entities_mean: float | None
    with_new_numbers: int  # measured rewrites with at least one number the segment lacks
    answer_end: dict[str, int]  # marker | eos | none -> rows
    pairs: list[RewritePair]


@dataclass(frozen=True)
class JudgeCalibration:
    iteration: int
    judge_model_id: str
    at_k: PrecisionRecall  # at the configured rule and k (the paper's Table 7)
    curve: list[PrecisionRecall]  # the same rule over a range of k


@dataclass(frozen=True)
class FailedRun:
    """A ``failed`` runs row: when, where, why, and what it had committed (table -> rows added)."""

    run_id: str
    started_at: str
    stage: str | None
    reason: str | None
    committed: dict[str, int]


@dataclass(frozen=True)
class SelectionSet:
    """One iteration's curated set under one rule: the judge's, or a baseline of the same size."""

    iteration: int
    rule: str  # "judge", "longest-k", "random-k"
    pairs: int
    mean_chars: float | None  # of the answers (segments)
    median_chars: float | None
    jaccard: float | None  # |this & judge's| / |this | judge's|
    auc: float | None  # of the rule's signal over the labelled pairs; None without labels


@dataclass(frozen=True)
class SignalAUC:
    """How well one selection signal separates the labelled pairs: AUC (0.5 = chance) over the pairs it rated."""

    signal: str  # e.g. "judge M0 expected_score", "-ifd (scorer id)", "length"
    auc: float | None
    rated: int  # labelled pairs with a value (the others rank lowest)
    pairs: int


@dataclass
class ReportData:
    run_id: str | None
    finished_at: str | None
    rule: str  # the curation rule, e.g. "score >= 5"
    k: float
    score_column: str
    table_versions: dict[str, int | None]
    yields: list[YieldRow]
    drops: dict[str, dict[str, int]]  # table -> udfs.tables.status_key -> rows
    score_counts: dict[int, dict[str, int]]  # iteration -> SCORE_LABELS -> judged rows
    expected_scores: dict[int, list[int]]  # iteration -> counts per EXPECTED_BINS bin
    parse_failures: dict[int, dict[str, int]]
    lengths: list[LengthStats]
    examples: list[ExamplePair]  # a few curated pairs per iteration
    verbs: VerbNounCounts | None
    throughput: list[StageThroughput]
    calibration: list[JudgeCalibration]
    selection: list[SelectionSet] = field(default_factory=list)  # the judge's sets beside the baselines
    notes: list[str] = field(default_factory=list)  # what the report could not show, and why
    failed_runs: list[FailedRun] = field(default_factory=list)  # the latest failed runs of these tables, newest first
    failed_total: int = 0  # failed runs in the ledger (failed_runs shows the latest FAILED_SHOWN)
    rewrites: RewriteStats | None = None  # None: the run has no rewrites table (rewrite.enabled off)
    signals: list[SignalAUC] = field(default_factory=list)  # the judges beside IFD and the baselines


# --- data shaping ----------------------------------------------------------------------------------------


def bin_counts(value_counts: Mapping[float, int], edges: Sequence[float] = EXPECTED_BINS) -> list[int]:
    """Histogram counts of ``value -> count`` over ``edges`` (the last bin includes its right edge; values
    outside the edges are clipped into the first or last bin). None values are not counted."""
    counts = [0] * (len(edges) - 1)
    width = edges[1] - edges[0]
    for value, n in value_counts.items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        i = min(max(int((value - edges[0]) // width), 0), len(counts) - 1)
        counts[i] += n
    return counts


def stage_throughput(stages: Sequence[Mapping]) -> list[StageThroughput]:
    """Rows and tokens per stage from a ``runs`` row's stage reports (older rows lack ``rows_in``)."""
    out = []
    for s in stages:
        tokens = (s.get("extra") or {}).get("tokens") or {}
        out.append(
            StageThroughput(
                str(s.get("stage")),
                int(s.get("rows_in") or 0),
                int(s.get("rows_written") or 0),
                float(s.get("seconds") or 0.0),
                int(tokens.get("prompt_tokens") or 0),
                int(tokens.get("output_tokens") or 0),
            )
        )
    return out


# --- plots -----------------------------------------------------------------------------------------------


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(width: float, height: float, ncols: int = 1):
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _label(text: str, n: int = 40) -> str:
    """A plot label from data: shortened, and "$" escaped (matplotlib reads "$...$" as math, and bad math raises)."""
    text = text if len(text) <= n else text[: n - 1] + "…"
    return text.replace("$", r"\$")


def _log_scale_if_wide(ax, values: Sequence[float], axis: str = "x") -> None:
    positive = [v for v in values if v > 0]
    if positive and max(positive) > 100 * min(positive):
        ax.set(**{f"{axis}scale": "log"})


def plot_scores(data: ReportData) -> str | None:
    if not data.score_counts:
        return None
    fig, (parsed, expected) = _figure(10, 3.5, 2)
    iterations = sorted(data.score_counts)
    width = 0.8 / len(iterations)
    for j, it in enumerate(iterations):
        xs = [i + j * width for i in range(len(SCORE_LABELS))]
        parsed.bar(xs, [data.score_counts[it].get(s, 0) for s in SCORE_LABELS], width, label=f"iteration {it}")
        if it in data.expected_scores:
            expected.stairs(data.expected_scores[it], EXPECTED_BINS, label=f"iteration {it}", linewidth=1.5)
    parsed.set_xticks([i + 0.4 - width / 2 for i in range(len(SCORE_LABELS))], SCORE_LABELS)
    parsed.set(title="parsed score", xlabel="score", ylabel="judged pairs")
    expected.set(title="expected score (judge's probabilities)", xlabel="E[score]", ylabel="judged pairs")
    for ax, column in ((parsed, "score"), (expected, "expected_score")):
        if data.score_column in (column, "both"):
            x = data.k - 1 + 0.4 - width / 2 if column == "score" else data.k
            ax.axvline(x, color="black", linestyle="--", linewidth=1, label=f"k = {data.k:g}")
        ax.legend()
    return _png(fig)


def plot_lengths(data: ReportData) -> str | None:
    if not data.lengths:
        return None
    fig, axes = _figure(10, 3.2, 2)
    names = [s.name for s in data.lengths]
    for ax, key in zip(axes, ("instruction_chars", "output_chars")):
        means = [s.stats[key][0] or 0 for s in data.lengths]
        stds = [s.stats[key][1] or 0 for s in data.lengths]
        medians = [s.stats[key][2] or 0 for s in data.lengths]
        ax.bar(range(len(names)), means, yerr=stds, capsize=3, color="tab:blue", alpha=0.7, label="mean ± std")
        ax.scatter(range(len(names)), medians, color="tab:orange", marker="D", zorder=3, label="median")
        ax.set_xticks(range(len(names)), [_label(n, 24) for n in names], rotation=20, ha="right")
        ax.set(title=key.replace("_", " "), ylabel="characters")
        ax.legend()
    return _png(fig)


def plot_drops(data: ReportData) -> str | None:
    items = [
        (table, reason, n) for table, counts in data.drops.items() for reason, n in counts.items() if reason != "ok"
    ]
    if not items:
        return None
    items.sort(key=lambda trn: (-list(data.drops).index(trn[0]), trn[2]))  # tables in pipeline order, top to bottom
    fig, (ax,) = _figure(8, 0.3 * len(items) + 1)
    colors = {t: matplotlib.colormaps["tab10"](i) for i, t in enumerate(data.drops)}
    ax.barh(range(len(items)), [n for _, _, n in items], color=[colors[t] for t, _, _ in items], alpha=0.75)
    ax.set_yticks(range(len(items)), [_label(f"{t} · {r}", 48) for t, r, _ in items])
    _log_scale_if_wide(ax, [n for _, _, n in items])
    ax.set(xlabel="rows not ok")
    return _png(fig)


def plot_yields(data: ReportData) -> str | None:
    if not data.yields:
        return None
    fig, (ax,) = _figure(7, 0.35 * len(data.yields) + 1)
    labels, counts = [y.step for y in reversed(data.yields)], [y.rows for y in reversed(data.yields)]
    ax.barh(range(len(counts)), counts, color="tab:green", alpha=0.7)
    ax.set_yticks(range(len(labels)), [_label(x) for x in labels])
    _log_scale_if_wide(ax, counts)
    for y, c in enumerate(counts):
        ax.text(c, y, f" {c:,}", va="center")
    ax.set(xlabel="rows")
    return _png(fig)


def plot_verbs(counts: VerbNounCounts | None) -> str | None:
    """The Self-Instruct figure: root verbs (inner ring) and their top direct-object nouns (outer ring)."""
    if counts is None or not counts.top:
        return None
    fig, (ax,) = _figure(7, 7)
    cmap = matplotlib.colormaps["tab20"]
    inner_sizes, inner_labels, inner_colors, outer_sizes, outer_labels, outer_colors = [], [], [], [], [], []
    total = sum(c for _, c, _ in counts.top)
    for i, (verb, n, nouns) in enumerate(counts.top):
        color = cmap(i % 20)
        inner_sizes.append(n)
        inner_labels.append(_label(verb, 16) if n / total > 0.02 else "")
        inner_colors.append(color)
        for noun, m in nouns:
            outer_sizes.append(m)
            outer_labels.append(_label(noun, 16) if m / total > 0.012 else "")
            outer_colors.append((*color[:3], 0.55))
        if n - sum(m for _, m in nouns) > 0:  # the verb's other objects: an unlabelled blank wedge
            outer_sizes.append(n - sum(m for _, m in nouns))
            outer_labels.append("")
            outer_colors.append((1, 1, 1, 0))
    wedge = {"edgecolor": "white", "linewidth": 0.5}
    ax.pie(
        inner_sizes,
        radius=0.62,
        labels=inner_labels,
        labeldistance=0.55,
        colors=inner_colors,
        wedgeprops={**wedge, "width": 0.42},
        textprops={"ha": "center", "fontsize": 8},
        startangle=90,
        counterclock=False,
    )
    ax.pie(
        outer_sizes,
        radius=1.0,
        labels=outer_labels,
        labeldistance=0.8,
        colors=outer_colors,
        rotatelabels=True,
        wedgeprops={**wedge, "width": 0.38},
        textprops={"ha": "center", "va": "center", "fontsize": 7},
        startangle=90,
        counterclock=False,
    )
    ax.set(aspect="equal", title=f"top {len(counts.top)} root verbs and their direct-object nouns")
    return _png(fig)


def plot_throughput(rows: Sequence[StageThroughput]) -> str | None:
    rows = [r for r in reversed(rows) if r.rows_per_second]  # barh draws bottom-up: first stage on top
    if not rows:
        return None
    llm = [r for r in rows if r.tokens_per_second]
    fig, axes = _figure(10, 3, 2 if llm else 1)
    axes[0].barh([_label(r.stage) for r in rows], [r.rows_per_second for r in rows], color="tab:purple", alpha=0.7)
    axes[0].set(title="rows per second")
    _log_scale_if_wide(axes[0], [r.rows_per_second for r in rows])
    if llm:
        axes[1].barh([_label(r.stage) for r in llm], [r.tokens_per_second for r in llm], color="tab:orange", alpha=0.7)
        axes[1].set(title="tokens (in + out) per second")
    return _png(fig)


def plot_rewrites(stats: RewriteStats | None) -> str | None:
    """Faithfulness of the measured rewrites (with the threshold), and mean lengths: segment vs rewrite."""
    if stats is None or not stats.rows:
        return None
    fig, (hist, lengths) = _figure(10, 3, 2)
    hist.stairs(stats.faithfulness_bins, FAITHFULNESS_BINS, fill=True, alpha=0.6, color="tab:blue")
    if stats.min_faithfulness is not None:
        hist.axvline(stats.min_faithfulness, color="black", linestyle="--", linewidth=1, label="min_faithfulness")
        hist.legend()
    hist.set(title="faithfulness (share of n-grams from the segment)", xlabel="faithfulness", ylabel="rewrites")
    names = ("segment", "rewrite")
    means = [stats.segment_chars[0] or 0, stats.answer_chars[0] or 0]
    stds = [stats.segment_chars[1] or 0, stats.answer_chars[1] or 0]
    lengths.bar(names, means, yerr=stds, capsize=3, color=["tab:gray", "tab:green"], alpha=0.7)
    lengths.set(title="ok rewrites: characters, mean ± std", ylabel="characters")
    return _png(fig)


def plot_calibration(results: Sequence[JudgeCalibration], k: float) -> str | None:
    if not results:
        return None
    fig, axes = _figure(10, 3.2, 2)
    for metric, ax in zip(("precision", "recall"), axes):
        for r in results:
            ks = [p.k for p in r.curve if getattr(p, metric) is not None]
            ax.plot(
                ks,
                [getattr(p, metric) for p in r.curve if getattr(p, metric) is not None],
                marker="o",
                label=f"iteration {r.iteration} judge",
            )
        ax.axvline(k, color="black", linestyle="--", linewidth=1, label=f"k = {k:g}")
        ax.set(title=f"{metric} at k", xlabel="k", xlim=(0.9, 5.1), ylim=(-0.05, 1.05))
        ax.legend()
    return _png(fig)


# --- HTML ------------------------------------------------------------------------------------------------

# The page: a Jinja template next to this module (HTML lines are as long as their tables).
_TEMPLATE = Path(__file__).with_name("report.html.j2")


def _num(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}" if abs(x) < 1 else f"{x:.2f}"


def _stat(values) -> str:
    if not values or values[0] is None:
        return "n/a"
    mean, std, median = values
    return f"{mean:,.0f} ± {std or 0:,.0f} ({median:,.0f})"


def _img(png: str | None):
    if png is None:
        return Markup("<p>no data to plot</p>")
    return Markup(f'<img alt="plot" src="data:image/png;base64,{png}">')


def render_html(data: ReportData) -> str:
    """The whole report as one HTML page with its plots embedded (base64 PNG)."""
    with matplotlib.rc_context(PLOT_STYLE):
        plots = {
            "yields": plot_yields(data),
            "drops": plot_drops(data),
            "scores": plot_scores(data),
            "lengths": plot_lengths(data),
            "verbs": plot_verbs(data.verbs),
            "throughput": plot_throughput(data.throughput),
            "calibration": plot_calibration(data.calibration, data.k),
            "rewrites": plot_rewrites(data.rewrites),
        }
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(_TEMPLATE.read_text()).render(
        data=data,
        plots=plots,
        img=_img,
        num=_num,
        stat=_stat,
        score_labels=SCORE_LABELS,
        length_fields=LENGTH_FIELDS,
        share=lambda y: _share(y, {r.step: r.rows for r in data.yields}),
    )


def _share(row: YieldRow, rows: Mapping[str, int]) -> str:
    base = rows.get(row.of) if row.of else None
    return f"{row.rows / base:.1%} of {row.of}" if base else ""
