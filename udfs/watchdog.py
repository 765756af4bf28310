"""A deadline around one engine call, so a dead or stalled LLM engine fails its Spark task instead of hanging it.

An engine can stop without raising: a wedged CUDA kernel, a vLLM engine-core process that died while the client
waits on its socket, a deadlock. Nothing then ends the task and the job waits forever. ``call_with_deadline``
runs the call in a daemon thread and waits at most ``seconds``; past that it raises ``EngineStalled``, whose
message names the stage, the batch and the deadline, and Spark's task retry takes over (the Python worker exits
after a failed task, and the stuck thread with it). It knows nothing of the engine: any callable will do.

``batch_deadline`` is the default deadline of a batch: a floor far below any healthy engine's throughput (a stalled
engine makes none), so it trips on a stall and never on a slow but working engine. Pure: no pyspark, no vllm.
"""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

T = TypeVar("T")

# Output tokens per second below which an engine counts as stalled, per task. Healthy engines are far above these:
# SmolLM2-135M on 2 loaded CPU cores writes a few hundred, a 7B model on one GPU thousands.
STALL_TOKENS_PER_SECOND = {"cpu": 10.0, "gpu": 100.0}
# Added to every batch's deadline: prompt processing, a judge's second (logprobs) pass, the first batch's warm-up.
STARTUP_SECONDS = {"cpu": 600.0, "gpu": 300.0}


# A prefill reads many tokens per forward pass where generation writes one: for the deadline, this many prompt
# tokens count as one output token (conservative: prefill is tens of times faster than decoding on CPU and GPU).
PREFILL_TOKENS_PER_OUTPUT_TOKEN = 10


class EngineStalled(RuntimeError):
    """An engine call passed its deadline: the engine is dead or stopped making progress."""


def batch_deadline(rows: int, max_tokens: int, device: str, configured: float | None = None) -> float:
    """Seconds one batch of ``rows`` prompts of up to ``max_tokens`` output tokens may take on ``device``
    (``cpu`` or ``gpu``): ``configured`` when given, else the stall floor (``STALL_TOKENS_PER_SECOND``)."""
    if configured is not None:
        return configured
    return STARTUP_SECONDS[device] + rows * max_tokens / STALL_TOKENS_PER_SECOND[device]


def prefill_as_output_tokens(prompt_tokens: int) -> int:
    """The output tokens whose deadline covers a prefill-only request of ``prompt_tokens`` (a likelihood's)."""
    return -(-prompt_tokens // PREFILL_TOKENS_PER_OUTPUT_TOKEN)


def call_with_deadline(fn: Callable[[], T], seconds: float, what: str) -> T:
    """``fn()``, or ``EngineStalled`` naming ``what`` if it has not returned within ``seconds``. An exception of
    ``fn`` is raised here as it is (a dying engine fails the task with its own error)."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # handed to the caller's thread, raised there
            error.append(exc)

    # A daemon thread: if the engine never returns, the worker process can still exit.
    worker = threading.Thread(target=target, name=f"engine-call: {what}", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise EngineStalled(
            f"{what}: the engine returned nothing within the deadline of {seconds:g} s "
            "(engine.batch_deadline_seconds): it died or stopped making progress; failing the task so Spark retries it"
        )
    if error:
        raise error[0]
    return result[0]
