"""`airflow dags test` runs in one Python process: Airflow's own CLI entry point, called once per run.

Each run is exactly what `airflow dags test DAG_ID DATE [--conf JSON]` does; only the interpreter's start-up
and imports (Airflow, then pandas, scikit-learn and Great Expectations in the first task) are paid once.

- ``python dags_test_many.py '[["dag_id", "2026-11-20", null], ...]'``: the runs one after the other. Before
  and after each run a marker line goes to stdout and to stderr, so the caller can split each stream by run.
- ``python dags_test_many.py --serve``: one request a line on stdin, ``{"argv": [...], "env": {...},
  "stdout": PATH, "stderr": PATH}``; the process takes the request's environment (the test's SCORING_* and
  AIRFLOW_CONN_*), runs ``airflow ARGV`` with its output in the two files, and answers ``{"code": N}`` on
  stdout. tests/e2e/conftest.py keeps one such process per Airflow home of a test worker.
"""

from __future__ import annotations

import json
import os
import sys

BEGIN, END = "=== dags-test-many begin {} ===", "=== dags-test-many end {} exit {} ==="


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
    """Answer requests from stdin until it closes (see the module's docstring)."""
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


def main() -> int:
    if sys.argv[1:] == ["--serve"]:
        return serve()
    runs = json.loads(sys.argv[1])
    for i, (dag_id, date, conf) in enumerate(runs):
        for stream in (sys.stdout, sys.stderr):
            print(BEGIN.format(i), file=stream, flush=True)
        code = run(["dags", "test", dag_id, date, *(["--conf", conf] if conf else [])])
        for stream in (sys.stdout, sys.stderr):
            print(END.format(i, code), file=stream, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
