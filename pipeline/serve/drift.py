"""Daily drift of the online traffic, with the batch's machinery: the day's scored rows of
``<output.table>_online`` are read back as the job's source would read them (``kernels.records``, the door's
own reading), counted by the drift kernel (``kernels.drift.DriftTracker``: the same bins, PSI and chi-square
test as a batch run) per model version that answered that day, judged with the job's ``drift`` settings and
written to ``scoring_drift`` with ``source`` online and run_id ``online:<day>``, beside the batch's rows of the
same partition, where the alerts and the dashboard read them. Computing a day again replaces its online rows.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from sqlalchemy.engine import Engine

from pipeline import alerts
from pipeline.errors import ConfigError
from pipeline.kernels.drift import DriftTracker, describe, drifted, has_statistics
from pipeline.kernels.records import RecordReading, reading_for
from pipeline.resolve import Models
from pipeline.store import engines, online, operational

if TYPE_CHECKING:
    from pipeline.config import JobConfig

log = logging.getLogger(__name__)

BATCH_ROWS = 10_000  # rows read from the online table at a time (memory does not grow with the day)


def run_id_of(day: dt.date) -> str:
    """The run id of a day's online drift in ``scoring_drift``: ``online:<day>``."""
    return f"online:{day.isoformat()}"


@dataclass
class _Version:
    """One model version's count of the day: its card, its reading of the records, its tracker."""

    card: dict[str, Any]
    reading: RecordReading
    tracker: DriftTracker
    rows: int = 0


def online_drift(job: JobConfig, day: dt.date, *, engine: Engine | None = None,
                 models: Models | None = None) -> list[dict[str, Any]]:
    """PSI and the chi-square test of the day's online inputs, score and predicted classes against each
    answering model version's training statistics; the day's online rows of ``scoring_drift`` replaced by them.
    Returns the judged results, each with its ``model_name`` and ``model_version``."""
    if job.output.table is None:
        raise ConfigError(f"job {job.job_id}: online drift reads <output.table>_online and the job file has no "
                          "output.table")
    engine = engine or engines.for_connection(job.output.connection)
    models = models or Models()
    operational.ensure_ledger(engine)  # scoring_drift at the newest revision (its source column)
    versions = _count(job, day, engine, models)
    results = []
    for (name, version), state in sorted(versions.items()):
        results += _judged(job, day, name, version, state)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = [{"p_value": None, **{k: v for k, v in r.items() if k in _DRIFT_COLUMNS}, "job_id": job.job_id,
             "partition_date": day, "run_id": run_id_of(day), "computed_at": now} for r in results]
    with engines.begin(engine) as conn:
        operational.replace_drift(conn, job.job_id, day, rows, "online")
    bad = drifted(results)
    if bad:
        _alert(job, day, bad)
    else:
        log.info("job %s: online drift of %s recorded for %d model version(s), no breach", job.job_id, day,
                 len(versions))
    return results


def _alert(job: JobConfig, day: dt.date, bad: list[dict[str, Any]]) -> None:
    """A breach of the online traffic: alerted as the batch's (ERROR, the job's drift.alert_connection), unless the
    job's drift.on_breach is ignore (one WARNING). Nothing is held back: the door gave its answers."""
    models = ", ".join(sorted({f"{r['model_name']} v{r['model_version']}" for r in bad}))
    if job.drift.on_breach == "ignore":
        log.warning("online drift of job %s on %s (%s) not alerted (drift.on_breach: ignore): %s", job.job_id, day,
                    models, describe(bad))
        return
    text = (f"ONLINE DRIFT ALERT job {job.job_id} day {day}: {len(bad)} input(s) or output(s) of the online traffic "
            f"answered by {models} drifted: PSI above {job.drift.psi_threshold:g} and significant (chi-square, alpha "
            f"{job.drift.alpha:g}): {describe(bad)}. The door answered every request (it holds no answer back); see "
            f"table scoring_drift, run_id {run_id_of(day)}, beside the batch's drift of that day. If the shift is "
            "real, register a retrained model.")
    alerts.send(text, job.drift.alert_connection,
                {"job_id": job.job_id, "day": str(day), "run_id": run_id_of(day), "source": "online",
                 "policy": job.drift.on_breach,
                 "drifted": [{k: r.get(k) for k in ("model_name", "model_version", "feature", "kind", "value",
                                                    "threshold", "row_count", "p_value")} for r in bad]},
                f"online-drift-{job.job_id}-{day}", logger=log)


_DRIFT_COLUMNS = ("model_name", "model_version", "feature", "kind", "statistic", "value", "threshold", "drifted",
                  "row_count", "p_value")


def _count(job: JobConfig, day: dt.date, engine: Engine, models: Models) -> dict[tuple[str, int], _Version]:
    """The day's scored online rows counted into a tracker per model version, read in batches."""
    assert job.output.table is not None
    versions: dict[tuple[str, int], _Version] = {}
    after: tuple[str, int] = ("", -1)
    with engine.connect() as conn:
        if online.key_type_of(conn, online.table_of(job.output.table), "entity_key", job.output.schema_) is None:
            log.warning("job %s: no table %s: the online door has recorded nothing yet (scoring serve %s)", job.job_id,
                        online.table_of(job.output.table), job.job_id)
            return versions
        counts = online.day_counts(conn, job.output.table, day, job.output.schema_)
        while True:
            batch = online.scored_inputs(conn, job.output.table, day, after=after, limit=BATCH_ROWS,
                                         schema=job.output.schema_)
            if not batch:
                break
            after = (batch[-1].request_id, batch[-1].row_index)
            by_version: dict[tuple[str, int], list[Any]] = {}
            for r in batch:
                by_version.setdefault((r.model_name, int(r.model_version)), []).append(r)
            for ref, rows in by_version.items():
                if ref not in versions:
                    versions[ref] = _start(job, models, *ref)
                _add(versions[ref], rows)
    if counts.get("no_inputs"):
        log.warning("job %s: %d scored online row(s) of %s were recorded without their inputs (online.record_inputs: "
                    "false when they were answered): their drift is not counted", job.job_id, counts["no_inputs"], day)
    return versions


def _start(job: JobConfig, models: Models, name: str, version: int) -> _Version:
    """A model version's reading and tracker, from its checked card."""
    card = models.card(name, version)
    reading = reading_for(job, card["inputs"], card)
    return _Version(card, reading, DriftTracker(card, [c["name"] for c in card["inputs"]]))


def _add(state: _Version, rows: list[Any]) -> None:
    """Count rows (of one model version) into its tracker: their inputs as the source reads them, their scores."""
    state.tracker.add_inputs(state.reading.read([json.loads(r.inputs) for r in rows]))
    state.tracker.add_scored(pa.table({"score": pa.array([r.score for r in rows], pa.float64()),
                                       "prediction": pa.array([r.prediction for r in rows], pa.string())}))
    state.rows += len(rows)


def _judged(job: JobConfig, day: dt.date, name: str, version: int, state: _Version) -> list[dict[str, Any]]:
    """A version's results as a batch run judges them; none below drift.min_rows or without training statistics."""
    if state.rows < job.drift.min_rows:
        log.info("job %s: %s v%d answered %d scored online row(s) on %s, fewer than drift.min_rows (%d): not "
                 "checked", job.job_id, name, version, state.rows, day, job.drift.min_rows)
        return []
    if not has_statistics(state.card):
        log.warning("job %s: online drift NOT checked for %s v%d: its card has no training statistics", job.job_id,
                    name, version)
        return []
    results = state.tracker.results(threshold=job.drift.psi_threshold, alpha=job.drift.alpha,
                                    min_rows=job.drift.min_rows)
    return [{**r, "model_name": name, "model_version": version} for r in results]
