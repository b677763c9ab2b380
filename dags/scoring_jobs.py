"""Airflow DAG file: one scoring dag per job file in dags/jobs/ (dag id = job id).

Wiring only: the tasks call pipeline.run (see dags/_scoring/factory.py), and heavy imports happen inside the tasks.
A broken job file becomes a DAG tagged 'config-error' whose only task fails with the
validation message; the other jobs' DAGs are unaffected.
"""

from __future__ import annotations

from _scoring.factory import build_all

from pipeline.settings import jobs_dir

for _dag in build_all(jobs_dir()):
    globals()[_dag.dag_id] = _dag
