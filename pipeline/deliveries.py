"""Delivery state of push mode (``scoring_deliveries``): one row per batch of a partition.

The sink and the last error are stored redacted (:mod:`pipeline.redact`): no credential of a
URL or an auth header reaches the table.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.ledger import now
from pipeline.redact import redact
from pipeline.store.engines import begin
from pipeline.textsafe import safe_text

PENDING, DELIVERED, DEAD_LETTER = "pending", "delivered", "dead_letter"


def plan(
    engine: Engine,
    *,
    job_id: str,
    partition_date: dt.date,
    sink: str,
    plan_sig: str,
    keys: list[str],
    row_counts: list[int],
    model_name: str,
    model_version: int,
    run_id: str,
    resend: bool = False,
) -> list[int]:
    """Record a partition's batches; return the batch numbers still to deliver.

    A batch already delivered with the same idempotency key (same content) to the same sink
    is skipped, unless ``resend`` (and this run has not resent it already: a retry of a
    resend resumes too). Rows of batches past the new batch count (an earlier plan) go.
    """
    where = {"j": job_id, "d": partition_date}
    sink = redact(sink)
    todo: list[int] = []
    t = now()
    with begin(engine) as conn:
        lock_partition(conn, job_id, partition_date)
        existing = {
            r.batch_no: r
            for r in conn.execute(
                sa.text("SELECT batch_no, idempotency_key, sink, status, run_id FROM scoring_deliveries "
                        "WHERE job_id = :j AND partition_date = :d"), where)
        }
        conn.execute(sa.text("DELETE FROM scoring_deliveries WHERE job_id = :j AND partition_date = :d "
                             "AND batch_no >= :n"), {**where, "n": len(keys)})
        inserts, resets, touches, renames = [], [], [], []
        for no, (key, rows) in enumerate(zip(keys, row_counts, strict=True)):
            old = existing.get(no)
            # the stored sink redacted too: a row from before sinks were redacted is still the same sink
            same = old is not None and old.idempotency_key == key and redact(old.sink) == sink
            if same and old.status == DELIVERED and (not resend or old.run_id == run_id):
                if old.sink != sink:  # stored before sinks were redacted: redact it now
                    renames.append({**where, "no": no, "s": sink})
                continue
            todo.append(no)
            values = {**where, "no": no, "n": len(keys), "k": key, "p": plan_sig, "s": sink, "mn": model_name,
                      "mv": model_version, "rows": rows, "r": run_id, "t": t}
            if old is None:
                inserts.append(values)
            elif same and not resend:
                touches.append(values)  # pending or dead-lettered: keep its attempts and error
            else:
                resets.append(values)
        _write_plan(conn, inserts, resets, touches)
        if renames:
            conn.execute(sa.text("UPDATE scoring_deliveries SET sink = :s WHERE job_id = :j AND partition_date = :d "
                                 "AND batch_no = :no"), renames)
    return todo


def _write_plan(conn: Any, inserts: list[dict[str, Any]], resets: list[dict[str, Any]],
                touches: list[dict[str, Any]]) -> None:
    """New batches, batches planned afresh (new key or resend), and batches whose state is kept."""
    if inserts:
        conn.execute(sa.text(
            "INSERT INTO scoring_deliveries (job_id, partition_date, batch_no, batch_count, idempotency_key, "
            "plan, sink, model_name, model_version, row_count, status, attempts, run_id, updated_at) VALUES "
            "(:j, :d, :no, :n, :k, :p, :s, :mn, :mv, :rows, 'pending', 0, :r, :t)"), inserts)
    if resets:
        conn.execute(sa.text(
            "UPDATE scoring_deliveries SET batch_count = :n, idempotency_key = :k, plan = :p, sink = :s, "
            "model_name = :mn, "
            "model_version = :mv, row_count = :rows, status = 'pending', attempts = 0, last_error = NULL, "
            "dead_letter_path = NULL, delivered_at = NULL, run_id = :r, updated_at = :t "
            "WHERE job_id = :j AND partition_date = :d AND batch_no = :no"), resets)
    if touches:
        conn.execute(sa.text(
            "UPDATE scoring_deliveries SET batch_count = :n, row_count = :rows, sink = :s, run_id = :r, "
            "updated_at = :t WHERE job_id = :j AND partition_date = :d AND batch_no = :no"), touches)


def lock_partition(conn: Any, job_id: str, partition_date: dt.date) -> None:
    """PostgreSQL: serialise planners of one partition (two runs at once) until commit."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                     {"k": f"scoring_deliveries:{job_id}:{partition_date}"})


def mark(
    engine: Engine,
    *,
    job_id: str,
    partition_date: dt.date,
    batch_no: int,
    status: str,
    attempts: int,
    run_id: str,
    key: str,
    error: str | None = None,
    dead_letter_path: str | None = None,
    sink: str | None = None,
) -> None:
    """Record the outcome of one batch's delivery (``attempts`` are added to the batch's count).

    Only the row still planned with ``key`` is updated: a run that re-planned the partition
    in the meantime (other content or model) is not overwritten by a stale one.
    """
    t = now()
    error = safe_text(redact(error)) if error else error  # a receiver's reply may hold a NUL
    sets = ("status = :st, attempts = attempts + :a, last_error = :e, dead_letter_path = :p, run_id = :r, "
            "updated_at = :t, delivered_at = :da")
    params: dict[str, Any] = {"st": status, "a": attempts, "e": error[:4000] if error else None,
                              "p": dead_letter_path, "r": run_id, "t": t,
                              "da": t if status == DELIVERED else None,
                              "j": job_id, "d": partition_date, "no": batch_no, "k": key}
    if sink is not None:
        sets += ", sink = :s"
        params["s"] = redact(sink)
    with begin(engine) as conn:
        conn.execute(sa.text(f"UPDATE scoring_deliveries SET {sets} "
                             "WHERE job_id = :j AND partition_date = :d AND batch_no = :no "
                             "AND idempotency_key = :k"), params)


def batches(engine: Engine, job_id: str, partition_date: dt.date, status: str | None = None) -> list[dict[str, Any]]:
    """The partition's batch rows (optionally of one status), by batch number."""
    query = "SELECT * FROM scoring_deliveries WHERE job_id = :j AND partition_date = :d"
    params: dict[str, Any] = {"j": job_id, "d": partition_date}
    if status:
        query += " AND status = :s"
        params["s"] = status
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(query + " ORDER BY batch_no"), params).mappings()]


def summary(engine: Engine, job_id: str, partition_date: dt.date) -> dict[str, dict[str, int]]:
    """Batches and rows per status, e.g. ``{'delivered': {'batches': 9, 'rows': 9000}}``."""
    with engine.connect() as conn:
        result = conn.execute(sa.text(
            "SELECT status, COUNT(*) AS batches, COALESCE(SUM(row_count), 0) AS row_total FROM scoring_deliveries "
            "WHERE job_id = :j AND partition_date = :d GROUP BY status"), {"j": job_id, "d": partition_date})
        return {r.status: {"batches": int(r.batches), "rows": int(r.row_total)} for r in result}
