"""Cascade inference (issue 14, point 1): a router's prediction chooses the model that scores each row."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from pipeline import local
from pipeline.config import load_job
from pipeline.errors import ConfigError, ModelIntegrityError
from pipeline.ledger import as_json, recent
from pipeline.store import engines
from tests.conftest import DAY, readopt, write_job, write_partition

CASCADE = {"routes": {"frequent": {"name": "churn_frequent"}, "occasional": {"name": "churn_occasional"}}}
ROUTE_STEPS = ("validate", "router_flags", "preprocess", "score")
STAGES = {"ingest", "validate", "preprocess", "score", "drift_gate", "persist", "finalize"}  # one per step of the plan


def _job(home: Path, cascade: dict | None = None, **kw):
    doc = {"model": {"name": "segments"}, "cascade": cascade or CASCADE,
           "output": {"table": "cascade_predictions", "connection": "scoring_db"}, **kw}
    return load_job(write_job(home, **doc))


def _stored(table: str = "cascade_predictions") -> pd.DataFrame:
    with engines.for_connection("scoring_db").connect() as conn:
        return pd.read_sql(sa.text(f"SELECT * FROM {table}"), conn).set_index("customer_id")


def _quarantine() -> pd.DataFrame:
    with engines.for_connection("scoring_db").connect() as conn:
        return pd.read_sql(sa.text("SELECT entity_key, reasons FROM scoring_quarantine"), conn)


def _rows(home: Path) -> pd.DataFrame:
    files = sorted((home / "data" / "churn" / f"date={DAY}").glob("*.parquet"))
    return pd.concat([pq.read_table(f).to_pandas() for f in files]).set_index("customer_id")


def _parts_in_the_ledger(row: dict, sharded: bool = False) -> dict[str, float]:
    """The score step's parts have their seconds in part_seconds by label (issue 26), each inside its step's entry
    of stage_seconds, whose keys stay one per step of the plan."""
    parts, stages = as_json(row["part_seconds"]), as_json(row["stage_seconds"])
    assert set(parts) == {"route", "merge_routes", *(f"{step}[route {route}]" for step in ROUTE_STEPS
                                                     for route in ("frequent", "occasional"))}, parts
    assert all(isinstance(v, float) and v > 0 for v in parts.values()), parts
    assert set(stages) == STAGES | ({"plan", "combine"} if sharded else set()), stages
    assert max(parts.values()) <= stages["score"]
    if not sharded:  # one task: the parts one after the other, within the step
        assert sum(parts.values()) <= stages["score"] + 0.01
    return parts


def _direct(name: str, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    from pipeline.registry import Registry
    from pipeline.score import load_scorer

    scorer = load_scorer(Registry(), name, 1)
    return scorer.predict(scorer.features(rows.reset_index()))


@pytest.mark.parametrize("any_db", ["sqlite", "postgresql"], indirect=True)
def test_each_route_equals_scoring_its_rows_with_its_model_directly(any_db: str, cascade_home: Path) -> None:
    home = cascade_home
    write_partition(home, n=1500)
    job = _job(home)
    summary = local.run_partition(job, DAY, run_id="c1")
    assert summary["status"] == "success"
    summary = local.run_partition(job, DAY, run_id="c2")  # a re-run replaces the partition
    stored, raw = _stored(), _rows(home)
    assert not stored.index.duplicated().any() and set(stored["run_id"]) == {"c2"}
    router_prediction, router_score = _direct("segments", raw.loc[stored.index])
    assert (stored["route"].to_numpy() == router_prediction.astype(str)).all(), "route = the router's prediction"
    assert set(stored["router_model"]) == {"segments"} and set(stored["router_version"]) == {1}
    for segment in ("frequent", "occasional"):
        mine = stored[stored["route"] == segment]
        assert len(mine) > 50 and set(mine["model_name"]) == {f"churn_{segment}"}
        features = raw.loc[mine.index].assign(router_prediction=segment,
                                              router_score=router_score[stored["route"].to_numpy() == segment])
        prediction, score = _direct(f"churn_{segment}", features)
        assert np.max(np.abs(mine["score"].to_numpy() - score)) <= 1e-12
        assert mine["prediction"].tolist() == [str(p) for p in prediction]
    routes = as_json(summary["routes"])
    assert summary["rows_in"] == summary["rows_scored"] + summary["rows_quarantined"]
    assert (routes["router_quarantined"] + routes["unrouted"] + routes["kept"]
            + sum(r["rows"] for r in routes["routes"].values())) == summary["rows_in"]
    assert sum(r["rows"] for r in routes["routes"].values()) == len(stored) + sum(
        r["quarantined"] for r in routes["routes"].values())
    assert summary["rows_scored"] == sum(r["scored"] for r in routes["routes"].values()) == len(stored)
    with engines.for_connection("scoring_db").connect() as conn:
        drift = conn.execute(sa.text("SELECT DISTINCT model_name FROM scoring_drift")).scalars().all()
    assert set(drift) == {"segments", "churn_frequent", "churn_occasional"}, "drift per model on the rows it saw"
    _parts_in_the_ledger(summary)


def test_unknown_routes_follow_the_policy_and_the_gate_keeps_the_routers_result(cascade_home: Path) -> None:
    home = cascade_home
    write_partition(home, n=800)
    only = {"routes": {"frequent": {"name": "churn_frequent"}}}
    summary = local.run_partition(_job(home, {**only, "default": "quarantine"},
                                       validation={"max_quarantine_share": 0.9}), DAY, run_id="q")
    stored, quarantined = _stored(), _quarantine()
    assert set(stored["route"]) == {"frequent"}
    lost = quarantined[quarantined["reasons"].str.contains("no_route")]
    assert len(lost) > 50 and set(lost["reasons"]) == {"segments@v1:no_route:occasional"}
    assert summary["rows_in"] == summary["rows_scored"] + summary["rows_quarantined"]
    local.run_partition(_job(home, {**only, "default": "keep"}), DAY, run_id="k")
    stored = _stored()
    kept = stored[stored["route"] == "occasional"]
    assert len(kept) > 50 and set(kept["model_name"]) == {"segments"}, "the router's own prediction stands"
    local.run_partition(_job(home, {**only, "default": {"name": "churn_occasional"}}), DAY, run_id="d")
    stored = _stored()
    assert set(stored.loc[stored["model_name"] == "churn_occasional", "route"].isna()) == {True}
    local.run_partition(_job(home, {**CASCADE, "gate": 1.01}), DAY, run_id="g")  # nothing passes the gate
    stored = _stored()
    assert set(stored["model_name"]) == {"segments"} and set(stored["route"]) == {"frequent", "occasional"}


def test_a_route_models_contract_quarantines_with_its_name(cascade_home: Path) -> None:
    """Rows the router accepts but the route's model does not are quarantined, naming that model."""
    home = cascade_home
    card_path = home / "models" / "churn_frequent" / "v1" / "card.json"
    card = json.loads(card_path.read_text())
    for column in card["inputs"]:
        if column["name"] == "monthly_charges":
            column["max"] = 60.0  # stricter than the data: many frequent customers pay more
    card_path.write_text(json.dumps(card))
    readopt("churn_frequent")  # the card changed by hand: anchored as it is now, or it would be refused
    write_partition(home, n=800)
    summary = local.run_partition(_job(home, validation={"max_quarantine_share": 0.9}), DAY, run_id="s")
    reasons = _quarantine()["reasons"]
    assert reasons.str.startswith("churn_frequent@v1:be_between:monthly_charges").sum() > 10
    assert summary["rows_in"] == summary["rows_scored"] + summary["rows_quarantined"]


def test_a_route_step_that_fails_is_named_in_the_ledger(cascade_home: Path) -> None:
    """A route's steps run through the run's bookkeeping (issue 26): a tampered route model fails the run at
    that route's score step, named in failed_stage, with the router's counts of the score step kept."""
    home = cascade_home
    artifact = home / "models" / "churn_occasional" / "v1" / "model.joblib"
    artifact.write_bytes(artifact.read_bytes() + b"tampered")
    write_partition(home, n=600)
    with pytest.raises(ModelIntegrityError):
        local.run_partition(_job(home), DAY, run_id="t")
    [row] = recent(engines.for_connection("scoring_db"), "churn_test", limit=1)
    assert (row["status"], row["failed_stage"]) == ("failed", "score[route occasional]")
    assert row["rows_scored"] > 500 and "churn_occasional" in row["error"]
    parts = as_json(row["part_seconds"])  # the parts that finished before the failure, timed
    assert set(parts) == {"route", *(f"{step}[route frequent]" for step in ROUTE_STEPS),
                          "validate[route occasional]", "router_flags[route occasional]",
                          "preprocess[route occasional]"}, parts
    assert all(v > 0 for v in parts.values()) and "score" not in as_json(row["stage_seconds"])


def test_push_mode_carries_the_lineage(cascade_home: Path) -> None:
    home = cascade_home
    write_partition(home, n=600)
    out = home / "pushed"
    job = _job(home, output={"mode": "push", "connection": "scoring_db",
                             "push": {"sink": {"kind": "files", "uri": str(out)}}})
    assert local.run_partition(job, DAY, run_id="p")["status"] == "success"
    sent = pd.concat([pd.read_parquet(f) for f in sorted(out.rglob("*.parquet"))])
    assert {"route", "model_name", "model_version", "router_model", "router_version"} <= set(sent.columns)
    assert set(sent["router_model"]) == {"segments"}
    assert set(sent["model_name"]) == {"churn_frequent", "churn_occasional"}


@pytest.mark.parametrize("any_db", ["sqlite", "postgresql"], indirect=True)
def test_a_sharded_cascade_equals_the_unsharded_one(any_db: str, cascade_home: Path) -> None:
    home = cascade_home
    write_partition(home, n=1500, files=3)
    source = {"path": str(home / "data" / "churn"), "batch_rows": 200}

    def outcome(run_id: str, shards: int) -> tuple:
        summary = local.run_partition(_job(home, source={**source, "shards": shards}), DAY, run_id=run_id)
        _parts_in_the_ledger(summary, sharded=shards > 1)  # a shard's labels without the shard: the slowest's
        stored = _stored().sort_index()[["prediction", "score", "route", "model_name", "model_version"]]
        with engines.for_connection("scoring_db").connect() as conn:
            drift = conn.execute(sa.text("SELECT model_name, feature, value FROM scoring_drift ORDER BY 1, 2")).all()
        return stored, sorted(_quarantine().itertuples(index=False)), as_json(summary["routes"]), drift

    whole, sharded = outcome("whole", 1), outcome("sharded", 3)
    pd.testing.assert_frame_equal(whole[0], sharded[0])
    assert whole[1] == sharded[1] and whole[2] == sharded[2]
    assert [(m, f) for m, f, _ in whole[3]] == [(m, f) for m, f, _ in sharded[3]]
    assert [v for *_, v in whole[3]] == pytest.approx([v for *_, v in sharded[3]], rel=1e-9)


def test_a_cascade_is_checked_when_the_job_loads(cascade_home: Path) -> None:
    with pytest.raises(ConfigError, match="routes"):
        _job(cascade_home, {"routes": {}})
    with pytest.raises(ConfigError, match="not supported yet"):
        _job(cascade_home, model={"name": "segments", "challengers": ["2"]})
