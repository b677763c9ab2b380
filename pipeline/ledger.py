"""The run ledger (``scoring_runs``): one row per run attempt, with counts and timings."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline.redact import redact
from pipeline.store.engines import begin
from pipeline.textsafe import safe_text

COUNT_FIELDS = ("rows_in", "rows_valid", "rows_quarantined", "rows_scored", "rows_written")
PUSH_COUNT_FIELDS = ("rows_not_selected", "rows_delivered", "rows_failed", "rows_dead_lettered")
UPDATABLE = {
    "status", "failed_stage", "error", "finished_at", "duration_s", "model_version", "sink", "warnings",
    "holder", "heartbeat_at", "routes", "breach", "arms",
    *COUNT_FIELDS, *PUSH_COUNT_FIELDS,
}


def now() -> dt.datetime:
    """UTC now without tzinfo: bound as is, it is UTC in SQLite's TIMESTAMP and in PostgreSQL's
    timestamptz (the store's sessions run in UTC)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def utc(value: Any) -> dt.datetime:
    """A timestamp read back, as naive UTC: PostgreSQL's timestamptz comes aware, SQLite's as text."""
    when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return when.astimezone(dt.UTC).replace(tzinfo=None) if when.tzinfo else when


def as_json(value: Any) -> Any:
    """A JSON column read back: PostgreSQL's jsonb comes parsed, SQLite's as text."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def start_attempt(
    engine: Engine,
    *,
    job_id: str,
    run_id: str,
    partition_date: dt.date,
    mode: str,
    dry_run: bool,
    model_name: str,
    model_version: int | None,
) -> int:
    """Open the run's ledger row without the partition's lease (``pipeline.lease.open_attempt`` takes it)."""
    with begin(engine) as conn:
        return open_row(conn, job_id=job_id, run_id=run_id, partition_date=partition_date, mode=mode,
                        dry_run=dry_run, model_name=model_name, model_version=model_version)


def open_row(conn: Connection, *, job_id: str, run_id: str, partition_date: dt.date, mode: str, dry_run: bool,
             model_name: str, model_version: int | None, holder: str | None = None,
             refused: str | None = None) -> int:
    """Reuse the run's running attempt (a task retry), else insert a new one; ``refused``: insert it failed
    at stage ``start`` with that error (an attempt that never held the partition)."""
    last = conn.execute(
        sa.text("SELECT attempt, status FROM scoring_runs WHERE job_id = :j AND run_id = :r "
                "ORDER BY attempt DESC LIMIT 1"),
        {"j": job_id, "r": run_id},
    ).first()
    if refused is None and last is not None and last.status == "running":
        conn.execute(
            sa.text("UPDATE scoring_runs SET model_version = :v, error = NULL, failed_stage = NULL, holder = :h, "
                    "heartbeat_at = :t WHERE job_id = :j AND run_id = :r AND attempt = :a"),
            {"v": model_version, "h": holder, "t": now(), "j": job_id, "r": run_id, "a": last.attempt},
        )
        return int(last.attempt)
    attempt = 1 if last is None else int(last.attempt) + 1
    stamp = now()
    conn.execute(
        sa.text(
            "INSERT INTO scoring_runs (job_id, run_id, attempt, partition_date, mode, dry_run, model_name, "
            "model_version, status, failed_stage, error, finished_at, started_at, heartbeat_at, holder, "
            "stage_seconds, part_seconds) VALUES (:j, :r, :a, :d, :mode, :dry, :mn, :mv, :status, :stage, :error, "
            ":done, :t, :t, :h, '{}', '{}')"
        ),
        {"j": job_id, "r": run_id, "a": attempt, "d": partition_date, "mode": mode, "dry": dry_run,
         "mn": model_name, "mv": model_version, "t": stamp, "h": holder,
         "status": "failed" if refused else "running", "stage": "start" if refused else None,
         "error": ledger_text(refused[:4000]) if refused else None, "done": stamp if refused else None},
    )
    return attempt


def update(engine: Engine, job_id: str, run_id: str, attempt: int, *, stage: str | None = None,
           seconds: float | None = None, parts: dict[str, float] | None = None, **fields: Any) -> None:
    """Set fields of an attempt's row; record a stage's duration in ``stage_seconds`` and the seconds of parts of
    steps by label in ``part_seconds`` (a label recorded again replaces its value)."""
    unknown = set(fields) - UPDATABLE
    if unknown:
        raise ValueError(f"not ledger fields: {sorted(unknown)}")
    where = {"j": job_id, "r": run_id, "a": attempt}
    timings: dict[str, dict[str, float]] = {}
    if stage is not None and seconds is not None:
        timings["stage_seconds"] = {stage: round(seconds, 3)}
    if parts:
        timings["part_seconds"] = {label: round(value, 3) for label, value in parts.items()}
    with begin(engine) as conn:
        if timings:
            fields.update(_timings_merged(conn, where, timings))
        for name in ("error", "warnings"):  # texts quote URLs, exceptions and file contents
            if isinstance(fields.get(name), str):
                fields[name] = ledger_text(fields[name])
        if fields:
            sets = ", ".join(f"{name} = :{name}" for name in fields)
            conn.execute(
                sa.text(f"UPDATE scoring_runs SET {sets} WHERE job_id = :j AND run_id = :r AND attempt = :a"),
                {**fields, **where},
            )


def _timings_merged(conn: Connection, where: dict[str, Any], timings: dict[str, dict[str, float]]) -> dict[str, str]:
    """The row's JSON timing columns (``stage_seconds``, ``part_seconds``) with ``timings`` merged in, as JSON."""
    current = conn.execute(
        sa.text("SELECT stage_seconds, part_seconds FROM scoring_runs WHERE job_id = :j AND run_id = :r "
                "AND attempt = :a"), where,
    ).mappings().one()
    return {column: json.dumps({**as_json(current[column] or "{}"), **new}, sort_keys=True)
            for column, new in timings.items()}


def ledger_text(text: str) -> str:
    """An error or warning as the ledger keeps it: never a credential (``redact``), and a NUL or a lone surrogate
    quoted from a file shown as ``\\x00`` / ``\\udcNN`` (``textsafe.safe_text``): PostgreSQL's text refuses them
    raw, and a failure that cannot be written would leave its attempt ``running``."""
    return safe_text(redact(text))


def add_warning(engine: Engine, job_id: str, run_id: str, attempt: int, note: str) -> None:
    """Append a warning to an attempt's ``warnings`` ("; "-joined), keeping the ones a stage wrote before."""
    where = {"j": job_id, "r": run_id, "a": attempt}
    with begin(engine) as conn:
        current = conn.execute(
            sa.text("SELECT warnings FROM scoring_runs WHERE job_id = :j AND run_id = :r AND attempt = :a"), where,
        ).scalar_one_or_none()
        text = "; ".join(w for w in (current, ledger_text(note)) if w)
        conn.execute(sa.text("UPDATE scoring_runs SET warnings = :w WHERE job_id = :j AND run_id = :r AND attempt = :a"),
                     {"w": text, **where})


def get(engine: Engine, job_id: str, run_id: str, attempt: int | None = None) -> dict[str, Any]:
    """One attempt's row (the latest if ``attempt`` is None) as a dict."""
    query = "SELECT * FROM scoring_runs WHERE job_id = :j AND run_id = :r"
    params: dict[str, Any] = {"j": job_id, "r": run_id}
    if attempt is not None:
        query += " AND attempt = :a"
        params["a"] = attempt
    with engine.connect() as conn:
        row = conn.execute(sa.text(query + " ORDER BY attempt DESC LIMIT 1"), params).mappings().first()
    if row is None:
        raise KeyError(f"no ledger row for job {job_id} run {run_id}")
    return dict(row)


def recent(engine: Engine, job_id: str, limit: int = 10) -> list[dict[str, Any]]:
    """The latest attempts of a job, newest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT * FROM scoring_runs WHERE job_id = :j ORDER BY started_at DESC LIMIT :n"),
            {"j": job_id, "n": limit},
        ).mappings()
        return [dict(r) for r in rows]
