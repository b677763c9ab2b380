"""Push mode: deliver a partition's predictions to a sink, batch by batch, at least once.

- **Outbox.** The scored rows (optionally only the top candidates) are staged as
  ``outbox.parquet`` with one row group per batch, in a deterministic order, so batch *i*
  holds the same rows on every attempt.
- **Idempotency key.** ``sha256(job | partition | model name | model version | plan | i |
  content)``, where the plan is the batch size, the selection and the body format and the
  content is a digest of the batch's rows: stable across task retries, re-runs and
  re-drives of the same partition and model version, and new when the rows changed (a
  corrected upstream export), so a re-run sends the changed batches.
- **Delivery state.** ``scoring_deliveries`` has one row per batch; a retry or re-run sends
  only the batches not yet delivered (``resend`` sends them all).
- **Retries.** Per batch, exponential backoff with jitter on retryable failures (5xx, 429
  with its Retry-After, connection errors); other failures (4xx) end the batch at once.
- **Dead-letter.** A batch that still fails is written to
  ``<SCORING_DEADLETTER_DIR>/<job>/date=<partition>/batch-NNNNN.parquet`` with its error
  beside it; the run then fails saying how many rows are there. ``scoring redrive`` sends
  them with the same keys once the receiver is back.
- **No secrets shown.** What is logged, stored (delivery state, ledger, dead-letter JSON) or
  raised names the sink by its redacted target (:mod:`pipeline.redact`): no URL user info,
  no ``?token=``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy.engine import Engine
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from pipeline import deliveries, ledger, persist, redact, settings, steps
from pipeline.config import JobConfig
from pipeline.connections import Resolver
from pipeline.context import counted
from pipeline.errors import ConfigError, DeliveryError, PermanentDeliveryError
from pipeline.partition import parse_date
from pipeline.sinks import Batch, DeliveryFailed, Sink, open_sink
from pipeline.staging import StagedWriter, read_batches, staged_rows, staged_schema
from pipeline.store import writes

if TYPE_CHECKING:
    from pipeline.context import RunContext

log = logging.getLogger("pipeline.push")  # redact.install(log) when a push or re-drive starts

MAX_RETRY_AFTER_S = 600.0


def deadletter_dir(job_id: str, partition_date: str) -> Path:
    return settings.deadletter_dir() / job_id / f"date={partition_date}"


# -- outbox ----------------------------------------------------------------------------
def plan_signature(job: JobConfig) -> str:
    """What decides how rows fall into batches and how a batch looks on the wire."""
    push = job.output.push
    assert push is not None
    doc = {"batch_rows": push.sink.batch_rows, "select": push.select.model_dump(),
           "format": getattr(push.sink, "format", None), "per": getattr(push.sink, "per", "batch")}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def idempotency_key(job_id: str, partition_date: str, model_name: str, model_version: int, plan: str,
                    batch_no: int, digest: str = "") -> str:
    """Stable key of one batch: the same job, partition, model version, plan, batch and rows give the same key."""
    text = f"{job_id}|{partition_date}|{model_name}|{model_version}|{plan}|{batch_no}|{digest}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def content_digest(read: Callable[[], Iterator[pa.Table]]) -> str:
    """sha256 of a batch's rows (Arrow IPC stream of its record batches)."""
    digest = hashlib.sha256()
    for table in read():
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        digest.update(sink.getvalue())
    return digest.hexdigest()


def build_outbox(job: JobConfig, scored: Path | list[Path], out: Path, *, partition_date: str, model_name: str,
                 model_version: int, batch_rows: int) -> tuple[int, int]:
    """Stage the rows to send (one row group per batch); return (rows selected, rows not selected)."""
    push = job.output.push
    assert push is not None
    key = job.entity_key
    select = push.select
    parts = scored if isinstance(scored, list) else [scored]
    total = staged_rows(parts)
    chosen: pa.Table | None = None
    order = [("score", "descending"), (key, "ascending")]

    def filtered() -> Iterator[pa.Table]:
        for batch in read_batches(parts, job.source.batch_rows):
            table = pa.Table.from_batches([batch])
            if select.min_score is not None:
                table = table.filter(pc.greater_equal(table["score"], select.min_score))
            yield table

    if select.top_n is not None:  # running top-N: memory holds N rows plus one batch
        for table in filtered():
            chosen = table if chosen is None else pa.concat_tables([chosen, table])
            if chosen.num_rows > select.top_n:
                chosen = chosen.take(pc.select_k_unstable(chosen, k=select.top_n, sort_keys=order))
        chosen = (chosen if chosen is not None else staged_schema(parts[0]).empty_table()).sort_by(order)
        source: Iterator[pa.Table] = iter([chosen.append_column(
            "rank", pa.array(range(1, chosen.num_rows + 1), pa.int32()))])
    else:
        source = filtered()

    selected = 0
    with StagedWriter(out, row_group_rows=batch_rows) as writer:
        for table in source:
            n = table.num_rows
            table = table.append_column("partition_date", pa.array([partition_date] * n, pa.string()))
            if "model_name" not in table.column_names:  # a cascade's rows carry their lineage already
                table = (table.append_column("model_name", pa.array([model_name] * n, pa.string()))
                         .append_column("model_version", pa.array([model_version] * n, pa.int32())))
            if writer.schema is None:
                writer.schema = table.schema
            writer.write(table)
            selected += n
        if writer.schema is None:
            writer.schema = pa.schema([*staged_schema(parts[0]), ("partition_date", pa.string()),
                                       ("model_name", pa.string()), ("model_version", pa.int32())])
    return selected, total - selected


def outbox_batches(path: Path, per_partition: bool) -> list[tuple[int, Callable[[], Iterator[pa.Table]]]]:
    """(rows, reader) of every batch of an outbox: one per row group, or one for the whole file."""
    pf = pq.ParquetFile(path)
    meta = pf.metadata
    if per_partition:
        return [(meta.num_rows, lambda: _whole_file(path))]
    return [(meta.row_group(i).num_rows, _row_group_reader(path, i)) for i in range(meta.num_row_groups)]


def _whole_file(path: Path) -> Iterator[pa.Table]:
    pf = pq.ParquetFile(path)
    if pf.metadata.num_rows == 0:  # still one (empty) table, so a per-partition file gets its schema
        yield pf.schema_arrow.empty_table()
        return
    for batch in pf.iter_batches():
        yield pa.Table.from_batches([batch])


def _row_group_reader(path: Path, index: int) -> Callable[[], Iterator[pa.Table]]:
    return lambda: iter([pq.ParquetFile(path).read_row_group(index)])


# -- delivery --------------------------------------------------------------------------
@dataclass
class Outcome:
    """How one batch's delivery ended."""

    delivered: bool
    attempts: int
    error: str | None = None
    permanent: bool = False


def deliver(sink: Sink, batch: Batch, cfg: Any, sleep: Callable[[float], None] = time.sleep) -> Outcome:
    """Send one batch with retries (exponential backoff and jitter; Retry-After honoured)."""
    backoff = wait_exponential_jitter(initial=cfg.backoff_seconds, max=cfg.max_backoff_seconds,
                                      jitter=cfg.backoff_seconds)

    def wait(state: Any) -> float:
        exc = state.outcome.exception()
        if isinstance(exc, DeliveryFailed) and exc.retry_after is not None:
            return min(exc.retry_after, MAX_RETRY_AFTER_S)
        return backoff(state)

    def before_sleep(state: Any) -> None:
        log.warning("batch %d/%d to %s: attempt %d failed (%s); retrying in %.1fs", batch.batch_no + 1,
                    batch.batch_count, sink.target, state.attempt_number, state.outcome.exception(),
                    state.next_action.sleep)

    retrying = Retrying(
        stop=stop_after_attempt(cfg.max_attempts), wait=wait, sleep=sleep, reraise=True,
        retry=retry_if_exception(lambda e: isinstance(e, DeliveryFailed) and e.retryable),
        before_sleep=before_sleep,
    )
    attempts = 0
    try:
        for attempt in retrying:
            with attempt:
                attempts = attempt.retry_state.attempt_number
                sink.send(batch)
    except DeliveryFailed as exc:
        return Outcome(False, attempts, redact.redact(str(exc)), permanent=not exc.retryable)
    return Outcome(True, attempts)


def write_deadletter(batch: Batch, sink: Sink, error: str, attempts: int) -> Path:
    """Keep an undelivered batch's rows (Parquet) and why (JSON) in the dead-letter folder."""
    folder = deadletter_dir(batch.job_id, batch.partition_date)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"batch-{batch.batch_no:05d}.parquet"
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(batch.table(), tmp)
    os.replace(tmp, path)
    meta = {"job_id": batch.job_id, "partition_date": batch.partition_date, "batch_no": batch.batch_no,
            "batch_count": batch.batch_count, "idempotency_key": batch.key, "rows": batch.rows,
            "model_name": batch.model_name, "model_version": batch.model_version,
            "sink": redact.redact(sink.target), "attempts": attempts, "error": redact.redact(error),
            "dead_lettered_at": ledger.now().isoformat()}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    return path


def _drop_deadletter(path: str | None) -> None:
    if path:
        Path(path).unlink(missing_ok=True)
        Path(path).with_suffix(".json").unlink(missing_ok=True)


@dataclass
class Tally:
    """Counts of one push or re-drive."""

    sent_ok: int = 0
    failed_rows: int = 0
    dead_rows: int = 0
    dead_batches: int = 0
    permanent: bool = True
    first_error: str | None = None


def send_all(engine: Engine, sink: Sink, cfg: Any, items: list[tuple[Batch, str | None]], *, run_id: str,
             sleep: Callable[[float], None] = time.sleep) -> Tally:
    """Deliver batches in order, recording each outcome; dead-letter what fails.

    ``items`` pairs each batch with its current dead-letter file (or None). After
    ``give_up_after_failed_batches`` failures in a row the rest are dead-lettered untried.
    """
    tally = Tally()
    in_a_row = 0
    started = time.perf_counter()
    for done, (batch, dead_path) in enumerate(items, 1):
        day = dt.date.fromisoformat(batch.partition_date)
        if in_a_row >= cfg.give_up_after_failed_batches:
            outcome = Outcome(False, 0, f"not attempted: {in_a_row} batches in a row failed before it "
                                        f"(first error: {tally.first_error})", permanent=tally.permanent)
        else:
            outcome = deliver(sink, batch, cfg, sleep)
        if outcome.attempts > 1 or not outcome.delivered:
            tally.failed_rows += batch.rows
        if outcome.delivered:
            in_a_row = 0
            tally.sent_ok += batch.rows
            deliveries.mark(engine, job_id=batch.job_id, partition_date=day, batch_no=batch.batch_no,
                            status=deliveries.DELIVERED, attempts=outcome.attempts, run_id=run_id, sink=sink.target,
                            key=batch.key)
            _drop_deadletter(dead_path)
        else:
            in_a_row += 1
            tally.first_error = tally.first_error or outcome.error
            tally.permanent = tally.permanent and outcome.permanent
            path = write_deadletter(batch, sink, outcome.error or "", outcome.attempts)
            tally.dead_rows += batch.rows
            tally.dead_batches += 1
            deliveries.mark(engine, job_id=batch.job_id, partition_date=day, batch_no=batch.batch_no,
                            status=deliveries.DEAD_LETTER, attempts=outcome.attempts, run_id=run_id,
                            error=outcome.error, dead_letter_path=str(path), sink=sink.target, key=batch.key)
            log.error("batch %d/%d (%d rows) not delivered to %s after %d attempts: %s; dead-lettered to %s",
                      batch.batch_no + 1, batch.batch_count, batch.rows, sink.target, outcome.attempts,
                      outcome.error, path)
        if done % 50 == 0 or done == len(items):
            seconds = max(time.perf_counter() - started, 1e-9)
            log.info("push: %d/%d batches handled, %d rows delivered (%.0f rows/s)", done, len(items),
                     tally.sent_ok, tally.sent_ok / seconds)
    return tally


def push_file(ctx: RunContext, counts: dict[str, Any] | None = None) -> dict[str, Any]:
    """The push stage: stage ``scored`` (or its top candidates) as the outbox, send it; keep none.

    The quarantine table is still replaced. A failed delivery raises DeliveryError carrying
    the delivery counts, so the ledger records what was sent and what was dead-lettered.
    """
    job, spec = ctx.job, ctx.spec
    if job.output.push is None:
        raise ConfigError(f"job {job.job_id} has no output.push sink")
    outbox = spec.work_dir / f"{steps.OUTBOX}.parquet"  # Parquet: its row groups are the batches
    selected, not_selected = build_outbox(
        job, ctx.parts(steps.SCORED), outbox, partition_date=spec.partition_date, model_name=spec.model_name,
        model_version=spec.model_version, batch_rows=job.output.push.sink.batch_rows)
    counts = counted(counts, rows_not_selected=not_selected)
    ctx.log.info("push: %d rows selected to send, %d not selected (%s)", selected, not_selected,
                 job.output.push.select.model_dump(exclude_none=True) or "no selection")
    if spec.dry_run:
        ctx.log.info("push: dry run, nothing sent")
        return counted(counts, rows_delivered=0, rows_dead_lettered=0, rows_failed=0)
    writes.replace_quarantine(ctx.engine, job_id=job.job_id, partition_date=parse_date(spec.partition_date),
                             quarantine=persist.quarantine_rows(ctx))
    try:
        counts.update(push_partition(
            ctx.engine, job, run_id=spec.run_id, partition_date=spec.partition_date, model_name=spec.model_name,
            model_version=spec.model_version, outbox=outbox, resend=spec.resend, resolver=ctx.resolver))
    except DeliveryError as exc:
        exc.counts = {**counts, **exc.counts}
        raise
    return counts


def push_partition(
    engine: Engine,
    job: JobConfig,
    *,
    run_id: str,
    partition_date: str,
    model_name: str,
    model_version: int,
    outbox: Path,
    resend: bool = False,
    resolver: Resolver | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Deliver the outbox's batches not yet delivered; raise DeliveryError if any are dead-lettered."""
    push = job.output.push
    assert push is not None
    cfg = push.sink
    redact.install(log)
    per_partition = getattr(cfg, "per", "batch") == "partition"
    parts = outbox_batches(outbox, per_partition)
    plan = plan_signature(job)
    keys = [idempotency_key(job.job_id, partition_date, model_name, model_version, plan, i, content_digest(read))
            for i, (_, read) in enumerate(parts)]
    day = dt.date.fromisoformat(partition_date)
    with open_sink(cfg, job.job_id, resolver) as sink:
        todo = deliveries.plan(engine, job_id=job.job_id, partition_date=day, sink=sink.target, plan_sig=plan,
                               keys=keys, row_counts=[rows for rows, _ in parts], model_name=model_name,
                               model_version=model_version, run_id=run_id, resend=resend)
        _sync_deadletter(engine, job.job_id, day)
        skipped = len(parts) - len(todo)
        log.info("push: %d batches (%d rows) to %s; %d already delivered%s, %d to send", len(parts),
                 sum(r for r, _ in parts), sink.target, skipped, " (resend asked: sending all)" if resend else "",
                 len(todo))
        dead = {r["batch_no"]: r["dead_letter_path"] for r in deliveries.batches(engine, job.job_id, day)}
        items = [(Batch(job.job_id, partition_date, model_name, model_version, i, len(parts), keys[i], parts[i][0],
                        parts[i][1]), dead.get(i)) for i in todo]
        tally = send_all(engine, sink, cfg, items, run_id=run_id, sleep=sleep)
        state = deliveries.summary(engine, job.job_id, day)
        if not tally.dead_batches and set(state) <= {deliveries.DELIVERED}:
            sink.finish(len(parts))
            _sync_deadletter(engine, job.job_id, day)
        counts = {
            "rows_delivered": state.get(deliveries.DELIVERED, {}).get("rows", 0),
            "rows_dead_lettered": state.get(deliveries.DEAD_LETTER, {}).get("rows", 0),
            "rows_failed": tally.failed_rows,
            "sink": sink.target,
        }
        if tally.dead_batches:
            raise _undelivered_error(job, partition_date, sink.target, tally, state, counts)
    return counts


def _undelivered_error(job: JobConfig, partition_date: str, target: str, tally: Tally,
                       state: dict[str, dict[str, int]], counts: dict[str, Any]) -> DeliveryError:
    total = sum(s["rows"] for s in state.values())
    batches_total = sum(s["batches"] for s in state.values())
    dead = state.get(deliveries.DEAD_LETTER, {"rows": 0, "batches": 0})
    cls = PermanentDeliveryError if tally.permanent else DeliveryError
    error = cls(redact.redact(
        f"partition {partition_date}: {dead['rows']} of {total} rows ({dead['batches']} of {batches_total} "
        f"batches) were not delivered to {target}. First error: {tally.first_error}. The rows are in "
        f"{deadletter_dir(job.job_id, partition_date)} (table scoring_deliveries, status 'dead_letter'). "
        f"{'Fix the request or the receiver (the error is not one a retry fixes), then' if tally.permanent else 'When the receiver is back,'} "
        f"re-drive them with `scoring redrive {job.job_id} --date {partition_date}` or clear this task; "
        "batches already delivered are not sent again."
    ))
    error.counts = counts
    return error


def _sync_deadletter(engine: Engine, job_id: str, day: dt.date) -> None:
    """Remove dead-letter files that no dead-lettered batch points to any more (re-planned or
    delivered batches); remove the partition's folder once it is empty."""
    folder = deadletter_dir(job_id, day.isoformat())
    if not folder.exists():
        return
    keep = {r["dead_letter_path"] for r in deliveries.batches(engine, job_id, day, status=deliveries.DEAD_LETTER)}
    for path in folder.glob("batch-*.parquet"):
        if str(path) not in keep:
            _drop_deadletter(str(path))
    if not any(folder.iterdir()):
        folder.rmdir()


def redrive(
    engine: Engine,
    job: JobConfig,
    partition_date: dt.date,
    *,
    resolver: Resolver | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Send a partition's dead-lettered batches again (same idempotency keys); record it in the ledger."""
    push = job.output.push
    if push is None:
        raise DeliveryError(f"job {job.job_id} has no output.push sink to re-drive to")
    day = partition_date.isoformat()
    dead = deliveries.batches(engine, job.job_id, partition_date, status=deliveries.DEAD_LETTER)
    if not dead:
        return {"status": "nothing to re-drive", "rows_in": 0, "rows_delivered": 0, "rows_dead_lettered": 0}
    plan = plan_signature(job)
    redact.install(log)
    with open_sink(push.sink, job.job_id, resolver) as sink:
        # redacted both sides: a row stored before targets were redacted still matches its sink
        changed = [r["batch_no"] for r in dead if r["plan"] != plan or redact.redact(r["sink"]) != sink.target]
        if changed:
            raise PermanentDeliveryError(
                f"partition {day}: the job's sink or batch plan changed since batches {changed} were dead-lettered "
                f"(they were planned for {redact.redact(dead[0]['sink'])}); re-driving them now would mix two "
                "layouts. Re-run "
                f"the partition instead (`scoring run {job.job_id} --date {day} --mode push`), which plans and "
                "sends it again under the current configuration."
            )
        run_id = f"redrive__{day}__{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}"
        attempt = ledger.start_attempt(engine, job_id=job.job_id, run_id=run_id, partition_date=partition_date,
                                       mode="redrive", dry_run=False, model_name=dead[0]["model_name"],
                                       model_version=dead[0]["model_version"])
        try:
            return _redrive(engine, job, sink, dead, run_id, attempt, sleep)
        except BaseException as exc:
            ledger.update(engine, job.job_id, run_id, attempt, status="failed", finished_at=ledger.now(),
                          failed_stage="redrive", error=redact.redact(str(exc))[:4000])
            raise


def _redrive(engine: Engine, job: JobConfig, sink: Sink, dead: list[dict[str, Any]], run_id: str, attempt: int,
             sleep: Callable[[float], None]) -> dict[str, Any]:
    day = str(dead[0]["partition_date"])[:10]
    partition_date = dt.date.fromisoformat(day)
    rows_in = sum(r["row_count"] for r in dead)
    items = []
    missing = []
    for r in dead:
        path = r["dead_letter_path"]
        if not path or not Path(path).exists():
            missing.append(f"batch {r['batch_no']}: {path}")
            continue
        items.append((Batch(job.job_id, day, r["model_name"], r["model_version"], r["batch_no"], r["batch_count"],
                            r["idempotency_key"], r["row_count"], _file_reader(Path(path))), path))
    log.info("redrive %s %s: %d dead-lettered batches (%d rows) to %s", job.job_id, day, len(dead), rows_in,
             sink.target)
    assert job.output.push is not None
    tally = send_all(engine, sink, job.output.push.sink, items, run_id=run_id, sleep=sleep)
    state = deliveries.summary(engine, job.job_id, partition_date)
    if set(state) <= {deliveries.DELIVERED}:
        sink.finish(dead[0]["batch_count"])
        _sync_deadletter(engine, job.job_id, partition_date)
    remaining = state.get(deliveries.DEAD_LETTER, {}).get("rows", 0)
    counts = {"rows_in": rows_in, "rows_delivered": tally.sent_ok, "rows_failed": tally.failed_rows,
              "rows_dead_lettered": remaining, "sink": sink.target}
    ledger.update(engine, job.job_id, run_id, attempt, **counts)
    if missing:
        raise DeliveryError(f"dead-letter files are missing for {len(missing)} batches ({'; '.join(missing)}): "
                            f"re-run the partition to plan and send them again")
    if tally.dead_batches:
        raise _undelivered_error(job, day, sink.target, tally, state, counts)
    ledger.update(engine, job.job_id, run_id, attempt, status="success", finished_at=ledger.now())
    return {"status": "success", "run_id": run_id, **counts}


def _file_reader(path: Path) -> Callable[[], Iterator[pa.Table]]:
    return lambda: iter([pq.read_table(path)])
