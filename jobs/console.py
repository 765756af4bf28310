"""What the job prints and where everything else goes: a quiet console and a complete log folder.

The console shows our own messages (loggers ``jobs``, ``udfs``, ``training``) at INFO and anything else at
WARNING or above that is not on the list of known harmless warnings. Everything (Spark's log4j2, py4j, vLLM,
transformers, torch, the Python workers' stdout and stderr, tracebacks) goes to the run's log folder,
``<storage.root>/logs/<UTC time>-<short id>/`` (the run id is only known at the end, when the tables are
written). ``verbose=True`` brings every log back to the console.

Files in the folder: ``job.log`` (Python, driver), ``spark.log`` (the JVM), ``workers.log`` (Python workers
in local mode: vLLM, torch, transformers), plus the configs that route them (``log4j2.properties``,
``vllm_logging.json``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from jobs import progress
from jobs.catalog import driver_path

OUR_LOGGERS = ("jobs", "udfs", "training", "__main__")
FILE_ONLY = {"console": False}  # ``extra=`` of a record meant for the log file only (tracebacks, the full config)
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Warnings that need no action from the user: they stay in the log file. (logger prefix, message regex)
HARMLESS = (
    ("vllm", r"LD_PRELOAD|not found in LD_PRELOAD|libtcmalloc|libiomp"),
    ("vllm", r"cuda|CUDA|GPU|triton|Triton"),
    ("vllm", r"[Pp]refix caching|chunked prefill|enforce.eager|CUDA graph|async output"),
    ("py4j", r".*"),
    ("transformers", r"generation flags|attention mask|pad_token_id|torch_dtype"),
    ("torch", r"TypedStorage|not compiled with|cpu_offload"),
    ("mlflow", r"filesystem tracking backend|Model logged without a signature|git"),
    ("py.warnings", r"FutureWarning|DeprecationWarning|UserWarning: .*(deprecated|TypedStorage)"),
)
# The environment variables setup_logging sets for this process and the ones it starts.
ENVIRONMENT = (
    "VLLM_LOGGING_CONFIG_PATH",
    "HUMPBACK_WORKER_LOG",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS",
    "HF_HUB_DISABLE_PROGRESS_BARS",
    "MLFLOW_CONFIGURE_LOGGING",
)

# Our own INFO lines that the progress display already shows (jobs.progress prints each stage's start).
SHOWN_BY_PROGRESS = (("jobs.stages", r"^stage .*: start$|^\w+: chunk \d+/\d+ committed"),)
# The training loops' step lines, once the progress display shows their steps (``progress.training_step``).
TRAINING_STEPS = (("training", r"^(pretrain )?step \d+/\d+ loss|^checkpoint at step \d+"),)


@dataclass(frozen=True)
class RunLogs:
    """Where one run's logs are, and whether the console shows everything."""

    dir: Path
    verbose: bool = False

    @property
    def job_log(self) -> Path:
        return self.dir / "job.log"

    @property
    def spark_log(self) -> Path:
        return self.dir / "spark.log"

    @property
    def workers_log(self) -> Path:
        return self.dir / "workers.log"


def log_folder(storage_root: str, configured: str | None = None, now: datetime | None = None) -> Path:
    """``<configured or storage.root>/logs/<UTC time>-<short id>`` (a ``dbfs:/`` root through its /dbfs FUSE
    path); a Unity Catalog or object store root (no folder to write in) logs under ``./work/logs`` instead."""
    local = driver_path(storage_root)
    if configured:
        base = Path(configured)
    elif local is None:
        base = Path("work/logs")
    else:
        base = Path(local) / "logs"
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return (base / f"{stamp}-{secrets.token_hex(3)}").absolute()


class ConsoleFilter(logging.Filter):
    """Our loggers at INFO, others at WARNING+ unless harmless; everything when verbose."""

    def __init__(self, verbose: bool = False):
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if self.verbose:
            return True
        if getattr(record, "console", True) is False:
            return False
        if record.name.split(".")[0] in OUR_LOGGERS:
            message = record.getMessage()
            if _matches(TRAINING_STEPS, record.name, message) and progress.shows_training_steps():
                return False
            return record.levelno >= logging.INFO and not _matches(SHOWN_BY_PROGRESS, record.name, message)
        return record.levelno >= logging.WARNING and not is_harmless(record.name, record.getMessage())


def is_harmless(logger: str, message: str) -> bool:
    """True for a warning on the known harmless list (kept in the log file, not shown)."""
    return _matches(HARMLESS, logger, message)


def _matches(rules, logger: str, message: str) -> bool:
    return any(
        (logger == name or logger.startswith(name + ".")) and re.search(pattern, message) for name, pattern in rules
    )


class OneLineFormatter(logging.Formatter):
    """The console's format: level and message, a traceback reduced to its last line (the full one is in the
    log file)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            message += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]}; traceback in the log file)"
        prefix = "" if record.levelno == logging.INFO else f"{record.levelname}: "
        return f"{prefix}{message}"


class _Stderr:
    """``sys.stderr`` as it is at each write: the live progress display swaps it to print above itself."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def setup_logging(
    storage_root: str, verbose: bool = False, configured: str | None = None, master: str | None = None
) -> RunLogs:
    """Route Python logging (console + job.log), and prepare the JVM's and the Python workers' logs (through
    environment variables, read when the JVM and the workers start). Call before the SparkSession exists."""
    logs = RunLogs(log_folder(storage_root, configured), verbose)
    logs.dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_humpback", False):
            root.removeHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    file_handler = logging.FileHandler(logs.job_log, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter(FORMAT))
    console = logging.StreamHandler(_Stderr())
    console.addFilter(ConsoleFilter(verbose))
    console.setFormatter(logging.Formatter(FORMAT) if verbose else OneLineFormatter())
    for handler in (file_handler, console):
        handler._humpback = True
        root.addHandler(handler)
    logging.captureWarnings(True)  # warnings.warn -> logger py.warnings -> the same filter
    (logs.dir / "log4j2.properties").write_text(log4j2_properties(logs), encoding="utf-8")
    (logs.dir / "vllm_logging.json").write_text(json.dumps(vllm_logging_config(logs), indent=1), encoding="utf-8")
    if not verbose:
        # Read by every vLLM process that starts after this (driver and local workers inherit the environment).
        os.environ["VLLM_LOGGING_CONFIG_PATH"] = str(logs.dir / "vllm_logging.json")
        os.environ["HUMPBACK_WORKER_LOG"] = str(logs.workers_log)
        os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
        # Hugging Face progress bars (loading weights, ...) write carriage returns straight to stderr. The
        # variable reaches processes that import them later; an already imported transformers is told directly.
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        if "transformers" in sys.modules:
            sys.modules["transformers"].utils.logging.disable_progress_bar()
        # MLflow gives its loggers their own stderr handler (INFO lines about its database) unless told not to;
        # without it their records come here, through the filter and into job.log.
        os.environ["MLFLOW_CONFIGURE_LOGGING"] = "false"
        for name in ("mlflow", "alembic", "sqlalchemy.engine", "huey"):
            if "mlflow" in sys.modules:  # imported already: undo what it configured
                logging.getLogger(name).handlers = []
                logging.getLogger(name).propagate = True
        if "vllm" in sys.modules:  # configured at its import (its own stderr handler, or an earlier run's file)
            logging.getLogger("vllm").handlers = []
            logging.getLogger("vllm").propagate = True
    return logs


def log4j2_properties(logs: RunLogs) -> str:
    """Spark's log4j2 config: everything to spark.log; the console gets errors only (every line when verbose)."""
    console_level = "INFO" if logs.verbose else "ERROR"
    return "\n".join(
        [
            "status = error",
            "rootLogger.level = info",
            "rootLogger.appenderRef.file.ref = file",
            "rootLogger.appenderRef.console.ref = console",
            "appender.file.type = File",
            "appender.file.name = file",
            f"appender.file.fileName = {logs.spark_log}",
            "appender.file.layout.type = PatternLayout",
            "appender.file.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex",
            "appender.console.type = Console",
            "appender.console.name = console",
            "appender.console.target = SYSTEM_ERR",
            "appender.console.layout.type = PatternLayout",
            "appender.console.layout.pattern = spark %p %c{1}: %m%n%throwable{short.message}",
            "appender.console.filter.threshold.type = ThresholdFilter",
            f"appender.console.filter.threshold.level = {console_level}",
            # Known noise at ERROR level that needs no action.
            "logger.shutdown.name = org.apache.spark.util.ShutdownHookManager",
            "logger.shutdown.level = off",
            "",
        ]
    )


def vllm_logging_config(logs: RunLogs) -> dict:
    """vLLM's ``VLLM_LOGGING_CONFIG_PATH`` dictConfig: its loggers write to workers.log, not to stdout."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": FORMAT}},
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "filename": str(logs.workers_log),
                "formatter": "plain",
                "level": "DEBUG",
            }
        },
        "loggers": {"vllm": {"handlers": ["file"], "level": "INFO", "propagate": False}},
    }


def java_options(logs: RunLogs) -> str:
    """The JVM flag that points log4j2 at the run's config (for a JVM not started yet)."""
    return f"-Dlog4j2.configurationFile=file:{logs.dir / 'log4j2.properties'}"


def session_conf(logs: RunLogs, master: str) -> dict[str, str]:
    """Spark settings that send the JVM's and (in local mode) the Python workers' output to the log folder."""
    # Spark's own progress bar would draw over ours.
    conf = {"spark.driver.extraJavaOptions": java_options(logs), "spark.ui.showConsoleProgress": "false"}
    if master.startswith("local") and not logs.verbose:
        # Under spark-submit the JVM (which starts the workers) was started before setup_logging set these.
        conf["spark.python.daemon.module"] = "jobs.log_daemon"
        for name in ("HUMPBACK_WORKER_LOG", "VLLM_LOGGING_CONFIG_PATH"):
            conf[f"spark.executorEnv.{name}"] = os.environ[name]
    return conf


def reconfigure_jvm(spark_context_cls, logs: RunLogs) -> None:
    """Point an already started JVM (spark-submit starts it before Python) at the run's log4j2 config."""
    jvm = spark_context_cls._jvm
    location = f"file:{logs.dir / 'log4j2.properties'}"
    # Spark reloads the configuration from this property when it (re)initialises logging for the SparkContext.
    jvm.java.lang.System.setProperty("log4j2.configurationFile", location)
    # One logger context per class loader: Spark's classes log through another one than py4j's calls see.
    for context in jvm.org.apache.logging.log4j.LogManager.getFactory().getSelector().getLoggerContexts():
        context.setConfigLocation(jvm.java.net.URI(location))
    # spark-submit initialised log4j2 with Spark's defaults and remembers that it did: unless told otherwise
    # the SparkContext would load those defaults again over ours.
    # (A Spark internal: where it is missing, the console keeps Spark's default INFO lines; nothing breaks.)
    try:
        spark_logging = getattr(getattr(jvm.org.apache.spark.internal, "Logging$"), "MODULE$")
        getattr(spark_logging, "org$apache$spark$internal$Logging$$defaultSparkLog4jConfig_$eq")(False)
    except Exception:  # py4j raises its own error types for a missing member
        logging.getLogger(__name__).warning(
            "could not keep Spark's INFO lines off the console", exc_info=True, extra=FILE_ONLY
        )


def error_line(message: str, logs: RunLogs | None) -> str:
    """The one line a user sees for a failure whose traceback went to the log file."""
    where = f" (traceback: {logs.job_log})" if logs is not None else ""
    return f"error: {message}{where}"
