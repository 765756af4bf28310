"""Progress of the running stage on the console: one line at its start, then a live display while it runs.

The display shows what is known: the Spark tasks of the active jobs (from ``SparkContext.statusTracker``,
polled by a background thread, so every stage has it without code of its own), rows done / total with rows/s,
tokens/s and an ETA where a stage reports them at its chunk commits (``update``), and the training step /
total with the loss (``training_step``). On a terminal it is a ``rich`` live line; elsewhere (CI, Databricks,
a log file) a plain line every ``HUMPBACK_PROGRESS_SECONDS`` (10) seconds when something changed and every minute
when nothing did, never control characters.

    with progress.stage(spark, "augment"):   # jobs/augment.py, around each stage
        ...
    progress.update("augment", done=120, total=400, tokens=5400)   # from a stage, after each chunk commit
    progress.training_step(step=30, total=100, loss=2.41)          # from the training loop, after each step
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator

from training.progress import STEP_HOOKS

POLL_SECONDS = 0.5
HEARTBEATS = 6  # plain output: an unchanged line is repeated after this many intervals


@dataclass
class StageProgress:
    """What is known about the running stage; every field is optional."""

    label: str
    started: float = field(default_factory=time.monotonic)
    rows_done: int | None = None
    rows_total: int | None = None
    tokens: int | None = None
    step: int | None = None
    steps_total: int | None = None
    loss: float | None = None
    tasks_done: int = 0
    tasks_total: int = 0
    rows_base: tuple[float, int] | None = None  # (time, rows) of the first report: rates count from there
    tokens_base: tuple[float, int] | None = None

    def describe(self, now: float | None = None) -> str:
        """One line: the stage's counts, rates and ETA (plain text, no control characters)."""
        now = time.monotonic() if now is None else now
        parts = [self.label]
        if self.rows_total is not None and self.rows_done is not None:
            parts.append(f"{self.rows_done}/{self.rows_total} rows")
            rate = _rate(self.rows_base, self.rows_done, now)
            if rate:
                parts.append(f"{rate:.1f} rows/s")
            tok_rate = _rate(self.tokens_base, self.tokens, now) if self.tokens is not None else None
            if tok_rate:
                parts.append(f"{tok_rate:.0f} tokens/s")
            if rate and self.rows_total > self.rows_done:
                parts.append(f"ETA {format_seconds((self.rows_total - self.rows_done) / rate)}")
        if self.step is not None and self.steps_total:
            parts.append(f"step {self.step}/{self.steps_total}")
            if self.loss is not None:
                parts.append(f"loss {self.loss:.3f}")
            elapsed = now - self.started
            if self.step and self.steps_total > self.step:
                parts.append(f"ETA {format_seconds(elapsed / self.step * (self.steps_total - self.step))}")
        if self.tasks_total:
            parts.append(f"spark tasks {self.tasks_done}/{self.tasks_total}")
        parts.append(f"{format_seconds(now - self.started)} elapsed")
        return "  ".join(parts)


def _rate(base: tuple[float, int] | None, value: int | None, now: float) -> float | None:
    if base is None or value is None or now - base[0] < 1.0 or value <= base[1]:
        return None
    return (value - base[1]) / (now - base[0])


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class _Display:
    """The running stage's display: rich on a terminal, plain lines otherwise."""

    def __init__(self, current: StageProgress, spark=None, stream=None):
        self.current = current
        self.spark = spark
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() and os.environ.get("TERM") != "dumb"
        self.interval = float(os.environ.get("HUMPBACK_PROGRESS_SECONDS", "10"))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self.lock = threading.Lock()

    def __enter__(self) -> _Display:
        print(f"> {self.current.label}", file=self.stream, flush=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=5)

    def poll_spark(self) -> None:
        if self.spark is None:
            return
        try:
            tracker = self.spark.sparkContext.statusTracker()
            infos = [tracker.getStageInfo(s) for s in tracker.getActiveStageIds()]
        except Exception:  # the session is stopping; progress is best effort
            return
        infos = [i for i in infos if i is not None]
        with self.lock:
            self.current.tasks_done = sum(i.numCompletedTasks for i in infos)
            self.current.tasks_total = sum(i.numTasks for i in infos)

    def _run(self) -> None:
        if self.tty:
            self._run_rich()
        else:
            self._run_plain()

    def _run_plain(self) -> None:
        # A line when the counts changed (at most every interval), else one every HEARTBEATS intervals: a
        # long step with nothing to count still shows it is alive.
        last_line, last_check, last_print = None, time.monotonic(), time.monotonic()
        while not self.stop.wait(POLL_SECONDS):
            self.poll_spark()
            now = time.monotonic()
            if now - last_check < self.interval:
                continue
            last_check = now
            line = self.current.describe()
            changed = line.split("  ")[:-1] != (last_line or "").split("  ")[:-1]
            if changed or now - last_print >= HEARTBEATS * self.interval:
                print(f"  {line}", file=self.stream, flush=True)
                last_line, last_print = line, now

    def _run_rich(self) -> None:
        from rich.console import Console
        from rich.live import Live

        console = Console(file=self.stream)
        with Live(
            console=console, refresh_per_second=2, transient=True, redirect_stdout=True, redirect_stderr=True
        ) as live:
            while not self.stop.wait(POLL_SECONDS):
                self.poll_spark()
                live.update(f"[cyan]{self.current.describe()}[/cyan]")


_active: _Display | None = None


@contextlib.contextmanager
def stage(spark, label: str, stream=None) -> Iterator[StageProgress]:
    """Show ``label``'s start line and its live progress until the block ends."""
    global _active
    display = _Display(StageProgress(label), spark, stream)
    _active = display
    try:
        with display:
            yield display.current
    finally:
        _active = None


def update(stage_name: str, done: int, total: int, tokens: int | None = None) -> None:
    """Rows done of ``total`` (and LLM tokens so far) for the running stage; a no-op when nothing displays."""
    display = _active
    if display is None:
        return
    now = time.monotonic()
    with display.lock:
        cur = display.current
        if cur.rows_base is None:
            cur.rows_base = (now, done) if done else (cur.started, 0)
        if tokens is not None and cur.tokens_base is None:
            cur.tokens_base = (now, tokens) if tokens else (cur.started, 0)
        cur.rows_done, cur.rows_total, cur.tokens = done, total, tokens


def training_step(step: int, total: int, loss: float | None = None) -> None:
    """The training loop's step / total and loss for the running stage; a no-op when nothing displays."""
    display = _active
    if display is None:
        return
    with display.lock:
        display.current.step, display.current.steps_total, display.current.loss = step, total, loss


def shows_training_steps() -> bool:
    """True while the display shows training steps (then the training loop's step log lines stay in the file)."""
    display = _active
    return display is not None and display.current.step is not None


STEP_HOOKS.append(training_step)  # training reports its steps through training.progress
