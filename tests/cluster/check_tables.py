"""Checks a standalone-cluster run (tests/cluster/standalone_cluster.sh): its tables and where its tasks ran.

    python tests/cluster/check_tables.py <tables dir> <worker work dir> [<worker work dir> ...]

Runs with the node interpreter (dependencies only, not the project), so it reads the tables with delta-rs
alone. Prints one JSON line of figures; exits non-zero naming the first failed check.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from deltalake import DeltaTable

KEYS = {
    "documents": "doc_id",
    "segments": "segment_id",
    "candidates": "generation_id",
    "scores": "score_id",
    "runs": "run_id",
}
STATUSES = {"ok", "dropped", "error"}


def check(condition: bool, message: str) -> None:
    if not condition:
        sys.exit(f"check failed: {message}")


def check_tables(root: Path) -> dict:
    tables = {name: DeltaTable(str(root / name)).to_pandas() for name in KEYS if (root / name / "_delta_log").is_dir()}
    check("runs" in tables and len(tables["runs"]) >= 1, "the run appended its summary to runs")
    for name, key in KEYS.items():
        if name in tables:
            check(tables[name][key].is_unique, f"{name}.{key} is unique")
    for name in ("documents", "segments", "candidates", "scores"):
        if name in tables:
            rows = tables[name]
            check(set(rows["status"]) <= STATUSES, f"{name}: every status is one of {sorted(STATUSES)}")
            check(rows.loc[rows["status"] != "ok", "reason"].notna().all(), f"{name}: every row not ok has a reason")
    ran = {
        s["stage"].rsplit("_v", 1)[0] for s in json.loads(tables["runs"].sort_values("finished_at")["stages"].iloc[-1])
    }
    ok = {name: rows[rows["status"] == "ok"] for name, rows in tables.items() if "status" in rows}
    if "ingest" in ran:
        check(len(ok.get("documents", [])) > 0, "ingest wrote ok documents")
    if "segment" in ran:
        check(len(ok.get("segments", [])) > 0, "segment wrote ok segments")
        check(set(ok["segments"]["doc_id"]) <= set(ok["documents"]["doc_id"]), "segments come from ok documents")
    if "augment" in ran:
        check(
            set(tables["candidates"]["segment_id"]) == set(ok["segments"]["segment_id"]), "one candidate per ok segment"
        )
    if "curate" in ran:
        check(
            set(tables["scores"]["generation_id"]) == set(ok["candidates"]["generation_id"]),
            "one score per ok candidate",
        )
    return {
        "stages": sorted(ran),
        "rows": {name: len(rows) for name, rows in tables.items()},
        "ok": {name: len(rows) for name, rows in ok.items()},
    }


def check_executors(workers: list[Path]) -> dict:
    """Every worker ran an executor that fetched the shipped wheel and finished tasks."""
    tasks = {}
    for worker in workers:
        executors = [d for d in worker.glob("app-*/*") if (d / "humpback_spark.zip").is_file()]
        check(bool(executors), f"{worker.name}: an executor received humpback_spark.zip")
        tasks[worker.name] = sum((d / "stderr").read_text(errors="replace").count("Finished task") for d in executors)
        check(tasks[worker.name] > 0, f"{worker.name}: its executor finished tasks")
    return {"tasks_per_worker": tasks}


if __name__ == "__main__":
    figures = check_tables(Path(sys.argv[1])) | check_executors([Path(p) for p in sys.argv[2:]])
    print("checks passed:", json.dumps(figures, sort_keys=True))
