"""The main job: web corpus -> documents -> segments -> models -> candidates -> (scores -> M_i) per iteration.

    spark-submit jobs/augment.py --config conf/local.yaml [--set dotted.key=value ...]
        [--stages ingest,segment,models,augment,curate,rewrite,train] [--iterations 1,2] [--dry-run] [--verbose]

One command runs the paper's loop M0 -> A(1) -> M1 -> A(2) -> M2 (``iterations.count``): the curate, rewrite
(``rewrite.enabled``) and train stages run once per iteration, in turn. Every stage skips work already in
its output table and every model already trained on the same data, so the same command resumes after a crash
or a stop anywhere, and a new corpus drop only costs its new documents (the models then retrain on the grown
pool). ``--dry-run`` prints whether each stage fits the configured GPU (``jobs.fit``, from the models'
config.json alone, before inputs or Spark are looked at), what would run and what is already done, and runs
nothing; without it the job refuses, before any Spark work, a config in which a stage does not fit. A stage that raises
still leaves a ``runs`` row, with status ``failed``, its error and what had been committed; the job then
exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import datetime, timezone

from jobs import console, fit, preflight, progress
from jobs.config import job_arguments, load_pipeline_config
from jobs.report import write_report
from jobs.run_summary import RUN_START, RUN_SUMMARY, dtype_line, failure_reason, format_failure, summary_text
from jobs.session import get_session
from jobs.stages import BY_NAME, STAGE_NAMES, Context, MissingInput, active, format_plan, make_plan, run_stage, schedule
from jobs.storage import Storage
from jobs.summary import record_failure, summarize, table_versions
from udfs.config import ConfigError, to_dict
from udfs.redact import redact

CORPUS_STAGES = frozenset({"ingest", "segment"})  # the stages that use no model
log = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = job_arguments(__doc__)
    parser.add_argument(
        "--stages",
        default=",".join(STAGE_NAMES),
        help=f"comma-separated subset of {','.join(STAGE_NAMES)} (run in pipeline order)",
    )
    parser.add_argument(
        "--iterations",
        default="",
        help="comma-separated iterations for curate and train (default: 1..iterations.count)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan and what is already done; run nothing")
    parser.add_argument("--verbose", action="store_true", help="every log (Spark, vLLM, ...) on the console too")
    parser.add_argument("--log-dir", default=None, help="folder for the run's log folder (default <storage.root>/logs)")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(STAGE_NAMES))
    if unknown:
        parser.error(f"--stages: unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGE_NAMES)}")
    args.stages = [s for s in STAGE_NAMES if s in chosen]
    try:
        args.iterations = sorted({int(i) for i in args.iterations.split(",") if i.strip()})
    except ValueError:
        parser.error(f"--iterations: expected comma-separated numbers, got {args.iterations!r}")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    try:
        cfg = load_pipeline_config(args.config, args.overrides)
        # from config.json alone, before inputs and Spark: a laptop's dry run answers it for any cluster
        fits = fit.stage_fits(cfg, list(dict.fromkeys(name for name, _ in schedule(active(cfg, args.stages), [1]))))
        if args.dry_run:
            print(fit.format_fits(cfg, fits), flush=True)
        elif fit.refusal(fits):
            raise preflight.UsageError(fit.refusal(fits))
        preflight.check_config(cfg)
    except (ConfigError, preflight.UsageError) as exc:
        sys.exit(f"config error: {exc}" if isinstance(exc, ConfigError) else f"error: {exc}")
    iterations = args.iterations or list(range(1, cfg.iterations.count + 1))
    if not set(iterations) <= set(range(1, cfg.iterations.count + 1)):
        sys.exit(f"--iterations: {iterations} is not within 1..{cfg.iterations.count} (iterations.count)")
    logs = console.setup_logging(cfg.storage.root, args.verbose, args.log_dir)
    log.info("logs: %s", logs.dir)
    try:
        return run(args, cfg, iterations, logs)
    except MissingInput as exc:
        sys.exit(f"cannot run: {exc}")
    except Exception as exc:  # the traceback goes to the log file; the console gets one line
        log.error("run failed", exc_info=True, extra=console.FILE_ONLY)
        sys.exit(console.error_line(preflight.describe_failure(exc) or failure_reason(exc), logs))


def run(args: argparse.Namespace, cfg, iterations: list[int], logs: console.RunLogs) -> dict:
    log.info("resolved config: %s", json.dumps(redact(to_dict(cfg)), sort_keys=True), extra=console.FILE_ONLY)
    spark = get_session(cfg.spark, logs)
    warning = preflight.decontamination_warning(cfg, spark.sparkContext.master)
    if warning:
        log.warning(warning)
    ctx = Context(spark, Storage(spark, cfg.storage.root, cfg.storage.engine), cfg)
    stages = active(cfg, args.stages)
    for name in sorted(set(args.stages) - set(stages)):  # e.g. a bundle task of an optional stage that is off
        log.info("stage %s: off in this config, not run", name)
    order = schedule(stages, iterations)
    dtype = None
    if set(stages) - CORPUS_STAGES:  # a stage that serves or trains a model
        from training.train import torch_device  # the driver trains: torch is loaded anyway

        dtype = dtype_line(cfg.engine.dtype, spark.sparkContext.master, torch_device())
        log.info(dtype)
    if args.dry_run:
        plan = redact(make_plan(ctx, order))
        print(format_plan(plan), flush=True)
        return plan
    started_at = datetime.now(timezone.utc)
    before: dict[str, int | None] | None = None
    reports: list = []
    where = RUN_START  # what the run was doing: a failure from here on leaves a failed runs row naming it
    try:
        before = table_versions(ctx)
        for stage, iteration in order:
            versioned = BY_NAME[stage].versioned
            where = versioned if iteration is None else f"{versioned} (iteration {iteration})"
            with progress.stage(spark, stage if iteration is None else f"{stage} (iteration {iteration})"):
                reports.append(run_stage(ctx, stage, iteration))
        where = RUN_SUMMARY
        summary = summarize(ctx, reports, started_at)
    except Exception as exc:
        record_failed_run(ctx, reports, started_at, before, where, exc)
        raise
    summary["engine_dtype"] = dtype
    report = write_report(ctx, summary["run_id"]) if cfg.report.after_run else None
    print(summary_text(ctx, summary, str(logs.dir), report and str(report), args.config, args.overrides), flush=True)
    return summary


def record_failed_run(
    ctx: Context, reports: list, started_at: datetime, before: dict | None, stage: str, exc: Exception
) -> None:
    """Append the ``failed`` runs row of ``exc`` and print what it says. The original error is what the job
    reports: a failure to record it (the storage itself may be what broke) is only logged."""
    try:
        failed = record_failure(ctx, reports, started_at, before, stage, failure_reason(exc))
    except Exception as err:
        log.warning("the failed run could not be recorded in runs: %s", failure_reason(err))
        log.info("recording the failed run", exc_info=True, extra=console.FILE_ONLY)
        return
    print(format_failure(failed), flush=True)


if __name__ == "__main__":
    main()
