"""Several `airflow dags test` runs in one Python process: Airflow's own CLI entry point, called once per run.

Each run is exactly what `airflow dags test DAG_ID DATE [--conf JSON]` does; only the interpreter's start-up
and imports (Airflow, then pandas, scikit-learn and Great Expectations in the first task) are paid once.
Usage: ``python dags_test_many.py '[["dag_id", "2026-11-20", null], ...]'``. Before and after each run a
marker line goes to stdout and to stderr, so the caller can split each stream by run.
"""

from __future__ import annotations

import json
import sys

BEGIN, END = "=== dags-test-many begin {} ===", "=== dags-test-many end {} exit {} ==="


def main() -> int:
    from airflow.__main__ import main as airflow_main

    runs = json.loads(sys.argv[1])
    for i, (dag_id, date, conf) in enumerate(runs):
        for stream in (sys.stdout, sys.stderr):
            print(BEGIN.format(i), file=stream, flush=True)
        sys.argv = ["airflow", "dags", "test", dag_id, date, *(["--conf", conf] if conf else [])]
        code: int | str | None = 0
        try:
            airflow_main()
        except SystemExit as exc:  # `dags test` exits non-zero when the run failed
            code = exc.code
        except Exception as exc:  # noqa: BLE001 - reported as this run's failure, the next run still goes
            import traceback

            traceback.print_exc()
            code = f"{type(exc).__name__}: {exc}"
        for stream in (sys.stdout, sys.stderr):
            print(END.format(i, 0 if code in (0, None) else 1), file=stream, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
