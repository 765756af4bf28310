"""The summary printed at the end of a run, for a person: a table of stages, the curated pairs per iteration,
the judges' calibration, where the outputs are and the next command to try.

``format_run`` is pure formatting over the summary dict of ``jobs.summary.summarize`` (plus the calibration
rows and the places), tested without Spark; ``summary_text`` reads the calibration and calls it. A run that
raised prints ``format_failure`` of its ``failed`` row instead (``jobs.summary.record_failure``), its error in
one line by ``failure_reason``.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
from typing import Mapping, Sequence

from udfs.hardware import Device, choose_dtype
from udfs.redact import redact

TOP_REASONS = 3
MAX_REASON_CHARS = 500
# The last line of a Python traceback: "module.Type: message". A task's error reaches the driver inside Spark's
# exception, as the text of the executor's traceback.
_RAISED = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Stalled|Exit|Interrupt|Warning)): (.*)$")
_TRACEBACK = "Traceback (most recent call last):"


def failure_reason(exc: BaseException) -> str:
    """The error of a failed run in one line, ``Type: message``. For a Spark task that failed on an executor it
    is the executor's own error (``EngineStalled: augment: ...``), found in the traceback Spark passes on."""
    text = str(exc)
    if _TRACEBACK in text:
        tail = text.rsplit(_TRACEBACK, 1)[1].splitlines()
        raised = [m for line in tail if (m := _RAISED.match(line.rstrip()))]
        if raised:
            name, message = raised[-1].groups()
            return _cut(f"{name.rsplit('.', 1)[-1]}: {message.strip()}")
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return _cut(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)


def _cut(line: str) -> str:
    return line if len(line) <= MAX_REASON_CHARS else line[: MAX_REASON_CHARS - 3] + "..."


# The failed_stage of a run that failed outside its stages: reading the tables' versions before the first stage,
# or summing up after the last one.
RUN_START, RUN_SUMMARY = "start", "summary"


def format_failure(summary: Mapping) -> str:
    """What a run that raised prints: where it stopped, why, what it had committed and that ``runs`` has it."""
    recorded = "recorded in runs with status failed" if summary.get("runs_row_written", True) else "already in runs"
    where = {
        RUN_START: "at its start, reading the tables",
        RUN_SUMMARY: "after its last stage, summing up",
    }.get(summary["failed_stage"], f"in stage {summary['failed_stage']}")
    lines = [
        f"run {summary['run_id']} failed {where} ({recorded})",
        f"  {summary['reason']}",
    ]
    if summary["stages"]:
        lines += ["stages that finished:", *stage_table(summary)]
    done = summary.get("committed") or {}
    lines.append("committed before the failure:" if done else "committed before the failure: nothing")
    for table, c in done.items():
        before = "new table" if c["version_before"] is None else f"v{c['version_before']}"
        lines.append(f"  {table}: {c['rows']:+,} rows ({before} -> v{c['version']})")
    lines.append("committed work is kept: the same command resumes after the last commit")
    return "\n".join(lines)


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
        if c.get("cascade_rejected"):
            lines.append(cascade_line(c, summary.get("stages", [])))
    return lines


def seed_excluded(summary: Mapping) -> dict[str, int]:
    """Seed pairs the run's trainings left out (overlapping an evaluation set), by reason. Every model of a run
    reads the same seed file against the same sets, so the largest count of each reason is the seed's."""
    found: dict[str, int] = {}
    for s in summary["stages"]:
        extra = s.get("extra") or {}
        for counts in [extra.get("seed_excluded")] + [
            v.get("seed_excluded") for v in extra.values() if isinstance(v, dict)
        ]:
            for reason, n in (counts or {}).items():
                found[reason] = max(found.get(reason, 0), n)
    return found


def cascade_line(curation: Mapping, stages: Sequence[Mapping]) -> str:
    """The judge calls the cascade saved in one iteration, and its recall where the judge's labels exist:
    the sample's, held out from the classifier that scored it (only the run that drew the line has it)."""
    rejected, pairs = curation["cascade_rejected"], curation["pairs"]
    line = (
        f"    cascade: {rejected:,} of {pairs:,} judge calls saved ({100 * rejected / pairs:.1f} %), "
        f"{pairs - rejected:,} LLM-judged"
    )
    for s in stages:
        figures = (s.get("extra") or {}).get("cascade") or {}
        if s.get("iteration") == curation["iteration"] and "sample_recall" in figures:
            line += (
                f"; recall of the judge's kept pairs on the held-out sample {100 * figures['sample_recall']:.1f} % "
                f"({figures['sample_kept']:,} kept of {figures['sample']:,}, threshold {figures['threshold']:.3f})"
            )
    return line


def rewrite_lines(summary: Mapping) -> list[str]:
    """One line per rewrite stage run: the iteration's curated pairs rewritten, ok, and their faithfulness."""
    lines = []
    for s in summary.get("stages", []):
        figures = (s.get("extra") or {}).get("faithfulness")
        if not str(s.get("stage", "")).startswith("rewrite") or not figures:
            continue
        mean = figures.get("mean_faithfulness")
        ends = ", ".join(f"{end} {n}" for end, n in sorted(figures.get("answer_end", {}).items()))
        lines.append(
            f"  iteration {s['iteration']}: {figures['ok']:,} of {figures['rewrites']:,} rewrites ok, mean "
            f"faithfulness {'n/a' if mean is None else f'{mean:.2f}'}, new numbers per rewrite "
            f"{figures.get('mean_new_numbers') or 0:.2f} (answers ended by {ends or 'none'})"
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


def dtype_line(requested: str, master: str, device: Device) -> str:
    """What the run says about the engine's dtype (``engine.dtype``, ``udfs.hardware.choose_dtype``). Under a local
    master the engine runs on this machine (``device``), so its choice and why are known here; on a cluster each
    executor decides for its own device, and its log says what it chose."""
    if master.startswith("local"):
        return f"engine {choose_dtype(requested, device).describe()}"
    if requested == "auto":
        return "engine dtype auto: chosen by each executor for its device (its log says which and why)"
    return f"engine dtype {requested}: set in the config"


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
    if summary.get("engine_dtype"):
        lines.append(summary["engine_dtype"])
    excluded = seed_excluded(summary)
    if excluded:
        detail = ", ".join(f"{reason} {n:,}" for reason, n in sorted(excluded.items()))
        lines.append(f"seed pairs left out of training: {sum(excluded.values()):,} ({detail})")
    curation = curation_lines(summary)
    if curation:
        lines += ["curated pairs:", *curation]
    rewrites = rewrite_lines(summary)
    if rewrites:
        lines += ["rewrites:", *rewrites]
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
