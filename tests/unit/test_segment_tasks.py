"""How the segment stage cuts its documents into tasks: whole waves across the cores."""

from __future__ import annotations

import pytest

from jobs.stages.segment import segment_tasks


@pytest.mark.parametrize(
    "docs, cores, per_task, tasks",
    [
        (4160, 2, 2000, 4),  # was 3 tasks on 2 cores: the last wave left a core idle
        (4160, 2, 500, 10),
        (27, 2, 500, 2),
        (1, 8, 500, 1),  # never more tasks than documents
        (0, 2, 500, 1),
        (1_000_000, 64, 500, 2048),
    ],
)
def test_tasks_come_in_whole_waves_of_at_most_per_task_documents(docs, cores, per_task, tasks):
    n = segment_tasks(docs, cores, per_task)
    assert n == tasks
    assert n == max(1, docs) or n % cores == 0
    assert docs <= n * per_task or docs == 0
