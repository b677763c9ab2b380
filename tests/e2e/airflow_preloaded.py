"""`airflow ARGS...` in a process that imported the pipeline's stage modules first.

The test stacks start their scheduler with it. The LocalExecutor forks its workers from the scheduler, and
each task's process is forked from a worker, so every task starts with pandas, pyarrow, scikit-learn and
Great Expectations already imported instead of importing them again (a few seconds of CPU a task). What runs
is Airflow's own scheduler and the same task code; only the imports are done once, before the fork.
"""

from __future__ import annotations

import sys


def main() -> None:
    from airflow.__main__ import main as airflow_main

    import pipeline.drift  # noqa: F401 - imported for the forks
    import pipeline.ingest  # noqa: F401
    import pipeline.persist  # noqa: F401
    import pipeline.preprocess  # noqa: F401
    import pipeline.push  # noqa: F401
    import pipeline.run  # noqa: F401
    import pipeline.score  # noqa: F401
    import pipeline.validate  # noqa: F401

    sys.argv = ["airflow", *sys.argv[1:]]
    airflow_main()


if __name__ == "__main__":
    main()
