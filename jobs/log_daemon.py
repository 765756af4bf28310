"""PySpark's worker daemon with the workers' stdout and stderr sent to the run's ``workers.log``.

Set as ``spark.python.daemon.module`` in local mode by ``jobs.console``: vLLM, torch and transformers print
from the Python workers, whose output Spark otherwise copies to the job's console.
"""

from __future__ import annotations

import os

from pyspark import daemon


def _logged_worker(sock, authenticated):
    # After the fork: the daemon itself keeps stdout, on which it reported its port to the JVM.
    path = os.environ.get("HUMPBACK_WORKER_LOG")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    return _worker(sock, authenticated)


_worker = daemon.worker
daemon.worker = _logged_worker

if __name__ == "__main__":
    daemon.manager()
