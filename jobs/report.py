"""The run report: one self-contained HTML page with its plots embedded, regenerated from the Delta tables alone.

    spark-submit jobs/report.py --config conf/local.yaml [--set dotted.key=value ...] [--run-id ID] [--out DIR]

The tables are read at the versions the run recorded in ``runs`` (the latest run unless ``--run-id``), so an
older run's report can be rebuilt after later runs appended rows. The main job calls ``write_report`` at its
end. Spark does the aggregations; the driver gets small results, parses a fixed sample of generated
instructions with spaCy, and renders the page with ``jobs.report_render``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from functools import reduce
from pathlib import Path
from typing import Any, Mapping

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from jobs.config import PipelineConfig, job_arguments, load_pipeline_config
from jobs.session import get_session
from jobs.stages.base import Context, status_counts
from jobs.stages.calibrate import calibration_ids, labels_path
from jobs.stages.likelihood import rule_rows
from jobs.storage import Storage
from jobs.summary import iteration_judge, judged_by
from jobs.selection import answer_lengths, baseline_pairs, baseline_size, judge_kept
from jobs.report_render import (
    EXAMPLE_CHARS,
    FAILED_SHOWN,
    FAITHFULNESS_BINS,
    ExamplePair,
    FailedRun,
    JudgeCalibration,
    LengthStats,
    ReportData,
    SelectionSet,
    SignalAUC,
    RewritePair,
    RewriteStats,
    YieldRow,
    bin_counts,
    render_html,
    stage_throughput,
)
from udfs import spark_udfs
from udfs.calibration import auc, baseline_values, precision_recall_at_k, read_labels, signal_values
from udfs.config import ConfigError
from udfs.curation import BASELINE_RULES, RULE_COLUMNS, passes
from udfs.likelihood import LIKELIHOOD_COLUMNS
from udfs.instruction_stats import load_parser, top_verb_nouns, verb_objects

log = logging.getLogger(__name__)

TABLES = ("documents", "segments", "candidates", "scores", "rewrites", "curated", "likelihoods")
JUDGE_SIGNALS = ("expected_score", "score")
CALIBRATION_KS = tuple(1 + 0.5 * i for i in range(9))  # the precision/recall curve: k = 1, 1.5, ..., 5


def pinned_versions(tables: Mapping[str, Any]) -> dict[str, int | None]:
    """Table -> version from a ``runs`` row's ``tables`` column.

    Accepts the flat ``{name: version}`` map, ``{name: {"version": v, ...}}``, and maps of those
    (``{"read": {...}, "written": {...}}``); a table met twice gets its highest version (what the run left).
    None: the table did not exist yet.
    """
    versions: dict[str, int | None] = {}

    def add(table: str, version: int | None) -> None:
        known = versions.get(table)
        versions[table] = version if known is None else max(known, version if version is not None else known)

    for name, value in tables.items():
        if isinstance(value, Mapping) and "version" in value:
            value = value["version"]
        if isinstance(value, Mapping):
            for table, version in pinned_versions(value).items():
                add(table, version)
        elif value is None or (isinstance(value, int) and not isinstance(value, bool)):
            add(name, value)
    return versions


def curation_rule(cfg: PipelineConfig) -> tuple[str, float]:
    """The judge's score column and k of the last iteration: the rule of the final model's data (or, when a
    baseline selected it, the rule whose size it matched), shown with the calibration (each iteration's own
    curated pairs come from the ``curated`` table when the run has it)."""
    return cfg.iterations.judge_rule, cfg.iterations.k(cfg.iterations.count)


def with_iteration(df: DataFrame) -> DataFrame:
    """``df`` with an ``iteration`` column; tables from before iterations existed are iteration 1."""
    return df if "iteration" in df.columns else df.withColumn("iteration", F.lit(1))


class RunTables:
    """The run's tables at the versions its ``runs`` row recorded (a table it does not list did not exist for
    it); without a runs row, the latest versions."""

    def __init__(self, ctx: Context, run_id: str | None):
        runs = ctx.storage.read("runs")
        if runs is not None and run_id is not None:
            runs = runs.where(F.col("run_id") == run_id)
        elif runs is not None:  # the latest run that finished: a failed one is listed, not reported on
            runs = runs.where(~failed(runs))
        self.run = runs.orderBy(F.col("finished_at").desc()).first() if runs is not None else None
        if run_id is not None and self.run is None:
            raise ValueError(f"no run {run_id!r} in {ctx.storage.path('runs')}")
        if self.run is not None:
            self.versions = pinned_versions(json.loads(self.run["tables"]))
        else:
            self.versions = {name: ctx.storage.version(name) for name in TABLES}
        self.frames: dict[str, DataFrame | None] = {}
        for name in TABLES:
            version = self.versions.get(name)
            df = ctx.storage.read(name, version) if version is not None else None
            self.frames[name] = with_iteration(df) if df is not None and name in ("scores", "curated") else df
        # The rows of the judges the run summary counted, not of every judge an iteration ever had
        judges = self.judges(ctx)
        for name in ("scores", "curated"):
            df = self.frames[name]
            if df is not None and "judge_model_id" in df.columns:
                self.frames[name] = judged_by(df, judges)

    def judges(self, ctx: Context) -> dict[int, str]:
        """Iteration -> the id of the judge whose scores that iteration used: as the run's summary recorded it,
        or, without a runs row, each iteration's judge as it is now (``jobs.summary.curation_summary``)."""
        if self.run is not None:
            curation = json.loads(self.run["curation"] or "[]")
            return {c["iteration"]: c["judge_model_id"] for c in curation if "judge_model_id" in c}
        found = {i: iteration_judge(ctx, i) for i in range(1, ctx.cfg.iterations.count + 1)}
        return {i: judge for i, judge in found.items() if judge is not None}

    def __getitem__(self, name: str) -> DataFrame | None:
        return self.frames[name]


def failed(runs: DataFrame):
    """Whether a ``runs`` row is a failed run (tables from before failures were recorded have none)."""
    return F.lit(False) if "status" not in runs.columns else F.coalesce(F.col("status") == "failed", F.lit(False))


def failed_runs(ctx: Context) -> tuple[list[FailedRun], int]:
    """The latest ``FAILED_SHOWN`` failed runs in the ledger, newest first, and how many there are."""
    runs = ctx.storage.read("runs")
    if runs is None:
        return [], 0
    rows = runs.where(failed(runs))
    shown = [
        FailedRun(
            r["run_id"],
            r["started_at"],
            r["failed_stage"],
            r["reason"],
            {t: c["rows"] for t, c in json.loads(r["committed"] or "{}").items()},
        )
        for r in rows.orderBy(F.col("started_at").desc()).limit(FAILED_SHOWN).collect()
    ]
    return shown, rows.count() if len(shown) == FAILED_SHOWN else len(shown)


def curated_pairs(t: RunTables, column: str, k: float) -> DataFrame | None:
    """(iteration, generation_id) of the curated pairs: the ``curated`` lineage table when the run wrote one,
    else the curation rule over the judged scores."""
    if t["curated"] is not None:
        return t["curated"].select("iteration", "generation_id").distinct()
    if t["scores"] is None:
        return None
    return t["scores"].where(passes(F.col, column, k)).select("iteration", "generation_id").distinct()


def pool_pairs(t: RunTables) -> DataFrame | None:
    """(generation_id, instruction, output) of every ok candidate: the generated instruction and its segment."""
    if t["candidates"] is None or t["segments"] is None:
        return None
    return (
        t["candidates"]
        .where("status = 'ok'")
        .select("generation_id", "segment_id", "instruction")
        .join(t["segments"].select("segment_id", F.col("text").alias("output")), on="segment_id")
    )


def yields(t: RunTables, drops: dict[str, dict[str, int]], curated: DataFrame | None) -> list[YieldRow]:
    rows = [
        YieldRow("documents", sum(drops.get("documents", {}).values())),
        YieldRow("documents ok", drops.get("documents", {}).get("ok", 0), "documents"),
        YieldRow("segments", sum(drops.get("segments", {}).values())),
        YieldRow("segments kept", drops.get("segments", {}).get("ok", 0), "segments"),
        YieldRow("candidates ok", drops.get("candidates", {}).get("ok", 0), "segments kept"),
    ]
    scored = (
        {r["iteration"]: r["count"] for r in t["scores"].where("status = 'ok'").groupBy("iteration").count().collect()}
        if t["scores"] is not None
        else {}
    )
    kept = (
        {r["iteration"]: r["count"] for r in curated.groupBy("iteration").count().collect()}
        if curated is not None
        else {}
    )
    for it in sorted(set(scored) | set(kept)):
        rows.append(YieldRow(f"scored (iteration {it})", scored.get(it, 0), "candidates ok"))
        rows.append(YieldRow(f"curated (iteration {it})", kept.get(it, 0), f"scored (iteration {it})"))
    return rows


def score_stats(scores: DataFrame | None) -> tuple[dict, dict, dict]:
    """Parsed-score counts, expected-score histograms and parse failures per iteration, over judged rows."""
    if scores is None:
        return {}, {}, {}
    judged = scores.where("status = 'ok'")
    parsed: dict[int, dict[str, int]] = {}
    for r in judged.groupBy("iteration", "score").count().collect():
        parsed.setdefault(r["iteration"], {})["none" if r["score"] is None else str(r["score"])] = r["count"]
    # rounded before collecting: at most 401 distinct values per iteration reach the driver, however large the pool
    values: dict[int, dict[float, int]] = {}
    for r in judged.groupBy("iteration", F.round("expected_score", 2).alias("e")).count().collect():
        values.setdefault(r["iteration"], {})[r["e"]] = r["count"]
    failures: dict[int, dict[str, int]] = {}
    for r in judged.where("parse_failure is not null").groupBy("iteration", "parse_failure").count().collect():
        failures.setdefault(r["iteration"], {})[r["parse_failure"]] = r["count"]
    return parsed, {it: bin_counts(v) for it, v in values.items()}, failures


def length_stats(
    ctx: Context, pool: DataFrame | None, curated: DataFrame | None, notes: list[str]
) -> list[LengthStats]:
    """Instruction and output lengths (chars, and tokens of the base model's tokenizer) of seed, pool and curated."""
    sets = [
        ctx.spark.read.schema("instruction string, output string")
        .json(ctx.cfg.input.seed)
        .select(F.lit("seed").alias("set"), "instruction", "output")
    ]
    if pool is not None:
        sets.append(pool.select(F.lit("pool").alias("set"), "instruction", "output"))
        if curated is not None:
            sets.append(
                curated.join(pool, on="generation_id").select(
                    F.concat(F.lit("curated (iteration "), F.col("iteration").cast("string"), F.lit(")")).alias("set"),
                    "instruction",
                    "output",
                )
            )
    pairs = reduce(DataFrame.unionByName, sets)
    columns = {"instruction_chars": F.length("instruction"), "output_chars": F.length("output")}
    tokenizer = ctx.cfg.model_path("base")
    if (Path(tokenizer) / "tokenizer_config.json").is_file():
        count = spark_udfs.token_counter(tokenizer)
        columns.update(instruction_tokens=count("instruction"), output_tokens=count("output"))
    else:
        notes.append(f"token lengths not counted: no tokenizer at {tokenizer}")
    aggs = [F.count(F.lit(1)).alias("pairs")]
    for name, expr in columns.items():
        aggs += [
            F.mean(expr).alias(f"{name}_mean"),
            F.stddev(expr).alias(f"{name}_std"),
            F.percentile_approx(expr, 0.5).alias(f"{name}_median"),
        ]
    rows = {r["set"]: r for r in pairs.groupBy("set").agg(*aggs).collect()}
    order = ["seed", "pool"] + sorted(
        (s for s in rows if s.startswith("curated")), key=lambda s: int(s.split()[-1].rstrip(")"))
    )
    return [
        LengthStats(
            s,
            rows[s]["pairs"],
            {c: (rows[s][f"{c}_mean"], rows[s][f"{c}_std"], rows[s][f"{c}_median"]) for c in columns},
        )
        for s in order
        if s in rows
    ]


def examples(
    t: RunTables, pool: DataFrame | None, curated: DataFrame | None, per_iteration: int = 3
) -> list[ExamplePair]:
    """A few curated pairs of each iteration with their scores (the first by generation id: a fixed sample)."""
    if pool is None or curated is None or t["scores"] is None:
        return []
    scores = t["scores"].select("iteration", "generation_id", "score", "expected_score")
    first = F.row_number().over(Window.partitionBy("iteration").orderBy("generation_id"))
    rows = (
        curated.join(pool, on="generation_id")
        .join(scores, on=["iteration", "generation_id"], how="left")
        .withColumn("_n", first)
        .where(F.col("_n") <= per_iteration)
        .orderBy("iteration", "_n")
        .select(
            "iteration",
            "instruction",
            F.substring("output", 1, EXAMPLE_CHARS).alias("output"),
            "score",
            "expected_score",
        )
        .collect()
    )
    return [ExamplePair(**r.asDict()) for r in rows]


def rewrite_stats(t: RunTables, pool: DataFrame | None, n_pairs: int = 3) -> RewriteStats | None:
    """Segment vs rewrite lengths over ok rewrites, faithfulness over measured ones (ok and unfaithful), how the
    answers ended, and a few pairs side by side (ok ones first, the first by rewrite id: a fixed sample)."""
    rewrites = t["rewrites"]
    if rewrites is None or t["segments"] is None:
        return None
    texts = t["segments"].select("segment_id", "text")
    ok = rewrites.where("status = 'ok'").join(texts, on="segment_id")
    answer, segment = F.length("answer"), F.length("text")
    lengths = ok.agg(
        F.mean(answer).alias("answer_mean"),
        F.stddev(answer).alias("answer_std"),
        F.mean(segment).alias("segment_mean"),
        F.stddev(segment).alias("segment_std"),
        F.percentile_approx(answer, 0.5).alias("answer_median"),
        F.percentile_approx(segment, 0.5).alias("segment_median"),
        F.percentile_approx(answer / segment, 0.5).alias("ratio"),
    ).first()
    measured = rewrites.where("faithfulness is not null")
    figures = measured.agg(
        F.mean("faithfulness").alias("mean"),
        F.percentile_approx("faithfulness", 0.5).alias("median"),
        F.mean("n_new_numbers").alias("numbers"),
        F.mean("n_new_entities").alias("entities"),
        F.sum((F.col("n_new_numbers") > 0).cast("int")).alias("with_numbers"),
    ).first()
    values = {r["f"]: r["count"] for r in measured.groupBy(F.round("faithfulness", 2).alias("f")).count().collect()}
    totals = rewrites.agg(
        F.count("*").alias("rows"),
        F.sum((F.col("status") == "ok").cast("int")).alias("ok"),
        F.max("min_faithfulness").alias("threshold"),
    ).first()
    pairs = []
    if pool is not None:
        shown = (
            measured.join(pool.select("generation_id", "instruction"), on="generation_id")
            .join(texts, on="segment_id")
            .orderBy((F.col("status") != "ok").cast("int"), "rewrite_id")
            .limit(n_pairs)
            .select(
                "instruction",
                F.substring("text", 1, EXAMPLE_CHARS).alias("segment"),
                F.substring("answer", 1, EXAMPLE_CHARS).alias("answer"),
                F.concat_ws(":", "status", "reason").alias("status"),
                "faithfulness",
                "new_numbers",
                "new_entities",
            )
            .collect()
        )
        pairs = [RewritePair(**r.asDict()) for r in shown]
    return RewriteStats(
        rows=totals["rows"],
        ok=totals["ok"] or 0,
        min_faithfulness=totals["threshold"],
        segment_chars=(lengths["segment_mean"], lengths["segment_std"], lengths["segment_median"]),
        answer_chars=(lengths["answer_mean"], lengths["answer_std"], lengths["answer_median"]),
        length_ratio_median=lengths["ratio"],
        faithfulness=(figures["mean"], figures["median"]),
        faithfulness_bins=bin_counts(values, FAITHFULNESS_BINS),
        new_numbers_mean=figures["numbers"],
        new_entities_mean=figures["entities"],
        with_new_numbers=figures["with_numbers"] or 0,
        answer_end={r["answer_end"] or "none": r["count"] for r in rewrites.groupBy("answer_end").count().collect()},
        pairs=pairs,
    )


def verb_noun_counts(ctx: Context, pool: DataFrame | None, notes: list[str]):
    """Root verbs and objects of a fixed sample of generated instructions (the first by generation id, a hash)."""
    n = ctx.cfg.report.parsed_instructions
    if pool is None or n == 0:
        return None
    texts = [
        r["instruction"]
        for r in pool.select("generation_id", "instruction").orderBy("generation_id").limit(n).collect()
    ]
    try:
        nlp = load_parser(ctx.cfg.report.spacy_model)
    except (ImportError, OSError) as exc:  # a cluster without the model package still gets the rest of the report
        notes.append(f"root verbs not shown: spaCy model {ctx.cfg.report.spacy_model!r} unavailable ({exc})")
        return None
    notes.append(f"root verbs: {len(texts):,} generated instructions parsed (the first {n:,} by generation id)")
    return top_verb_nouns(verb_objects(nlp, texts), top_verbs=ctx.cfg.report.top_verbs)


def calibration(ctx: Context, t: RunTables, column: str, k: float, notes: list[str]) -> list[JudgeCalibration]:
    """Precision and recall at k of this run's judges over the labelled pairs (rows of the calibrate stage)."""
    path = labels_path(ctx.cfg)
    table = ctx.storage.read("calibration")
    if path is None or table is None or t["scores"] is None:
        return []
    judges = {
        r["judge_model_id"]: r["iteration"]
        for r in t["scores"].select("judge_model_id", "iteration").distinct().collect()
    }
    wanted = calibration_ids(ctx.cfg, list(judges), read_labels(path))
    keys = ctx.spark.createDataFrame([(i,) for i in sorted(wanted)], "calibration_id string")
    rows = [
        r.asDict()
        for r in table.join(keys, on="calibration_id")
        .select("judge_model_id", "label", "score", "expected_score")
        .collect()
    ]
    results = []
    for judge, iteration in sorted(judges.items(), key=lambda ji: (ji[1], ji[0])):
        mine = [r for r in rows if r["judge_model_id"] == judge]
        if mine:
            results.append(
                JudgeCalibration(
                    iteration,
                    judge,
                    precision_recall_at_k(mine, column, k),
                    [precision_recall_at_k(mine, column, x) for x in CALIBRATION_KS],
                )
            )
    if len(rows) < len(wanted):
        notes.append(f"calibration: {len(rows)} of {len(wanted)} (judge, label) rows present (run the calibrate stage)")
    return results


def selection_sets(ctx: Context, t: RunTables, notes: list[str], signals: list[SignalAUC]) -> list[SelectionSet]:
    """Per iteration, the judge's kept set beside the longest-k and random-k baselines of the same size
    (``iterations.baseline_k`` when set): sizes, answer lengths, Jaccard overlap with the judge's set, and the
    AUC over the labelled pairs of the signal each set ranks by (``signals``: the judge's score column, answer
    length, the random draw)."""
    if t["scores"] is None or t["segments"] is None:
        return []
    cfg = ctx.cfg
    rule_column = RULE_COLUMNS[cfg.iterations.judge_rule][-1]  # "both": the expected score ranks ties
    out = []
    for iteration in sorted(r["iteration"] for r in t["scores"].select("iteration").distinct().collect()):
        if iteration > cfg.iterations.count:
            continue
        mine = rule_rows(ctx, t["scores"].where(F.col("iteration") == iteration))
        pool = answer_lengths(mine, t["segments"]).cache()
        judge = judge_kept(mine, cfg, iteration).cache()
        size = baseline_size(cfg, judge.count())
        sets = {"judge": judge}
        for rule in BASELINE_RULES:
            sets[f"{rule}-k"] = baseline_pairs(pool, rule, size, cfg.iterations.baseline_seed)
        for name, chosen in sets.items():
            stats = (
                chosen.join(pool, on="generation_id")
                .join(judge.withColumn("_judge", F.lit(1)), on="generation_id", how="left")
                .agg(
                    F.count("*").alias("pairs"),
                    F.mean("length").alias("mean"),
                    F.percentile_approx("length", 0.5).alias("median"),
                    F.count("_judge").alias("shared"),
                )
                .first()
            )
            union = stats["pairs"] + judge.count() - stats["shared"]
            judge_signal = (
                f"-{rule_column} (" if rule_column in LIKELIHOOD_COLUMNS else f"judge M{iteration - 1} {rule_column}"
            )
            signal = {"judge": judge_signal, "longest-k": "length", "random-k": "random"}
            out.append(
                SelectionSet(
                    iteration,
                    name,
                    stats["pairs"],
                    stats["mean"],
                    stats["median"],
                    stats["shared"] / union if union else None,
                    next((a.auc for a in signals if a.signal.startswith(signal[name])), None),
                )
            )
        pool.unpersist()
        judge.unpersist()
    if cfg.iterations.score_column in BASELINE_RULES:
        notes.append(f"the models were trained on the {cfg.iterations.score_column}-k set ({cfg.iterations.rule(1)})")
    return out


def signals(ctx: Context, t: RunTables) -> list[SignalAUC]:
    """AUC over the labelled pairs of every selection signal the run has: each judge's expected and parsed
    score, the likelihood scorer's -IFD and -conditional loss, and the length and random baselines."""
    path = labels_path(ctx.cfg)
    if path is None:
        return []
    pairs = read_labels(path)
    good = [p.label == "good" for p in pairs]
    found: list[tuple[str, list[float | None]]] = []
    table = ctx.storage.read("calibration")
    if table is not None and t["scores"] is not None:
        judges = {
            r["judge_model_id"]: r["iteration"]
            for r in t["scores"].select("judge_model_id", "iteration").distinct().collect()
        }
        keys = ctx.spark.createDataFrame(
            [(i,) for i in sorted(calibration_ids(ctx.cfg, list(judges), pairs))], "calibration_id string"
        )
        rows = table.join(keys, on="calibration_id").select("judge_model_id", "label_id", *JUDGE_SIGNALS).collect()
        for judge, iteration in sorted(judges.items(), key=lambda ji: (ji[1], ji[0])):
            mine = [r for r in rows if r["judge_model_id"] == judge]
            for column in JUDGE_SIGNALS if mine else ():
                by_label = {r["label_id"]: r[column] for r in mine}
                found.append((f"judge M{iteration - 1} {column}", signal_values(pairs, by_label, column)))
    if t["likelihoods"] is not None:
        rows = t["likelihoods"].where("source = 'labels' and status = 'ok'")
        for scorer in sorted(r[0] for r in rows.select("scorer_model_id").distinct().collect()):
            # a labelled pair's likelihood row holds its label id as generation id (jobs.stages.calibrate)
            collected = (
                rows.where(F.col("scorer_model_id") == scorer)
                .select(F.col("generation_id").alias("label_id"), *LIKELIHOOD_COLUMNS)
                .collect()
            )
            for column in LIKELIHOOD_COLUMNS:
                by_label = {r["label_id"]: r[column] for r in collected}
                found.append((f"-{column} ({scorer})", signal_values(pairs, by_label, column)))
    found += [(name, baseline_values(pairs, name)) for name in ("length", "random")]
    return [
        SignalAUC(name, auc(good, values), sum(v is not None for v in values), len(pairs)) for name, values in found
    ]


def build_report(ctx: Context, run_id: str | None = None) -> ReportData:
    """Everything the report shows, as plain data."""
    t = RunTables(ctx, run_id)
    column, k = curation_rule(ctx.cfg)
    notes = [] if t.run else ["no runs row: tables read at their latest versions, no throughput"]
    drops = {
        name: status_counts(t[name])
        for name in ("documents", "segments", "candidates", "scores", "rewrites")
        if t[name] is not None
    }
    curated, pool = curated_pairs(t, column, k), pool_pairs(t)
    parsed, expected, failures = score_stats(t["scores"])
    failed_shown, failed_total = failed_runs(ctx)
    auc_signals = signals(ctx, t)
    return ReportData(
        run_id=t.run["run_id"] if t.run else None,
        finished_at=t.run["finished_at"] if t.run else None,
        rule=f"{column} >= {k:g}",
        k=k,
        score_column=column,
        table_versions={name: v for name, v in t.versions.items() if v is not None},
        yields=yields(t, drops, curated),
        drops=drops,
        score_counts=parsed,
        expected_scores=expected,
        parse_failures=failures,
        lengths=length_stats(ctx, pool, curated, notes),
        examples=examples(t, pool, curated),
        verbs=verb_noun_counts(ctx, pool, notes),
        throughput=stage_throughput(json.loads(t.run["stages"])) if t.run else [],
        calibration=calibration(ctx, t, column, k, notes),
        selection=selection_sets(ctx, t, notes, auc_signals),
        notes=notes,
        failed_runs=failed_shown,
        failed_total=failed_total,
        rewrites=rewrite_stats(t, pool),
        signals=auc_signals,
    )


def write_report(ctx: Context, run_id: str | None = None, out_dir: str | None = None) -> Path:
    """Build the report of ``run_id`` (default: the latest run) and write ``report-<run_id>.html``; its path."""
    data = build_report(ctx, run_id)
    folder = Path(out_dir or ctx.cfg.reports_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"report-{data.run_id or 'latest'}.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(render_html(data), encoding="utf-8")
    os.replace(tmp, path)  # a reader never sees half a page
    log.info("report: %s", path)
    return path


def main(argv: list[str] | None = None) -> Path:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = job_arguments(__doc__)
    parser.add_argument("--run-id", help="the run to report (default: the latest in runs)")
    parser.add_argument("--out", help="folder for the HTML file (default: report.dir)")
    args = parser.parse_args(argv)
    try:
        cfg = load_pipeline_config(args.config, args.overrides)
    except ConfigError as exc:
        sys.exit(f"config error: {exc}")
    spark = get_session(cfg.spark)
    path = write_report(
        Context(spark, Storage(spark, cfg.storage.root, cfg.storage.engine), cfg), args.run_id, args.out
    )
    print(path, flush=True)
    return path


if __name__ == "__main__":
    main()
