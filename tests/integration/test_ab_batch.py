"""A/B by rule in the nightly run (issue 28, points 1 and 5): a job's split sends each entity to an arm by the hash
of its key and a salt; the arm's version publishes its rows, the shadow table holds every other version's scores,
the ledger counts rows per arm, assignment periods are recorded, a broken arm falls back to the champion."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from pipeline import ab, local
from pipeline.config import load_job
from pipeline.errors import ConfigError
from pipeline.kernels.arms import assign
from pipeline.ledger import as_json
from pipeline.store import engines
from tests.conftest import DAY, scoring_cli, with_challenger, write_job, write_partition

TABLE = "churn_test_predictions"


def _job(home: Path, split: dict | None, challengers: list | None = None, job_id: str = "churn_test", **source):
    src = {"path": str(home / "data" / "churn"), "batch_rows": 300, **source}
    model = {"name": "churn", "ref": "champion", **({"split": split} if split else {}),
             **({"challengers": challengers} if challengers else {})}
    return load_job(write_job(home, job_id=job_id, source=src, model=model))


def _frame(sql: str, **params) -> pd.DataFrame:
    with engines.for_connection("scoring_db").connect() as conn:
        return pd.read_sql(sa.text(sql), conn, params=params)


def _day(day: dt.date, run_id: str | None = None) -> pd.DataFrame:
    return _frame(f"SELECT customer_id, prediction, score, model_name, model_version, arm, run_id FROM {TABLE} "
                  "WHERE partition_date = :d ORDER BY customer_id", d=day)


def _shadow(day: dt.date) -> pd.DataFrame:
    return _frame(f"SELECT customer_id, model_version, prediction, score FROM {TABLE}_shadow WHERE partition_date = :d",
                  d=day)


def _ledger(run_id: str) -> dict:
    row = _frame("SELECT * FROM scoring_runs WHERE run_id = :r ORDER BY attempt DESC", r=run_id).iloc[0].to_dict()
    row["arms"] = as_json(row["arms"]) if row["arms"] is not None else None
    return row


def _periods() -> list[dict]:
    return _frame("SELECT period, champion_version, salt, arms, change, first_partition, run_id FROM "
                  "scoring_ab_periods WHERE job_id = 'churn_test' ORDER BY period").to_dict("records")


@pytest.mark.parametrize("any_db", ["sqlite", "postgresql"], indirect=True)
def test_an_entity_keeps_its_arm_across_days_and_each_row_names_the_version_that_scored_it(
        any_db: str, home: Path, challenger_models: Path) -> None:
    version = with_challenger(home, challenger_models)
    next_day = DAY + dt.timedelta(days=1)
    write_partition(home, DAY, n=1500)
    write_partition(home, next_day, n=1500)
    job = _job(home, {"challenger": "30%"})
    first = local.run_partition(job, DAY, run_id="d1")
    second = local.run_partition(job, next_day, run_id="d2")
    assert first["status"] == second["status"] == "success"
    rows = {day: _day(day) for day in (DAY, next_day)}
    for day, frame in rows.items():
        expected = assign(frame["customer_id"].tolist(), "churn_test", [("challenger", 3000)])
        assert frame["arm"].tolist() == expected.tolist(), day  # the arm is the key's, nothing else's
        assert set(frame["arm"]) == {"champion", "challenger"}
        assert (frame["model_version"] == frame["arm"].map({"champion": 1, "challenger": version})).all()
        assert set(frame["model_name"]) == {"churn"}
        share = (frame["arm"] == "challenger").mean()
        assert 0.25 < share < 0.35, share
    both = rows[DAY].merge(rows[next_day], on="customer_id", suffixes=("_1", "_2"))
    assert len(both) > 1000 and (both["arm_1"] == both["arm_2"]).all(), "the same entity, the same arm, every day"

    # the shadow holds, for every row, the score of the version that did not publish it
    published = rows[next_day]
    shadow = _shadow(next_day)
    assert len(shadow) == len(published) and not shadow["customer_id"].duplicated().any()
    other = published.merge(shadow, on="customer_id", suffixes=("", "_shadow"))
    assert len(other) == len(published)
    assert (other["model_version_shadow"] != other["model_version"]).all()
    assert set(other["model_version_shadow"]) == {1, version}
    assert (other["score"] != other["score_shadow"]).mean() > 0.9, "two different models"
    # the comparison is still champion vs challenger over every row
    compared = _frame("SELECT * FROM scoring_shadow_comparisons WHERE partition_date = :d", d=next_day)
    assert len(compared) == 1 and compared["status"][0] == "compared"
    assert compared["rows_compared"][0] == len(published)

    # the ledger's rows per arm add up to the rows scored
    for run_id, frame in (("d1", rows[DAY]), ("d2", rows[next_day])):
        row = _ledger(run_id)
        arms = row["arms"]
        assert arms["period"] == 1 and arms["salt"] == "churn_test"
        assert arms["arms"]["champion"] == {"version": 1, "rows": int((frame["arm"] == "champion").sum())}
        assert arms["arms"]["challenger"] == {"version": version, "rows": int((frame["arm"] == "challenger").sum()),
                                              "fallback": False, "error": None}
        assert sum(a["rows"] for a in arms["arms"].values()) == row["rows_scored"] == len(frame)
    periods = _periods()
    assert len(periods) == 1 and periods[0]["change"] == "first split" and periods[0]["run_id"] == "d1"
    assert as_json(periods[0]["arms"]) == [{"name": "challenger", "version": version, "basis_points": 3000,
                                            "first_bucket": 0, "end_bucket": 3000}]

    # the latest-row table and the views keep working with the new column
    latest = _frame(f"SELECT customer_id, arm, model_version, partition_date FROM {TABLE}_latest")
    assert set(latest["arm"].dropna()) == {"champion", "challenger"} and len(latest) >= len(published)
    assert len(_frame(f"SELECT * FROM {TABLE}_daily WHERE partition_date = :d", d=next_day)) == 2


@pytest.mark.parametrize("any_db", ["sqlite", "postgresql"], indirect=True)
def test_a_sharded_run_gives_every_row_the_arm_and_score_of_an_unsharded_one(
        any_db: str, home: Path, challenger_models: Path) -> None:
    with_challenger(home, challenger_models)
    write_partition(home, n=1500, files=3)
    whole = local.run_partition(_job(home, {"challenger": 30}), DAY, run_id="whole")
    whole_rows, whole_shadow = _day(DAY), _shadow(DAY).sort_values(["customer_id", "model_version"])
    sharded = local.run_partition(_job(home, {"challenger": 30}, shards=3), DAY, run_id="sharded")
    assert whole["status"] == sharded["status"] == "success"
    got = _day(DAY)
    assert set(got["run_id"]) == {"sharded"}
    pd.testing.assert_frame_equal(got.drop(columns="run_id"), whole_rows.drop(columns="run_id"))
    pd.testing.assert_frame_equal(_shadow(DAY).sort_values(["customer_id", "model_version"]).reset_index(drop=True),
                                  whole_shadow.reset_index(drop=True))
    assert _ledger("sharded")["arms"]["arms"] == _ledger("whole")["arms"]["arms"]
    assert _ledger("sharded")["arms"]["period"] == 1 and len(_periods()) == 1


def test_a_new_share_opens_a_new_period_and_a_re_run_does_not(home: Path, challenger_models: Path) -> None:
    version = with_challenger(home, challenger_models)
    write_partition(home, n=800)
    local.run_partition(_job(home, {"challenger": 10}), DAY, run_id="p1")
    local.run_partition(_job(home, {"challenger": 10}), DAY, run_id="p1-again")
    assert [p["period"] for p in _periods()] == [1]
    ten = _day(DAY)
    dry = local.run_partition(_job(home, {"challenger": "20%"}), DAY, run_id="dry", dry_run=True)
    assert dry["status"] == "success" and _ledger("dry")["arms"] is None, "a dry run assigns no arms"
    assert [p["period"] for p in _periods()] == [1], "a dry run opens no period"
    local.run_partition(_job(home, {"challenger": "20%"}), DAY, run_id="p2")
    local.run_partition(_job(home, {"challenger": "20%"}), DAY, run_id="p2-again")
    periods = _periods()
    assert [(p["period"], p["change"], p["run_id"]) for p in periods] == [
        (1, "first split", "p1"), (2, "challenger 10% -> 20%", "p2")]
    assert _ledger("p2-again")["arms"]["period"] == 2 and _ledger("p1-again")["arms"]["period"] == 1
    twenty = _day(DAY)
    moved = ten.merge(twenty, on="customer_id", suffixes=("_10", "_20"))
    assert (moved.loc[moved["arm_10"] == "challenger", "arm_20"] == "challenger").all(), "growing only adds"
    assert (moved["arm_20"] == "challenger").sum() > (moved["arm_10"] == "challenger").sum()
    job = load_job(write_job(home, source={"path": str(home / "data" / "churn"), "batch_rows": 300},
                             model={"name": "churn", "ref": "champion", "split": {"challenger": 20},
                                    "split_salt": "round-2"}))
    local.run_partition(job, DAY, run_id="p3")
    job = load_job(write_job(home, source={"path": str(home / "data" / "churn"), "batch_rows": 300},
                             model={"name": "churn", "ref": "champion"}))
    local.run_partition(job, DAY, run_id="p4")
    local.run_partition(job, DAY, run_id="p4-again")
    assert [(p["period"], p["change"]) for p in _periods()][2:] == [
        (3, "salt changed: every entity reshuffled"), (4, "split removed")]
    assert _ledger("p4")["arms"] is None and _day(DAY)["arm"].isna().all()
    assert set(_day(DAY)["model_version"]) == {1} and version == 2


@pytest.mark.parametrize("any_db", ["sqlite", "postgresql"], indirect=True)
def test_an_arm_whose_artifact_was_tampered_with_falls_back_to_the_champion_with_a_warning(
        any_db: str, home: Path, challenger_models: Path) -> None:
    version = with_challenger(home, challenger_models)
    artifact = home / "models" / "churn" / f"v{version}" / "model.joblib"
    artifact.write_bytes(artifact.read_bytes() + b"tampered")
    write_partition(home, n=1000)
    summary = local.run_partition(_job(home, {"challenger": 30}), DAY, run_id="broken")
    assert summary["status"] == "success" and summary["rows_written"] == summary["rows_scored"] > 900
    rows = _day(DAY)
    expected = assign(rows["customer_id"].tolist(), "churn_test", [("challenger", 3000)])
    assert rows["arm"].tolist() == expected.tolist()
    assert set(rows["model_version"]) == {1}, "the arm's rows are the champion's"
    arms = _ledger("broken")["arms"]["arms"]
    assert arms["challenger"]["fallback"] is True and "sha256" in arms["challenger"]["error"]
    assert arms["challenger"]["rows"] == int((rows["arm"] == "challenger").sum()) > 200
    assert arms["challenger"]["version"] == version
    warnings = _ledger("broken")["warnings"]
    assert f"ab_arm_fallback: arm 'challenger' (churn v{version}) could not score" in warnings
    assert "scored by the champion v1" in warnings and "re-run the partition" in warnings
    assert len(_shadow(DAY)) == 0, "the broken version scored nothing"


@pytest.mark.parametrize("any_db", ["sqlite", "postgresql"], indirect=True)
def test_an_arm_with_another_contract_fails_the_run_before_a_row_is_read(any_db: str, home: Path) -> None:
    """A version of the champion registered with one input's nullability changed: a split over it is refused at
    the run's start, the differences named, before a row is read (the refused attempt is in the ledger)."""
    from pipeline import ledger
    from pipeline.registry import Registry

    registry = Registry()
    mv = registry.resolve("churn", "1")
    card = {k: v for k, v in mv.card.items() if k not in ("sha256", "version", "name", "registered_at")}
    flipped = next(c for c in card["inputs"] if c.get("nullable", True))
    flipped["nullable"] = False
    other = registry.register("churn", mv.artifact, card, golden=mv.path / "golden.parquet", alias="other")
    write_partition(home, n=300)
    with pytest.raises(ConfigError) as err:
        local.run_partition(_job(home, {"other": 10}), DAY, run_id="refused")
    text = str(err.value)
    assert text.startswith(f"job churn_test: model.split arm 'other' is churn v{other.version}, whose contract "
                           "differs from the champion v1's: ")
    assert f"input '{flipped['name']}' is not nullable (champion: nullable)" in text
    assert "compare this one in the shadow (model.challengers) instead" in text
    row = ledger.get(engines.for_connection("scoring_db"), "churn_test", "refused")
    assert row["status"] == "failed" and row["failed_stage"] == "start" and "whose contract differs" in row["error"]
    assert row["rows_in"] is None and row["arms"] is None and _periods() == []
    # the same refusal before any run: `scoring jobs check --models` (the file alone is valid: without --models, ok)
    assert scoring_cli("jobs", "check", str(home / "jobs")).returncode == 0
    checked = scoring_cli("jobs", "check", "--models", str(home / "jobs"))
    assert checked.returncode == 1 and "ERROR\tchurn_test" in checked.stderr, checked.stderr
    assert f"model.split arm 'other' is churn v{other.version}, whose contract differs" in checked.stderr


def test_the_metrics_of_a_fallback(home: Path) -> None:
    from pipeline import metrics

    row = {"job_id": "j", "status": "success", "mode": "persist", "dry_run": False, "partition_date": DAY,
           "arms": json.dumps({"period": 1, "salt": "j", "arms": {
               "champion": {"version": 1, "rows": 70}, "b": {"version": 2, "rows": 30, "fallback": True,
                                                              "error": "sha256"}}})}
    lines = metrics.run_lines(row)
    assert "scoring.ab.fallback_rows_total:30|c|#job:j,arm:b,version:2" in lines
    assert "scoring.ab.rows:30|g|#job:j,arm:b,version:1,fallback:true,dry_run:false" in lines
    assert "scoring.ab.rows:70|g|#job:j,arm:champion,version:1,fallback:false,dry_run:false" in lines
    assert ab.percent(1250) == "12.5%"
    shutil.rmtree(home / "models", ignore_errors=True)


def test_push_mode_sends_each_row_with_the_version_and_arm_that_scored_it(home: Path, challenger_models: Path) -> None:
    """Push mode reads the same scored rows: an arm's rows go to the sink with its version and arm; the other
    version's scores of every row go to the shadow table, never to the sink."""
    import pyarrow.parquet as pq

    version = with_challenger(home, challenger_models)
    write_partition(home, n=1000)
    out = home / "outbox"
    job = load_job(write_job(home, source={"path": str(home / "data" / "churn"), "batch_rows": 300},
                             model={"name": "churn", "ref": "champion", "split": {"challenger": 30}},
                             output={"mode": "push", "connection": "scoring_db", "table": TABLE,
                                     "push": {"sink": {"kind": "files", "uri": str(out), "per": "partition"}}}))
    summary = local.run_partition(job, DAY, run_id="pushed")
    assert summary["status"] == "success" and summary["rows_delivered"] == summary["rows_scored"]
    sent = pq.read_table(out / "churn_test" / f"date={DAY}" / "predictions.parquet").to_pandas()
    assert len(sent) == summary["rows_scored"]
    expected = assign(sent["customer_id"].tolist(), "churn_test", [("challenger", 3000)])
    assert sent["arm"].tolist() == expected.tolist()
    assert (sent["model_version"] == sent["arm"].map({"champion": 1, "challenger": version})).all()
    arms = _ledger("pushed")["arms"]["arms"]
    assert arms["challenger"]["rows"] == int((sent["arm"] == "challenger").sum())
    assert arms["champion"]["rows"] + arms["challenger"]["rows"] == summary["rows_scored"]
    shadow = _shadow(DAY).merge(sent[["customer_id", "model_version"]], on="customer_id", suffixes=("", "_sent"))
    assert len(shadow) == len(sent) and (shadow["model_version"] != shadow["model_version_sent"]).all()


@pytest.mark.parametrize("any_db", ["sqlite", "postgresql"], indirect=True)
def test_runs_finishing_together_open_a_changed_split_s_period_once(any_db: str, home: Path) -> None:
    """Eight partitions' runs reach finalize at once under a new split: one new period, all of them in it."""
    import logging
    import threading
    from types import SimpleNamespace

    from pipeline.staging import RunSpec
    from pipeline.store import operational

    engine = engines.for_connection("scoring_db")
    operational.ensure_ledger(engine)

    def ctx(i: int) -> SimpleNamespace:
        spec = RunSpec("churn_test", f"r{i}", 1, (DAY + dt.timedelta(days=i)).isoformat(), "churn", 3, False,
                       str(home / "staging" / f"r{i}"))
        return SimpleNamespace(spec=spec, engine=engine, log=logging.getLogger("test"))

    assert ab.record_period(ctx(99), "s", [ab.Arm("challenger", 4, 1000)]) == 1
    new = [ab.Arm("challenger", 4, 2000)]
    barrier, got, errors = threading.Barrier(8), {}, []

    def finish(i: int) -> None:
        try:
            barrier.wait()
            got[i] = ab.record_period(ctx(i), "s", new)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=finish, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert set(got.values()) == {2} and len(got) == 8
    assert [(p["period"], p["change"]) for p in _periods()] == [(1, "first split"), (2, "challenger 10% -> 20%")]


@pytest.mark.parametrize("any_db", ["sqlite", "postgresql"], indirect=True)
def test_a_predictions_table_made_before_the_arm_column_gets_it(any_db: str, home: Path,
                                                                  challenger_models: Path) -> None:
    """A table (and its latest-row table) of a release without ``arm``: the next run adds the column to both and
    makes the views anew; its old rows have a NULL arm, the split's rows their arm."""
    version = with_challenger(home, challenger_models)
    write_partition(home, n=600)
    local.run_partition(_job(home, None), DAY, run_id="before")
    engine = engines.for_connection("scoring_db")
    with engine.begin() as conn:  # as an earlier release left them
        conn.execute(sa.text(f"DROP VIEW {TABLE}_latest"))
        for table in (TABLE, f"{TABLE}_current"):
            conn.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN arm"))
    assert "arm" not in {c["name"] for c in sa.inspect(engine).get_columns(TABLE)}
    next_day = DAY + dt.timedelta(days=1)
    write_partition(home, next_day, n=600)
    assert local.run_partition(_job(home, {"challenger": 30}), next_day, run_id="after")["status"] == "success"
    for table in (TABLE, f"{TABLE}_current"):
        assert "arm" in {c["name"] for c in sa.inspect(engines.for_connection("scoring_db")).get_columns(table)}
    assert _day(DAY)["arm"].isna().all() and set(_day(DAY)["model_version"]) == {1}
    assert set(_day(next_day)["arm"]) == {"champion", "challenger"}
    latest = _frame(f"SELECT arm, model_version, partition_date, is_stale FROM {TABLE}_latest")
    fresh = latest[~latest["is_stale"].astype(bool)]
    assert set(fresh["arm"]) == {"champion", "challenger"} and set(fresh["model_version"]) == {1, version}
