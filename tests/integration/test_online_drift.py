"""Online drift (pipeline.serve.drift): a day of online records judged with the batch's machinery. The same rows
scored in batch and recorded online give the same PSI, p-value and row count per feature; the online rows sit
beside the batch's in scoring_drift (source online, run_id online:<day>) and a second computation replaces them.
The rows are answered by the door itself (pipeline.serve.door) and recorded by the recorder."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from tests.conftest import DAY, write_job, write_partition

pytestmark = pytest.mark.slow
COLUMNS = "feature, model_name, model_version, kind, value, threshold, drifted, row_count, p_value"


def drift_rows(engine: sa.Engine, source: str) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT {COLUMNS}, run_id FROM scoring_drift WHERE job_id = 'online_dr' "  # noqa: S608
                                    "AND partition_date = :d AND source = :s"), {"d": DAY, "s": source}).mappings()
        return {r["feature"]: dict(r) for r in rows}


def record_online(job: Any, home: Path) -> tuple[int, int]:
    """The day's rows answered by the door, as a client sends them (JSON, requests of 100 rows), and recorded."""
    from pipeline.serve.door import Door
    from pipeline.serve.recorder import Recorder

    sent = [json.loads(json.dumps(r)) for r in pq.read_table(home / "data" / "churn" / f"date={DAY}").to_pylist()]
    door, recorder = Door(job), Recorder(job, queue_records=100_000, batch_rows=500)
    door.load()
    recorder.start()
    at = dt.datetime.combine(DAY, dt.time(12), tzinfo=dt.UTC)
    scored = 0
    for start in range(0, len(sent), 100):
        results = door.score(sent[start:start + 100], f"req-{start:05d}")
        recorder.put(results, f"req-{start:05d}", at)
        scored += sum(r.status == "scored" for r in results)
    assert recorder.stop() == 0
    return scored, len(sent)


def test_online_drift_equals_the_batch_kernel_on_the_same_rows(any_db: str, home: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    from pipeline import local
    from pipeline.config import load_job
    from pipeline.serve.drift import online_drift, run_id_of
    from pipeline.store import engines

    write_partition(home, n=2000, shift=1.0)  # shifted inputs: support_tickets_90d drifts
    job = load_job(write_job(home, "online_dr", drift={"on_breach": "ignore"}))
    assert local.run_partition(job, DAY, run_id="batch-1")["status"] == "success"
    engine = engines.for_connection("scoring_db")
    n, sent = record_online(job, home)
    with engine.connect() as conn:  # the generator's broken row was quarantined online too: not counted
        assert conn.execute(sa.text("SELECT COUNT(*) FROM online_dr_predictions_online WHERE status = 'quarantined'"
                                    )).scalar() == sent - n > 0

    with caplog.at_level(logging.WARNING, logger="pipeline.serve.drift"):
        results = online_drift(job, DAY)
    assert f"online drift of job online_dr on {DAY} (churn v1) not alerted (drift.on_breach: ignore): " \
        "support_tickets_90d (PSI 0.79" in caplog.text
    batch, online = drift_rows(engine, "batch"), drift_rows(engine, "online")
    assert set(online) == set(batch) and "support_tickets_90d" in online and "__score__" in online
    for feature, row in online.items():
        same = {k: batch[feature][k] for k in COLUMNS.split(", ")}
        assert {k: row[k] for k in same} == same, feature  # the same PSI, p-value, judgement and rows counted
        assert row["run_id"] == run_id_of(DAY) == f"online:{DAY}"
    assert online["support_tickets_90d"]["drifted"] and online["support_tickets_90d"]["row_count"] == n
    assert {r["feature"] for r in results if r["drifted"]} == {f for f, r in batch.items() if r["drifted"]}
    assert {(r["model_name"], r["model_version"]) for r in results} == {("churn", 1)}

    online_drift(job, DAY)  # computed again: replaced, not added; the batch's rows stay
    with engine.connect() as conn:
        counts = dict(conn.execute(sa.text("SELECT source, COUNT(*) FROM scoring_drift WHERE job_id = 'online_dr' "
                                           "GROUP BY source")).all())
    assert counts == {"batch": len(batch), "online": len(online)}

    flagging = job.model_copy(update={"drift": job.drift.model_copy(update={"on_breach": "flag"})})
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pipeline.serve.drift"):
        online_drift(flagging, DAY)  # alerted as the batch's breaches are (ERROR; the webhook when the job has one)
    [alert] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert alert.getMessage().startswith(f"ONLINE DRIFT ALERT job online_dr day {DAY}: 3 input(s) or output(s) of the "
                                         "online traffic answered by churn v1 drifted: PSI above 0.2")
    assert f"see table scoring_drift, run_id online:{DAY}" in alert.getMessage()

    assert local.run_partition(job, DAY, run_id="batch-2")["status"] == "success"  # the batch replaces its own rows
    assert drift_rows(engine, "online") == online
    assert {r["run_id"] for r in drift_rows(engine, "batch").values()} == {"batch-2"}


def test_each_model_version_of_the_day_is_judged_against_its_own_training(home: Path,
                                                                          challenger_models: Path) -> None:
    """v1 answers the morning, v2 (promoted) the afternoon: one set of results per version, each counted on its own
    scored rows and judged against its own card."""
    from pipeline.config import load_job
    from pipeline.kernels.drift import DriftTracker
    from pipeline.kernels.records import reading_for
    from pipeline.resolve import Models
    from pipeline.serve.door import Door
    from pipeline.serve.drift import online_drift
    from pipeline.serve.recorder import Recorder
    from tests.conftest import with_challenger

    version = with_challenger(home, challenger_models)
    write_partition(home, n=600)
    job = load_job(write_job(home, "online_dr"))
    later = job.model_copy(update={"model": job.model.model_copy(update={"ref": version})})
    sent = [json.loads(json.dumps(r)) for r in pq.read_table(home / "data" / "churn" / f"date={DAY}").to_pylist()]
    halves = {1: sent[:300], version: sent[300:]}
    recorder = Recorder(job, queue_records=10_000)
    recorder.start()
    answered: dict[int, list[Any]] = {}
    for v, door_job in ((1, job), (version, later)):
        door = Door(door_job)
        assert door.load().version == v
        answered[v] = door.score(halves[v], f"req-v{v}")
        recorder.put(answered[v], f"req-v{v}", dt.datetime.combine(DAY, dt.time(8 + 8 * (v > 1)), tzinfo=dt.UTC))
    assert recorder.stop() == 0

    results = online_drift(job, DAY)
    by_version: dict[int, dict[str, Any]] = {}
    for r in results:
        by_version.setdefault(r["model_version"], {})[r["feature"]] = r
    assert set(by_version) == {1, version}
    for v, rows in by_version.items():  # each version's numbers: the kernel's on that version's scored rows
        card = Models().card("churn", v)
        scored = [res for res in answered[v] if res.status == "scored"]
        tracker = DriftTracker(card, [c["name"] for c in card["inputs"]])
        tracker.add_inputs(reading_for(job, card["inputs"], card).read([res.inputs for res in scored]))
        tracker.add_scored(pa.table({"score": [res.score for res in scored],
                                     "prediction": [res.prediction for res in scored]}))
        expected = {e["feature"]: (e["value"], e["row_count"], e["p_value"]) for e in tracker.results(
            threshold=job.drift.psi_threshold, alpha=job.drift.alpha, min_rows=job.drift.min_rows)}
        assert {f: (r["value"], r["row_count"], r["p_value"]) for f, r in rows.items()} == expected
        assert rows["__score__"]["row_count"] == len(scored) > 250


def test_a_job_that_never_served_has_no_online_drift(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    from pipeline.config import load_job
    from pipeline.serve.drift import online_drift

    with caplog.at_level("WARNING", logger="pipeline.serve.drift"):
        assert online_drift(load_job(write_job(home, "online_dr")), DAY) == []
    assert ("job online_dr: no table online_dr_predictions_online: the online door has recorded nothing yet "
            "(scoring serve online_dr)") in caplog.text
