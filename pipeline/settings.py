"""Every ``SCORING_*`` setting in one place: folders and knobs, read when asked, never at import.

| variable | default | what it is |
|---|---|---|
| ``SCORING_HOME`` | the checkout (parent of ``pipeline/``) | root that relative paths in job files resolve against |
| ``SCORING_JOBS_DIR`` | ``<home>/dags/jobs`` | job files |
| ``SCORING_MODELS_DIR`` | ``<home>/models`` | the model registry |
| ``SCORING_STAGING_DIR`` | ``<home>/.staging`` | run-scoped staging areas |
| ``SCORING_REPORTS_DIR`` | ``<home>/reports`` | validation reports |
| ``SCORING_DEADLETTER_DIR`` | ``<home>/deadletter`` | push batches that could not be delivered |
| ``SCORING_DB_RETRY_BACKOFF_S`` | ``2`` | first wait before retrying a refused database connection |
| ``SCORING_ALLOW_SKLEARN_VERSION_MISMATCH`` | unset | ``1``: score a model pickled by another scikit-learn |
| ``SCORING_REGISTRY_DB`` | ``scoring_db`` | connection id of the registry database: where every model version's anchor is written and read, whatever database a job writes to (``pipeline.anchors``) |
| ``SCORING_ALLOW_UNANCHORED`` | unset | ``1``: development only: load a model version that has no anchor, with a warning at each load |
| ``SCORING_STATSD_HOST`` / ``SCORING_STATSD_PORT`` | Airflow's ``[metrics] statsd_host/port`` | where the run metrics go (``pipeline.metrics``) |
| ``SCORING_STATSD`` | unset | ``0``: send no run metrics |
| ``SCORING_SERVE_TOKENS_FILE`` | unset | ``scoring serve``: the bearer tokens file (one per line, ``#`` comments) when ``--tokens-file`` is not given |
| ``SCORING_SERVE_THREADS`` | ``1`` | ``scoring serve``: OpenMP/BLAS threads each request may predict with |
| ``SCORING_SERVE_CONCURRENCY`` | the cores | ``scoring serve``: requests scored at once at most, the others wait their turn (0: the thread pool's 40) |
| ``SCORING_SERVE_SHUTDOWN_SECONDS`` | ``10`` | ``scoring serve``: on SIGTERM, how long requests in flight may finish, then how long the recorder may write what waits |
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

ALLOW_VERSION_MISMATCH = "SCORING_ALLOW_SKLEARN_VERSION_MISMATCH"
REGISTRY_DB = "SCORING_REGISTRY_DB"
ALLOW_UNANCHORED = "SCORING_ALLOW_UNANCHORED"
SERVE_TOKENS_FILE = "SCORING_SERVE_TOKENS_FILE"
# the thread pools' own variables, which ``scoring serve`` sets (when unset) before the models' libraries load
THREAD_POOL_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _folder(variable: str, default: str) -> Path:
    value = os.environ.get(variable)
    return Path(value) if value else home() / default


def home() -> Path:
    """Root that relative paths in job files are resolved against (``SCORING_HOME``)."""
    value = os.environ.get("SCORING_HOME")
    return Path(value) if value else Path(__file__).resolve().parents[1]


def jobs_dir() -> Path:
    """Folder of job files (``SCORING_JOBS_DIR``)."""
    return _folder("SCORING_JOBS_DIR", "dags/jobs")


def models_dir() -> Path:
    """Root folder of the model registry (``SCORING_MODELS_DIR``)."""
    return _folder("SCORING_MODELS_DIR", "models")


def staging_dir() -> Path:
    """Root of all staging areas (``SCORING_STAGING_DIR``)."""
    return _folder("SCORING_STAGING_DIR", ".staging")


def reports_dir() -> Path:
    """Folder of validation reports (``SCORING_REPORTS_DIR``)."""
    return _folder("SCORING_REPORTS_DIR", "reports")


def deadletter_dir() -> Path:
    """Root of dead-lettered push batches (``SCORING_DEADLETTER_DIR``)."""
    return _folder("SCORING_DEADLETTER_DIR", "deadletter")


def db_retry_backoff_s() -> float:
    """First wait before retrying a refused database connection (``SCORING_DB_RETRY_BACKOFF_S``)."""
    return float(os.environ.get("SCORING_DB_RETRY_BACKOFF_S", "2"))


LEASE, REAP_AFTER = "SCORING_LEASE_SECONDS", "SCORING_REAP_AFTER_SECONDS"  # the names the reaper's texts quote


def lease_seconds() -> float:
    """How long a running attempt may go unseen before the next attempt of its partition declares it
    abandoned (``SCORING_LEASE_SECONDS``, 600): longer than the longest wait between two of its tasks."""
    return float(os.environ.get(LEASE, "600"))


def reap_after_seconds() -> float:
    """How long a running attempt of ANOTHER day may go unseen before the reaper (the start of a run of
    any day, ``scoring runs --reap``, the scoring_maintenance DAG) declares it abandoned
    (``SCORING_REAP_AFTER_SECONDS``, 21600 = 6 h; never less than the lease). Longer than the lease on
    purpose: an Airflow attempt is seen only while one of its tasks runs, and a run queued behind a
    busy backfill can wait between two tasks far longer than a same-day takeover should; a killed
    attempt is still cleared by the next night's run or the hourly maintenance DAG."""
    return max(float(os.environ.get(REAP_AFTER, "21600")), lease_seconds())


def swap_lock_timeout_s() -> float:
    """PostgreSQL: how patient the swap of a new partition is with readers holding the predictions table
    (``SCORING_SWAP_LOCK_TIMEOUT_S``, 20): it asks for the table in tries of 300 ms (readers never queue
    behind it longer), with jittered pauses between, for up to three times this long in all, then fails
    (retryable). Also the lock timeout of the swap's other statements."""
    return float(os.environ.get("SCORING_SWAP_LOCK_TIMEOUT_S", "20"))


def staging_retention_hours() -> float:
    """Staging areas of attempts no longer running are removed after this long (``SCORING_STAGING_RETENTION_HOURS``,
    48); those of the earlier attempts of a partition go as soon as its next attempt starts."""
    return float(os.environ.get("SCORING_STAGING_RETENTION_HOURS", "48"))


def allow_sklearn_version_mismatch() -> bool:
    """Score a model saved by another scikit-learn version (``SCORING_ALLOW_SKLEARN_VERSION_MISMATCH=1``)."""
    return os.environ.get(ALLOW_VERSION_MISMATCH) == "1"


def registry_connection() -> str:
    """Connection id of the registry database, which holds every model version's anchor (``SCORING_REGISTRY_DB``,
    default ``scoring_db``): one per models folder, read by every job whatever database it writes to."""
    return (os.environ.get(REGISTRY_DB) or "").strip() or "scoring_db"


def allow_unanchored() -> bool:
    """Development only: load a model version without an anchor, with a warning at each load
    (``SCORING_ALLOW_UNANCHORED=1``)."""
    return os.environ.get(ALLOW_UNANCHORED) == "1"


def threads() -> int | None:
    """Threads a model may use to predict, when the job does not say (``SCORING_THREADS``)."""
    value = os.environ.get("SCORING_THREADS")
    return int(value) if value else None


def serve_tokens_file() -> str | None:
    """The bearer tokens file of ``scoring serve`` when ``--tokens-file`` is not given (``SCORING_SERVE_TOKENS_FILE``)."""
    return (os.environ.get(SERVE_TOKENS_FILE) or "").strip() or None


def serve_threads() -> int:
    """OpenMP/BLAS threads a request of ``scoring serve`` predicts with (``SCORING_SERVE_THREADS``, 1): requests
    run side by side, each on one core, rather than each on every core."""
    return max(1, int(os.environ.get("SCORING_SERVE_THREADS") or "1"))


def default_thread_pools(threads: int) -> None:
    """The thread pools' own variables (``THREAD_POOL_ENV``) set to ``threads`` where unset: the OpenMP and BLAS
    libraries this process loads from now on start with that many threads in every thread (``scoring serve``)."""
    for name in THREAD_POOL_ENV:
        os.environ.setdefault(name, str(threads))


def serve_concurrency() -> int:
    """Requests ``scoring serve`` scores at once at most; more wait their turn (``SCORING_SERVE_CONCURRENCY``;
    unset: the machine's cores; 0: the thread pool's own limit, 40). The scoring threads hold the GIL for much of
    a request: with the pool's 40 the bench measured half the requests per second under 8 clients in 2 runs of 3
    (``benchmarks/online.json``, ``server_concurrency``)."""
    value = os.environ.get("SCORING_SERVE_CONCURRENCY")
    return max(0, int(value)) if value and value.strip() else os.cpu_count() or 1


def serve_shutdown_seconds() -> float:
    """On a stop signal, how long ``scoring serve`` lets requests in flight finish, then the recorder write what
    waits (``SCORING_SERVE_SHUTDOWN_SECONDS``, 10)."""
    return float(os.environ.get("SCORING_SERVE_SHUTDOWN_SECONDS") or "10")


def worker_processes() -> int:
    """Task processes that share this machine: the Celery worker's concurrency under CeleryExecutor, else 1.

    Read from Airflow's configuration when Airflow is loaded (a task), else from its environment variables.
    """
    if "airflow.configuration" in sys.modules:  # a task: Airflow's own configuration (never imported here)
        conf = sys.modules["airflow.configuration"].conf
        executor = conf.get("core", "executor", fallback="") or ""
        concurrency = conf.get("celery", "worker_concurrency", fallback="1") if "Celery" in executor else "1"
    else:
        executor = os.environ.get("AIRFLOW__CORE__EXECUTOR", "")
        concurrency = os.environ.get("AIRFLOW__CELERY__WORKER_CONCURRENCY", "16") if "Celery" in executor else "1"
    try:
        return max(1, int(concurrency))
    except ValueError:
        return 1


def statsd_address() -> tuple[str, int] | None:
    """Where the run metrics go: ``SCORING_STATSD_HOST``/``_PORT``, else Airflow's StatsD address when its
    metrics are on (``[metrics] statsd_on``); None when off (or ``SCORING_STATSD=0``)."""
    if os.environ.get("SCORING_STATSD") == "0":
        return None
    host, port = os.environ.get("SCORING_STATSD_HOST"), os.environ.get("SCORING_STATSD_PORT")
    if host:
        return host, int(port or 8125)
    if "airflow.configuration" in sys.modules:  # a task: Airflow's own configuration (never imported here)
        conf = sys.modules["airflow.configuration"].conf
        on = conf.getboolean("metrics", "statsd_on", fallback=False)
        host = conf.get("metrics", "statsd_host", fallback="localhost")
        port = conf.get("metrics", "statsd_port", fallback="8125")
    else:
        on = os.environ.get("AIRFLOW__METRICS__STATSD_ON", "").lower() in ("true", "1")
        host = os.environ.get("AIRFLOW__METRICS__STATSD_HOST", "localhost")
        port = os.environ.get("AIRFLOW__METRICS__STATSD_PORT", "8125")
    return (host, int(port or 8125)) if on else None


def sql_dir() -> Path:
    """The project's ``sql/`` folder (next to the package)."""
    return Path(__file__).resolve().parents[1] / "sql"


def safe_name(text: str) -> str:
    """A run id made safe as one path component (staging folders, report files)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:200]


def thread_count(configured: int | None = None) -> int:
    """Threads to predict with: the job's ``model.threads``, else ``SCORING_THREADS``, else this process's
    cores divided among the task processes sharing the machine (``settings.worker_processes``)."""
    chosen = configured or threads()
    if chosen:
        return chosen
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // worker_processes())
