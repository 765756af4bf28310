"""Training progress for whoever shows it: the job's console registers a hook, a plain training run has none.

Training reports each step here rather than importing the job's console (``jobs.progress``), so the training
module stays usable on its own (``python -m training``, torchrun, Databricks).
"""

from __future__ import annotations

from typing import Callable

StepHook = Callable[[int, int, float], None]
STEP_HOOKS: list[StepHook] = []


def report_step(step: int, total: int, loss: float) -> None:
    """Step ``step`` of ``total`` is done with ``loss``: tell every registered hook."""
    for hook in STEP_HOOKS:
        hook(step, total, loss)
