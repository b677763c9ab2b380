"""Test stacks only: Airflow's forking processes import the pipeline's stage modules once, at start.

tests/e2e puts this folder on the PYTHONPATH of the Airflow processes it starts (the LocalExecutor stacks and
the native Celery stack), and Python imports ``sitecustomize`` at every start. In the scheduler (whose
LocalExecutor forks its workers, which fork each task) and in a Celery worker (whose pool forks its children,
which fork each task), the stage modules and what they import (pandas, pyarrow, scikit-learn, Great
Expectations) are then imported before the forks, so a task does not import them again: a few seconds of CPU
a task. What runs is Airflow's own scheduler and workers and the same task code; other processes import
nothing here.
"""

from __future__ import annotations

import sys


def _forks_tasks(argv: list[str]) -> bool:
    return "scheduler" in argv[1:3] or ("celery" in argv[1:3] and "worker" in argv[1:4])


if _forks_tasks(sys.argv):
    import pipeline.drift  # noqa: F401 - imported for the forks
    import pipeline.ingest  # noqa: F401
    import pipeline.persist  # noqa: F401
    import pipeline.preprocess  # noqa: F401
    import pipeline.push  # noqa: F401
    import pipeline.run  # noqa: F401
    import pipeline.score  # noqa: F401
    import pipeline.validate  # noqa: F401
