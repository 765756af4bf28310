"""ingest_v2: the corpus's files -> ``documents``, one row per record, and the ``files`` ledger of what was read.

Files are split into work units (``udfs.readers.plan_units``) read by the executors (``spark_udfs.read_units``).
The corpus is listed here, on the driver (``jobs.preflight.corpus_files``: local paths or object-store URLs),
and read by the executors. A file is identified by path (or URL), size and mtime (a remote object: its ETag,
else its last-modified time): a file whose units are all in the ledger is not opened again, a changed file is
read again.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone

from jobs.preflight import corpus_files
from jobs.stages.base import Context, StageReport, append, read, table_state
from udfs import spark_udfs
from udfs.ids import file_id, unit_id
from udfs.readers import plan_units
from udfs.tables import DOCUMENTS, FILES, READ_SCHEMA, UNITS_SCHEMA, status_key


def run(ctx: Context, report: StageReport) -> None:
    """Read the work units missing from the ``files`` ledger into ``documents``, then add them to the ledger.

    Documents are appended before the ledger rows, so a crash between the two only makes the next run
    re-read those units, whose doc_ids are then skipped.
    """
    cfg = ctx.cfg.ingest
    entries = {e.url: e for e in corpus_files(ctx.cfg.input.corpus)}
    files = list(entries)
    ids = {f: file_id(f, e.size, e.version) for f, e in entries.items()}
    done_units, done_files = ledger(ctx, report)
    units_planned = plan_units([f for f in files if ids[f] not in done_files], cfg)
    units_in_file = Counter(u.path for u in units_planned)
    todo = {uid: u for u in units_planned if (uid := unit_id(ids[u.path], u.start, u.end)) not in done_units}
    report.rows_in = len(todo)
    unchanged = sum(ids[f] in done_files for f in files)
    report.extra.update(files=len(files), files_unchanged=unchanged, units_read=len(todo))
    if not todo:
        return
    units = ctx.spark.createDataFrame([(uid, u.path, u.start, u.end) for uid, u in todo.items()], UNITS_SCHEMA)
    records = units.repartition(len(todo)).mapInPandas(spark_udfs.read_units(cfg), READ_SCHEMA).cache()
    report.reads[DOCUMENTS.name] = ctx.storage.version(DOCUMENTS.name)  # read by the append, to skip known documents
    append(ctx, DOCUMENTS, records.drop("unit_id"), report)
    counts: dict[str, Counter] = {uid: Counter() for uid in todo}
    for row in records.groupBy("unit_id", "status", "reason").count().collect():
        counts[row["unit_id"]][status_key(row["status"], row["reason"])] += row["count"]
    records.unpersist()
    now = datetime.now(timezone.utc).isoformat()
    rows = [
        (
            uid,
            ids[u.path],
            u.path,
            entries[u.path].size,
            entries[u.path].mtime_ns,
            u.start,
            u.end,
            units_in_file[u.path],
            sum(counts[uid].values()),
            json.dumps(dict(sorted(counts[uid].items()))),
            now,
        )
        for uid, u in todo.items()
    ]
    written = ctx.storage.append_new(FILES.name, ctx.spark.createDataFrame(rows, FILES.schema), FILES.key)
    report.writes[FILES.name] = written.version
    report.extra.update(records_read=sum(sum(c.values()) for c in counts.values()))


def plan(ctx: Context, iteration: int | None = None) -> dict:
    files = corpus_files(ctx.cfg.input.corpus)
    _, done = ledger(ctx)
    new = [e for e in files if file_id(e.url, e.size, e.version) not in done]
    return {
        "inputs": {"corpus": ctx.cfg.input.corpus, "files": len(files)},
        "outputs": {DOCUMENTS.name: table_state(ctx, DOCUMENTS)},
        "todo": {"new_or_changed_files": len(new)},
    }


def ledger(ctx: Context, report: StageReport | None = None) -> tuple[set[str], set[str]]:
    """(ids of the units in the ledger, ids of the files all of whose units are in it)."""
    table = read(ctx, report, FILES.name)
    if table is None:
        return set(), set()
    rows = table.select("unit_id", "file_id", "units_in_file").collect()
    # A file planned into n units is done when n of its units planned that way are in the ledger.
    planned = Counter((r["file_id"], r["units_in_file"]) for r in rows)
    return {r["unit_id"] for r in rows}, {f for (f, n), have in planned.items() if have >= n}
