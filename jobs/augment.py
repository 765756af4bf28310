"""The main job: web corpus -> documents -> segments -> models -> candidates -> scores -> M1, in Delta tables.

    spark-submit jobs/augment.py --config conf/local.yaml [--set dotted.key=value ...] [--stages ingest,segment]

Every stage skips work already in its output table, so the same command can be re-run after a crash or
with a new corpus drop and only does what is missing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from jobs.config import STAGES, load_pipeline_config
from jobs.session import get_session
from jobs.stages import Context, run_stage
from jobs.storage import Storage
from jobs.summary import format_summary, summarize
from udfs.config import ConfigError, to_dict


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="pipeline YAML, e.g. conf/local.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)} (run in pipeline order)")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(STAGES))
    if unknown:
        parser.error(f"--stages: unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    args.stages = [s for s in STAGES if s in chosen]
    return args


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        cfg = load_pipeline_config(args.config, args.overrides)
    except ConfigError as exc:
        sys.exit(f"config error: {exc}")
    logging.getLogger(__name__).info("resolved config: %s", json.dumps(to_dict(cfg), sort_keys=True))
    spark = get_session(cfg.spark)
    ctx = Context(spark, Storage(spark, cfg.storage.root, cfg.storage.engine), cfg)
    reports = [run_stage(ctx, stage) for stage in args.stages]
    summary = summarize(ctx, reports)
    print(format_summary(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
