"""`airflow` commands in one kept Python process: Airflow's own CLI entry point, called once per command.

One request a line on stdin, ``{"argv": [...], "env": {...}, "stdout": PATH, "stderr": PATH}``: the process
takes the request's environment (the test's SCORING_* and AIRFLOW_CONN_*), runs ``airflow ARGV`` with its
output in the two files, and answers ``{"code": N}`` on stdout. Each command is exactly what ``airflow ARGV``
does; only the interpreter's start-up and imports (Airflow, then pandas, scikit-learn and Great Expectations
in a run's first task) are paid once. tests/e2e/conftest.py keeps one such process per Airflow home and
Airflow settings of a test worker.
"""

from __future__ import annotations

import json
import os
import sys


def run(argv: list[str]) -> int:
    """``airflow ARGV`` through Airflow's own entry point; its exit code (a traceback is printed, code 1)."""
    from airflow.__main__ import main as airflow_main

    sys.argv = ["airflow", *argv]
    try:
        airflow_main()
    except SystemExit as exc:  # `dags test` exits non-zero when the run failed
        return 0 if exc.code in (0, None) else 1
    except Exception:  # noqa: BLE001 - reported as this run's failure, the next run still goes
        import traceback

        traceback.print_exc()
        return 1
    return 0


def serve() -> int:
    """Answer requests from stdin until it closes."""
    answers = os.fdopen(os.dup(1), "w")  # the answers' channel; fd 1 and 2 are each run's files, else stderr's
    between = os.dup(2)
    os.dup2(between, 1)
    for line in sys.stdin:
        request = json.loads(line)
        os.environ.clear()
        os.environ.update(request["env"])
        with open(request["stdout"], "w") as out, open(request["stderr"], "w") as err:
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            try:
                code = run(request["argv"])
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(between, 1)
                os.dup2(between, 2)
        answers.write(json.dumps({"code": code}) + "\n")
        answers.flush()
    return 0


if __name__ == "__main__":
    sys.exit(serve())
