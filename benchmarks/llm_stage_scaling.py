"""The whole job with the fake engine on 1x and 4x a crawl of distinct pages: seconds and rows/s per stage.

    python benchmarks/llm_stage_scaling.py [--warc /work/shared/data/python-3.11-docs.warc.gz] [--work work/bench]

Inputs: ``benchmarks/corpus_vs_datatrove.build_inputs`` with 1 and 4 files (each file every HTML page of
``--warc`` once, with its own URLs and 25 % of its words replaced: every page distinct). Each size runs
``jobs.augment.main`` on ``conf/tiny.yaml`` with ``engine.name: fake`` and ``engine.commit_rows: 500`` (and
``--set`` extras) in a fresh process on fresh tables; per stage it prints the stage's own seconds (from the
run summary), rows written and rows/s, then the 4x/1x time ratio of each LLM stage and train.
Targets (issue 25): augment and curate >= 1,000 pairs/s at 4x on 2 cores; every LLM stage and train <= 4.4x.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.corpus_vs_datatrove import build_inputs  # noqa: E402

LLM_STAGES = ("augment_v1", "likelihood_v1", "curate_v1", "rewrite_v1", "train_v1")
_JOB = (
    "import json, sys; from jobs.augment import main; print('SUMMARY ' + json.dumps(main(sys.argv[1:]), default=str))"
)


def run_job(corpus: Path, work: Path, extra: list[str]) -> list[dict]:
    """The stage reports of one whole job on ``corpus`` with fresh tables and models under ``work``."""
    shutil.rmtree(work, ignore_errors=True)
    sets = {
        "input.corpus": str(corpus),
        "storage.root": str(work / "tables"),
        "models.dir": str(work / "models"),
        "engine.name": "fake",
        "engine.commit_rows": "500",
        "report.after_run": "false",
    }
    args = ["--config", str(ROOT / "conf/tiny.yaml")]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    for item in extra:
        args += ["--set", item]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYSPARK_PYTHON": sys.executable}
    out = subprocess.run(
        [sys.executable, "-c", _JOB, *args], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    summary = json.loads(next(line for line in out.splitlines() if line.startswith("SUMMARY "))[8:])
    return summary["stages"]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warc", type=Path, default=Path("/work/shared/data/python-3.11-docs.warc.gz"))
    parser.add_argument("--work", type=Path, default=ROOT / "work/bench")
    parser.add_argument("--set", dest="extra", action="append", default=[], help="extra dotted.key=value")
    args = parser.parse_args(argv)
    results: dict[str, dict] = {}
    for files in (1, 4):
        corpus, pages = build_inputs(args.warc, files, args.work)
        stages = run_job(corpus, args.work / f"scaling-{files}x", args.extra)
        label = f"{files}x"
        results[label] = {"pages": pages, "stages": {}}
        for s in stages:
            name = s["stage"] + ("" if s.get("iteration") is None else f"[{s['iteration']}]")
            rate = round(s["rows_written"] / s["seconds"], 1) if s["seconds"] else None
            results[label]["stages"][name] = {"seconds": s["seconds"], "rows": s["rows_written"], "rows_per_s": rate}
            print(f"{label} ({pages} pages) {name:<18} {s['seconds']:8.1f} s {s['rows_written']:8d} rows {rate} rows/s")
    one, four = results["1x"]["stages"], results["4x"]["stages"]
    ratios = {
        name: round(four[name]["seconds"] / one[name]["seconds"], 2)
        for name in one
        if name.split("[")[0] in LLM_STAGES and name in four and one[name]["seconds"]
    }
    results["ratio_4x_over_1x"] = ratios
    print("4x / 1x seconds:", json.dumps(ratios))
    return results


if __name__ == "__main__":
    main()
