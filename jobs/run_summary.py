"""The summary printed at the end of a run, for a person: a table of stages, the curated pairs per iteration,
the judges' calibration, where the outputs are and the next command to try.

``format_run`` is pure formatting over the summary dict of ``jobs.summary.summarize`` (plus the calibration
rows and the places), tested without Spark; ``summary_text`` reads the calibration and calls it.
"""

from __future__ import annotations

import logging
import os
import shlex
from typing import Mapping, Sequence

from udfs.redact import redact

TOP_REASONS = 3


def stage_label(stage: Mapping) -> str:
    return stage["stage"] if stage.get("iteration") is None else f"{stage['stage']} {stage['iteration']}"


def top_drops(by_status: Mapping[str, int], n: int = TOP_REASONS) -> str:
    """The most common non-ok statuses as ``reason count`` items, the rest summed as ``other``."""
    drops = sorted(
        ((k.split(":", 1)[-1], v) for k, v in by_status.items() if k != "ok" and v), key=lambda kv: (-kv[1], kv[0])
    )
    items = [f"{reason} {count:,}" for reason, count in drops[:n]]
    rest = sum(count for _, count in drops[n:])
    return ", ".join(items + ([f"other {rest:,}"] if rest else [])) or "-"


def stage_table(summary: Mapping) -> list[str]:
    """One line per stage: rows in, rows out (ok), top drop reasons, seconds."""
    rows = [("stage", "in", "out", "ok", "seconds", "dropped (top reasons)")]
    for s in summary["stages"]:
        rows.append(
            (
                stage_label(s),
                f"{s['rows_in']:,}",
                f"{s['rows_written']:,}",
                f"{s['by_status'].get('ok', 0):,}",
                f"{s['seconds']:.1f}",
                top_drops(s["by_status"]),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [r[i].rjust(widths[i]) for i in range(1, 5)] + [r[5]]
        lines.append("  " + "  ".join(cells))
    return lines


def curation_lines(summary: Mapping) -> list[str]:
    lines = []
    for c in summary.get("curation", []):
        if "pairs" not in c:
            lines.append(f"  iteration {c['iteration']}: not scored yet ({c['rule']})")
            continue
        mean = c.get("mean_expected_score")
        mean_text = f", mean expected score {mean:.2f}" if mean is not None else ""
        lines.append(
            f"  iteration {c['iteration']}: {c['curated']:,} of {c['pairs']:,} pairs curated "
            f"({100 * c['yield']:.1f} %, {c['rule']}{mean_text})"
        )
    return lines


def calibration_lines(calibration: Sequence) -> list[str]:
    """``JudgeCalibration`` items (``jobs.report_render``) as one line per judge."""
    lines = []
    for j in calibration:
        pr = j.at_k

        def pct(x):
            return "n/a" if x is None else f"{100 * x:.0f} %"

        lines.append(
            f"  judge of iteration {j.iteration}: precision {pct(pr.precision)}, recall {pct(pr.recall)} "
            f"at k={pr.k:g} ({pr.good_kept} of {pr.kept} kept are good; "
            f"{pr.good} of {pr.pairs} labelled good)"
        )
    return lines


def next_command(config_path: str, overrides: Sequence[str]) -> str:
    """The export of this run's data, with the run's overrides (credentials masked: the line is printed)."""
    sets = "".join(f" --set {shlex.quote(o)}" for o in redact(list(overrides)))
    return (
        f"spark-submit jobs/export.py --config {config_path}{sets} --out work/export   "
        "# the last iteration's training set as JSONL + Parquet"
    )


def format_run(summary: Mapping, calibration: Sequence, places: Mapping[str, str], next_cmd: str) -> str:
    """The whole end-of-run text."""
    lines = [f"run {summary['run_id']}" + ("" if summary.get("runs_row_written", True) else " (nothing new)")]
    lines += stage_table(summary)
    curation = curation_lines(summary)
    if curation:
        lines += ["curated pairs:", *curation]
    if calibration:
        lines += ["judge calibration:", *calibration_lines(calibration)]
    lines.append("where:")
    width = max(len(k) for k in places)
    lines += [f"  {k.ljust(width)}  {v}" for k, v in places.items()]
    lines += ["next:", f"  {next_cmd}"]
    return "\n".join(lines)


def places(cfg, logs_dir: str, report_path: str | None) -> dict[str, str]:
    """Where a run's outputs are (``cfg``: a ``jobs.config.PipelineConfig``)."""
    models = os.path.abspath(cfg.models_dir)
    found = {"tables": cfg.storage.root, "models": models}
    if report_path:
        found["report"] = f"{report_path}  (open it in a browser: xdg-open / open)"
    found["mlflow"] = f"mlflow ui --backend-store-uri sqlite:///{models}/mlruns/mlflow.db"
    found["logs"] = logs_dir
    return found


def summary_text(
    ctx, summary: Mapping, logs_dir: str, report_path: str | None, config_path: str, overrides: Sequence[str]
) -> str:
    """``format_run`` with the judges' calibration read from the tables (``ctx``: a ``jobs.stages.Context``)."""
    from jobs.report import RunTables, calibration, curation_rule  # Spark-side: only here

    column, k = curation_rule(ctx.cfg)
    try:
        judges = calibration(ctx, RunTables(ctx, summary["run_id"]), column, k, [])
    except Exception:  # the summary must print even when calibration cannot be read; the log has why
        logging.getLogger(__name__).warning("judge calibration not shown", exc_info=True, extra={"console": False})
        judges = []
    return format_run(summary, judges, places(ctx.cfg, logs_dir, report_path), next_command(config_path, overrides))
