"""The run summary: printed at the end of every run and appended to the ``runs`` Delta table."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone

from functools import reduce
from operator import and_

from pyspark.sql import functions as F

from jobs.stages import Context, StageReport, judge_id
from udfs.config import to_dict
from udfs.curation import RULE_COLUMNS
from udfs.ids import stable_id

TABLES = ("documents", "segments", "candidates", "scores")
RUNS_SCHEMA = "run_id string, finished_at string, config string, stages string, tables string, curation string"


def curation_summary(ctx: Context) -> dict:
    """Score histogram, parse failures and yield of the current judge (M0) over the whole pool."""
    scores = ctx.storage.read("scores")
    if scores is None:
        return {}
    scores = scores.where(F.col("judge_model_id") == judge_id(ctx.cfg))
    column, k = ctx.cfg.curate.score_column, ctx.cfg.curate.min_score
    total = scores.count()
    judged = scores.where("status = 'ok'")
    curated = judged.where(reduce(and_, [F.col(c) >= k for c in RULE_COLUMNS[column]])).count()
    histogram = {str(r["score"]): r["count"] for r in judged.groupBy("score").count().collect()}
    failures = {r["parse_failure"]: r["count"] for r in judged.where("parse_failure is not null").groupBy("parse_failure").count().collect()}
    mean_expected = judged.agg(F.avg("expected_score")).first()[0]
    return {"pairs": total, "judged": judged.count(), "score_histogram": histogram, "parse_failures": failures,
            "mean_expected_score": mean_expected, "rule": f"{column} >= {k}", "curated": curated,
            "yield": round(curated / total, 4) if total else 0.0}


def summarize(ctx: Context, reports: list[StageReport]) -> dict:
    """Build the summary, append it to ``runs`` (keyed by what the run produced) and return it."""
    tables = {t: ctx.storage.version(t) for t in TABLES}
    config = to_dict(ctx.cfg)
    summary = {
        "stages": [dataclasses.asdict(r) for r in reports],
        "tables": tables,
        "curation": curation_summary(ctx),
    }
    # A run that changed nothing (same config, same table versions) has the same id: re-runs add no row.
    run_id = stable_id("run", config, tables)
    row = (run_id, datetime.now(timezone.utc).isoformat(), json.dumps(config), json.dumps(summary["stages"], default=str),
           json.dumps(tables), json.dumps(summary["curation"], default=str))
    written = ctx.storage.append_new("runs", ctx.spark.createDataFrame([row], RUNS_SCHEMA), "run_id").rows
    summary.update(run_id=run_id, runs_row_written=bool(written))
    return summary


def format_summary(summary: dict) -> str:
    lines = [f"run {summary['run_id']}"]
    for s in summary["stages"]:
        lines.append(f"  {s['stage']:<12} {s['rows_in']:>6} in {s['rows_written']:>6} out {s['seconds']:>7.1f}s  {json.dumps(s['by_status'], sort_keys=True)}")
    lines.append(f"  tables: {json.dumps(summary['tables'])}")
    if summary["curation"]:
        lines.append(f"  curation: {json.dumps(summary['curation'], sort_keys=True, default=str)}")
    return "\n".join(lines)
