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
from jobs.storage import Storage
from jobs.report_render import (
    EXAMPLE_CHARS,
    ExamplePair,
    JudgeCalibration,
    LengthStats,
    ReportData,
    YieldRow,
    bin_counts,
    render_html,
    stage_throughput,
)
from udfs import spark_udfs
from udfs.calibration import precision_recall_at_k, read_labels
from udfs.config import ConfigError
from udfs.curation import passes
from udfs.instruction_stats import load_parser, top_verb_nouns, verb_objects

log = logging.getLogger(__name__)

TABLES = ("documents", "segments", "candidates", "scores", "curated")
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
    """The score column and k of the last iteration: the rule of the final model's data, shown with the
    calibration (each iteration's own curated pairs come from the ``curated`` table when the run has it)."""
    return cfg.iterations.score_column, cfg.iterations.k(cfg.iterations.count)


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

    def __getitem__(self, name: str) -> DataFrame | None:
        return self.frames[name]


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


def build_report(ctx: Context, run_id: str | None = None) -> ReportData:
    """Everything the report shows, as plain data."""
    t = RunTables(ctx, run_id)
    column, k = curation_rule(ctx.cfg)
    notes = [] if t.run else ["no runs row: tables read at their latest versions, no throughput"]
    drops = {
        name: status_counts(t[name])
        for name in ("documents", "segments", "candidates", "scores")
        if t[name] is not None
    }
    curated, pool = curated_pairs(t, column, k), pool_pairs(t)
    parsed, expected, failures = score_stats(t["scores"])
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
        notes=notes,
    )


def write_report(ctx: Context, run_id: str | None = None, out_dir: str | None = None) -> Path:
    """Build the report of ``run_id`` (default: the latest run) and write ``report-<run_id>.html``; its path."""
    data = build_report(ctx, run_id)
    folder = Path(out_dir or ctx.cfg.report.dir or f"{ctx.storage.root}/reports")
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
