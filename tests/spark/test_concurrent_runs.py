"""Two jobs on one storage root started together (a scheduled run overlapping a manual one) leave every key
exactly once: each keyed commit must follow the version its run read, and a run that finds another's commit
first drops the keys it added (``jobs.storage``).

The overlap is made, not hoped for: the corpus is served over HTTP by a server that answers no read until both
runs are waiting on one (each run reads with one task, so two waiting reads are the two runs), and the test
proves that both were reading the input before any table had a commit."""

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
import time

from deltalake import DeltaTable

from tests.conftest import ROOT, sample_pages, write_warc

BARRIER_SECONDS = 600  # how long the first run's read waits for the second's before the server gives up


class Barrier:
    """Holds every GET until two are waiting at once; records when that happened (None: it never did)."""

    def __init__(self):
        self.waiting = 0
        self.met_at: float | None = None
        self.seen: list[str] = []  # the requests, for a failure's message
        self.cond = threading.Condition()

    def wait(self) -> None:
        with self.cond:
            self.waiting += 1
            if self.waiting >= 2 and self.met_at is None:
                self.met_at = time.time()
                self.cond.notify_all()
            self.cond.wait_for(lambda: self.met_at is not None, timeout=BARRIER_SECONDS)


class Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, barrier: Barrier, **kwargs):
        self.barrier = barrier
        super().__init__(*args, **kwargs)

    def do_GET(self):
        self.barrier.seen.append(f"{time.strftime('%H:%M:%S')} GET {self.headers.get('Range')}")
        self.barrier.wait()
        super().do_GET()

    def do_HEAD(self):
        self.barrier.seen.append(f"{time.strftime('%H:%M:%S')} HEAD")
        super().do_HEAD()

    def log_message(self, *args):
        """Quiet: the runs' own logs say what they read."""


def test_two_runs_of_ingest_and_segment_started_together_write_every_key_once(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(write_warc(tmp_path / "crawl.warc.gz", sample_pages()), served / "crawl.warc.gz")
    barrier = Barrier()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(served), barrier=barrier)
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    root = tmp_path / "tables"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYSPARK_PYTHON": sys.executable}
    try:
        runs = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "jobs/augment.py"),
                    "--config",
                    str(ROOT / "conf/tiny.yaml"),
                    "--set",
                    f"input.corpus=http://127.0.0.1:{server.server_address[1]}/crawl.warc.gz",
                    "--set",
                    f"storage.root={root}",
                    "--set",
                    f"models.dir={tmp_path}/models",
                    "--set",
                    "report.after_run=false",
                    "--set",
                    "spark.master=local[1]",
                    "--log-dir",
                    str(tmp_path / f"logs-{i}"),
                    "--stages",
                    "ingest,segment",
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for i in range(2)
        ]
        outputs = [run.communicate(timeout=900)[0] for run in runs]
    finally:
        server.shutdown()
        server.server_close()
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert barrier.met_at is not None, f"the two runs were never reading the input at the same time: {barrier.seen}"
    for name, key in (("documents", "doc_id"), ("files", "unit_id"), ("segments", "segment_id")):
        table = DeltaTable(str(root / name))
        rows = table.to_pandas()
        assert len(rows) > 0 and rows[key].is_unique, f"{name}: {len(rows)} rows, {rows[key].nunique()} keys"
        # both runs were reading the corpus before this table had any commit: they overlapped
        first_commit = min(commit["timestamp"] for commit in table.history()) / 1000
        assert first_commit > barrier.met_at, f"{name} had a commit before both runs were reading"
