"""Threads under a shared worker (issue 15, point 4): the score stage predicts on a bounded number of threads."""

from __future__ import annotations

import os

import pytest

from pipeline import score


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def test_the_job_then_scoring_threads_then_the_celery_concurrency_decide(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SCORING_THREADS", "AIRFLOW__CORE__EXECUTOR", "AIRFLOW__CELERY__WORKER_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    assert score.thread_count() == _cores()  # scoring run, LocalExecutor, airflow dags test: every core
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    monkeypatch.setenv("AIRFLOW__CELERY__WORKER_CONCURRENCY", "2")
    assert score.thread_count() == max(1, _cores() // 2)  # each of the worker's processes its share
    monkeypatch.setenv("AIRFLOW__CELERY__WORKER_CONCURRENCY", str(10 * _cores()))
    assert score.thread_count() == 1  # never none
    monkeypatch.setenv("SCORING_THREADS", "3")
    assert score.thread_count() == 3
    assert score.thread_count(configured=5) == 5  # the job's model.threads first


def test_inside_the_limit_openmp_and_blas_pools_have_that_many_threads() -> None:
    import sklearn.ensemble  # noqa: F401  (loads scikit-learn's OpenMP runtime)
    from threadpoolctl import threadpool_info

    with score.limited_threads(1) as count:
        assert count == 1
        pools = threadpool_info()
        assert pools and all(p["num_threads"] == 1 for p in pools), pools
    assert any(p["user_api"] == "openmp" for p in threadpool_info())
