"""The run summary: printed at the end of every run and appended to the ``runs`` Delta table.

A ``runs`` row holds the resolved config (credentials masked by ``udfs.redact``), every stage's report
(seconds, rows in and out by status, the version of each table it read and wrote, LLM tokens in, cached and
out, model ids), the table versions after the run, each iteration's curation (score histogram, parse
failures, rule, curated yield) and the yields of the pool. It is keyed by what the run produced: a re-run
that changes nothing has the same id and adds no row.

A run that raises leaves a ``failed`` row (``record_failure``): the error in one line, the stage it was in, the
reports of the stages that finished and what had been committed by then, per table, so a failure is in the ledger
next to the runs that worked.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from typing import Mapping

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.stages.base import Context, StageReport, model_ready
from jobs.cascade import REJECTED
from jobs.selection import curated_generations
from jobs.stages.likelihood import rule_rows
from jobs.storage import BrokenTable
from udfs import ids
from udfs.config import to_dict
from udfs.ids import model_fingerprint
from udfs.redact import redact
from udfs.tables import (
    CALIBRATION,
    CANDIDATES,
    CURATED,
    DOCUMENTS,
    FILES,
    LIKELIHOODS,
    REWRITES,
    RUNS,
    SCORES,
    SEGMENTS,
)

TABLES = tuple(
    t.name for t in (FILES, DOCUMENTS, SEGMENTS, CANDIDATES, LIKELIHOODS, SCORES, REWRITES, CURATED, CALIBRATION)
)


def curation_summary(ctx: Context, iteration: int) -> dict:
    """Score histogram, parse and expected-score failures and yield of iteration ``iteration``'s judge over the
    whole pool."""
    scores = ctx.storage.read("scores")
    judge_id = iteration_judge(ctx, iteration)
    summary = {"iteration": iteration, "rule": ctx.cfg.iterations.rule(iteration)}
    if scores is None or judge_id is None:
        return summary
    scores = rule_rows(ctx, judged_by(scores, {iteration: judge_id}))
    ok = F.col("status") == "ok"
    totals = (
        scores.agg(
            F.count("*").alias("pairs"),
            F.sum(ok.cast("int")).alias("judged"),
            F.avg(F.when(ok, F.col("expected_score"))).alias("mean_expected_score"),
            F.sum((F.col("reason") == REJECTED).cast("int")).alias("cascade_rejected"),
        )
        .first()
        .asDict()
    )
    totals["curated"] = curated_generations(ctx.cfg, iteration, scores, ctx.storage.read("segments")).count()
    totals["cascade_rejected"] = totals["cascade_rejected"] or 0
    histogram, failures, expected_failures = {}, {}, {}
    for r in scores.where(ok).groupBy("score", "parse_failure", "expected_score_failure").count().collect():
        histogram[str(r["score"])] = histogram.get(str(r["score"]), 0) + r["count"]
        if r["parse_failure"] is not None:
            failures[r["parse_failure"]] = failures.get(r["parse_failure"], 0) + r["count"]
        if r["expected_score_failure"] is not None:
            kind = r["expected_score_failure"]
            expected_failures[kind] = expected_failures.get(kind, 0) + r["count"]
    totals["judged"] = totals["judged"] or 0
    return (
        summary
        | totals
        | {
            "judge_model_id": judge_id,
            "score_histogram": histogram,
            "parse_failures": failures,
            "expected_score_failures": expected_failures,
            "yield": round(totals["curated"] / totals["pairs"], 4) if totals["pairs"] else 0.0,
        }
    )


def iteration_judge(ctx: Context, iteration: int) -> str | None:
    """The model id of iteration ``iteration``'s judge (M_{i-1}) as it is now; None while it is not trained."""
    path = ctx.cfg.iteration_model(iteration - 1)
    return model_fingerprint(path) if model_ready(path) else None


def judged_by(scores: DataFrame, judges: Mapping[int, str]) -> DataFrame:
    """The ``scores`` rows of each iteration's own judge (``judges``: iteration -> judge model id). After a
    corpus drop retrains M1 in place, iteration 2 holds rows of the old M1 and the new one; the summary counts
    the judge the run used, and the report (``jobs.report.RunTables``) counts the same rows through this."""
    mine = F.lit(False)
    for iteration, judge in judges.items():
        mine = mine | ((F.col("iteration") == iteration) & (F.col("judge_model_id") == judge))
    return scores.where(mine)


def pool_yields(ctx: Context, reports: list[StageReport], curation: list[dict]) -> dict:
    """Rows in and out of each stage this run, and the pool's funnel: rows and ok rows per table, then the
    pairs each iteration curated out of the pairs its judge scored."""
    tables = {}
    for name in ("documents", "segments", "candidates"):
        df = ctx.storage.read(name)
        if df is not None:
            counts = df.agg(
                F.count("*").alias("rows"), F.sum(F.when(F.col("status") == "ok", 1).otherwise(0)).alias("ok")
            ).first()
            tables[name] = {"rows": counts["rows"], "ok": counts["ok"] or 0}
    return {
        "stages": [
            {
                "stage": r.stage,
                "iteration": r.iteration,
                "in": r.rows_in,
                "out": r.rows_written,
                "ok": r.by_status.get("ok", 0),
            }
            for r in reports
        ],
        "tables": tables,
        "curated": {
            str(c["iteration"]): {k: c[k] for k in ("pairs", "curated", "yield")} for c in curation if "pairs" in c
        },
    }


def table_versions(ctx: Context) -> dict[str, int | None]:
    """The version of every pipeline table now (None: not created yet)."""
    return {t: ctx.storage.version(t) for t in TABLES}


def summarize(ctx: Context, reports: list[StageReport], started_at: datetime) -> dict:
    """Build the summary, append it to ``runs`` (keyed by what the run produced) and return it."""
    tables = table_versions(ctx)
    curation = [curation_summary(ctx, i) for i in range(1, ctx.cfg.iterations.count + 1)]
    summary = redact(
        {
            "config": to_dict(ctx.cfg),
            "stages": [dataclasses.asdict(r) for r in reports],
            "tables": tables,
            "curation": curation,
            "yields": pool_yields(ctx, reports, curation),
        }
    )
    # A run that changed nothing (same config, same table versions) has the same id: re-runs add no row.
    summary.update(run_id=ids.run_id(summary["config"], tables), status="ok", reason=None)
    return _append_run(ctx, summary, started_at)


def readable_versions(ctx: Context) -> dict[str, int | None]:
    """``table_versions``, with None for a table that cannot be read (``BrokenTable``): what a failed run records,
    whose reason already says which table is broken."""
    versions = {}
    for table in TABLES:
        try:
            versions[table] = ctx.storage.version(table)
        except BrokenTable:
            versions[table] = None
    return versions


def committed(ctx: Context, before: dict[str, int | None], now: dict[str, int | None]) -> dict[str, dict]:
    """What was committed between the table versions ``before`` and ``now``: table -> versions before and
    after, rows added."""
    done = {}
    for name, version in now.items():
        if version is None or version == before.get(name):
            continue
        old = 0 if before.get(name) is None else ctx.storage.read(name, before[name]).count()
        done[name] = {
            "version_before": before.get(name),
            "version": version,
            "rows": ctx.storage.read(name).count() - old,
        }
    return done


def record_failure(
    ctx: Context,
    reports: list[StageReport],
    started_at: datetime,
    before: dict[str, int | None] | None,
    stage: str,
    reason: str,
) -> dict:
    """Append the ``failed`` runs row of a run that raised in ``stage`` with the one-line error ``reason``:
    the reports of the stages that finished and what was committed since the table versions ``before``
    (None: the run failed reading them, before committing anything)."""
    tables = readable_versions(ctx)
    summary = redact(
        {
            "config": to_dict(ctx.cfg),
            "stages": [dataclasses.asdict(r) for r in reports],
            "tables": tables,
            "committed": {} if before is None else committed(ctx, before, tables),
            "reason": reason,
        }
    )
    run_id = ids.failed_run_id(summary["config"], tables, started_at.isoformat(), summary["reason"])
    summary.update(run_id=run_id, status="failed", failed_stage=stage)
    return _append_run(ctx, summary, started_at)


def _append_run(ctx: Context, summary: dict, started_at: datetime) -> dict:
    """Append ``summary`` as a ``runs`` row (keyed by its ``run_id``); it, with ``runs_row_written``."""
    finished_at = datetime.now(timezone.utc)
    row = (
        summary["run_id"],
        started_at.isoformat(),
        finished_at.isoformat(),
        round((finished_at - started_at).total_seconds(), 1),
        *(
            None if summary.get(c) is None else json.dumps(summary[c], default=str)
            for c in ("config", "stages", "tables", "curation", "yields")
        ),
        summary["status"],
        summary["reason"],
        summary.get("failed_stage"),
        None if summary.get("committed") is None else json.dumps(summary["committed"], default=str),
    )
    written = ctx.storage.append_new(RUNS.name, ctx.spark.createDataFrame([row], RUNS.schema), RUNS.key).rows
    summary["runs_row_written"] = bool(written)
    return summary


def format_summary(summary: dict) -> str:
    lines = [f"run {summary['run_id']}"]
    for s in summary["stages"]:
        label = s["stage"] if s["iteration"] is None else f"{s['stage']}@{s['iteration']}"
        lines.append(
            f"  {label:<14} {s['rows_in']:>6} in {s['rows_written']:>6} out {s['seconds']:>7.1f}s  "
            f"{json.dumps(s['by_status'], sort_keys=True)}"
        )
    lines.append(f"  tables: {json.dumps(summary['tables'])}")
    for c in summary["curation"]:
        lines.append(f"  curation: {json.dumps(c, sort_keys=True, default=str)}")
    return "\n".join(lines)
