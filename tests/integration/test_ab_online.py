"""A/B by rule in the online door (issue 28, points 1 and 5): a job with ``model.split`` served by the door.

Each row's arm is ``kernels.arms.assign`` of its key (the nightly run's rule) and that arm's version scores it,
bit for bit as the nightly run scores that version; zero-padded text keys and integer keys are different
entities, as the source types them; a 30% split lands near 30%. A tampered arm falls back to the champion
(its rows keep their arm, the champion's version scores them) with a metric and one log line, the door staying
ready; an arm whose alias moves is picked up by a reload without a failed request; an arm with another
contract stops the server from starting, naming the arm and the difference. Real registry with anchors, real
SQLite and PostgreSQL, real uvicorn.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pipeline import ab, local
from pipeline.config import JobConfig, load_job
from pipeline.demo.train import train_churn
from pipeline.errors import ConfigError
from pipeline.kernels.arms import assign
from pipeline.registry import Registry
from pipeline.serve.door import Door
from pipeline.serve.server import Service
from pipeline.store import engines, online
from tests.conftest import (
    DAY,
    clean_customers,
    readopt,
    scoring_cli,
    switch_while_scoring,
    with_challenger,
    write_job,
    write_partition,
)
from tests.integration.test_online_parity import _duplicated, _read_export, _typed
from tests.integration.test_serve_app import client, running

SPLIT = {"name": "churn", "ref": "champion", "split": {"challenger": 30}}


def _split_job(home: Path, job_id: str = "ab_door", **overrides: Any) -> JobConfig:
    return load_job(write_job(home, job_id=job_id, model=SPLIT, **overrides))


def _csv(home: Path) -> dict[str, Any]:
    """The source of a CSV export (``write_partition(fmt="csv")``)."""
    return {"path": str(home / "data" / "churn"), "format": "csv", "batch_rows": 128}


def _rows(keys: list[Any]) -> list[dict[str, Any]]:
    """Demo rows every one of which the contract scores, with the given keys."""
    frame = clean_customers(len(keys) + 50).head(len(keys))
    out = [{k: (None if v != v else v) for k, v in r.items()} for r in frame.to_dict("records")]
    for row, key in zip(out, keys, strict=True):
        row["customer_id"] = key
    return out


def _stored(table: str) -> dict[str, tuple[float, int]]:
    """A predictions table's (score, model_version) by key text, for the test day."""
    with engines.for_connection("scoring_db").connect() as conn:
        rows = conn.execute(sa.text(f"SELECT customer_id, score, model_version FROM {table} "
                                    "WHERE partition_date = :d"), {"d": DAY})
        return {str(k): (s, int(v)) for k, s, v in rows}


@pytest.mark.parametrize("any_db", ["sqlite", "postgresql"], indirect=True)
def test_each_entity_gets_its_arm_and_the_arm_versions_nightly_score(any_db: str, home: Path,
                                                                       challenger_models: Path) -> None:
    """The door's arm of every key is the nightly rule's; its score is the batch score of that arm's version."""
    second = with_challenger(home, challenger_models)
    folder = write_partition(home, n=400, fmt="csv")
    by_version = {}
    for version in (1, second):  # each version's own nightly scores of the partition (a plain job pinned to it)
        job = load_job(write_job(home, job_id=f"ab_v{version}", model={"name": "churn", "ref": str(version)},
                                 source=_csv(home)))
        assert local.run_partition(job, DAY, run_id=f"v{version}")["status"] == "success"
        by_version[version] = _stored(job.output.table)
    job = _split_job(home, source=_csv(home))
    door = Door(job)
    assert door.load().version == 1
    assert door.served is not None and door.served.arms == {
        "challenger": {"version": second, "basis_points": 3000, "fallback": False}}
    export = _read_export(folder)
    duplicated = _duplicated(export, "customer_id")
    sent = [_typed(r) for r in export if r["customer_id"] and r["customer_id"] not in duplicated]
    results = []
    for start in range(0, len(sent), 50):
        results += door.score(sent[start:start + 50], f"ab-{start}")
    expected = assign([r["customer_id"] for r in sent], ab.salt(job), [("challenger", 3000)])
    assert len(results) > 350 and [r.arm for r in results] == list(expected)
    checked = {"champion": 0, "challenger": 0}
    for result in results:
        key = str(result.key)
        if key not in by_version[1]:  # quarantined by the nightly run too
            assert result.status == "quarantined", key
            continue
        version = second if result.arm == "challenger" else 1
        assert (result.score, result.model_version) == by_version[version][key], (key, result.arm)  # bit for bit
        checked[result.arm] += 1
    assert checked["challenger"] > 60 and checked["champion"] > 200, checked
    differing = sum(by_version[1][k][0] != by_version[second][k][0] for k in by_version[1])
    assert differing > len(by_version[1]) / 2, "the two versions score differently: the arm's version is told apart"


def test_the_nightly_split_run_and_the_door_agree_row_by_row(home: Path, challenger_models: Path) -> None:
    """The cross test: the split job's own nightly run (its predictions' arm column) against the door."""
    with_challenger(home, challenger_models)
    folder = write_partition(home, n=300, fmt="csv")
    job = _split_job(home, source=_csv(home))
    summary = local.run_partition(job, DAY, run_id="split")
    assert summary["status"] == "success", summary
    with engines.for_connection("scoring_db").connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns(job.output.table)}
        assert "arm" in columns, "the nightly split run records each row's arm in its predictions table"
        stored = {str(k): (a, s, int(v)) for k, a, s, v in conn.execute(sa.text(
            f"SELECT customer_id, arm, score, model_version FROM {job.output.table} WHERE partition_date = :d"),
            {"d": DAY})}
    door = Door(job)
    door.load()
    export = _read_export(folder)
    duplicated = _duplicated(export, "customer_id")
    sent = [_typed(r) for r in export if r["customer_id"] and r["customer_id"] not in duplicated
            and r["customer_id"] in stored]
    results = door.score(sent, "cross")
    assert len(results) == len(sent) > 250
    for result in results:
        assert (result.arm, result.score, result.model_version) == stored[str(result.key)], result.key
    assert {r.arm for r in results} == {"champion", "challenger"}


def test_text_keys_with_zeros_and_integer_keys_get_the_arms_of_their_own_text(home: Path,
                                                                              challenger_models: Path) -> None:
    """A 30% split over 600 keys: ``00017`` (a text key) and ``17`` (an integer key) are two entities; shares near
    30%; every arm is the rule's."""
    with_challenger(home, challenger_models)
    numbers = list(range(1, 601))
    as_int = _split_job(home, job_id="ab_int", entity_key_type="integer")
    as_text = load_job(write_job(home, job_id="ab_text", entity_key_type="string",
                                 model={**SPLIT, "split_salt": "ab_int"}))
    assert ab.salt(as_int) == ab.salt(as_text) == "ab_int"
    arms = {}
    for job, keys in ((as_int, numbers), (as_text, [f"{n:05d}" for n in numbers])):
        door = Door(job)
        door.load()
        results = door.score(_rows(keys), job.job_id)
        assert [r.key for r in results] == keys and {r.status for r in results} == {"scored"}
        assert [r.arm for r in results] == list(assign(keys, "ab_int", [("challenger", 3000)]))
        assert all(r.model_version == (2 if r.arm == "challenger" else 1) for r in results)
        arms[job.job_id] = [r.arm for r in results]
        share = arms[job.job_id].count("challenger") / len(keys)
        assert 0.24 < share < 0.36, (job.job_id, share)  # 30% within about 3 standard deviations of 600 keys
    moved = sum(a != b for a, b in zip(arms["ab_int"], arms["ab_text"], strict=True))
    assert moved > 100, "00017 and 17 are different entities: about 42% of them land in different arms"


def test_a_tampered_arm_falls_back_to_the_champion_with_a_metric_and_one_log_line(
        home: Path, challenger_models: Path, caplog: pytest.LogCaptureFixture) -> None:
    second = with_challenger(home, challenger_models)
    artifact = Registry().resolve("churn", second).artifact
    artifact.write_bytes(artifact.read_bytes() + b"\x00")
    job = _split_job(home)
    keys = list(range(1, 41))
    plain = Door(load_job(write_job(home, job_id="ab_plain")))  # the champion alone
    plain.load()
    champion = {r.key: r.score for r in plain.score(_rows(keys), "plain")}
    caplog.set_level(logging.WARNING, logger="pipeline.serve.door")
    with running(job) as service, client(service) as http:
        answers = [http.post("/v1/jobs/ab_door:score", json=_rows(keys)) for _ in range(3)]
        ready = http.get("/health/ready").json()
        rows = _rows(keys)
        v2 = http.post("/v2/models/ab_door/infer", json={"inputs": [
            {"name": name, "shape": [len(rows)], "datatype": "BYTES", "data": [r[name] for r in rows]}
            for name in rows[0]]})
        documented = http.get("/openapi.json").json()["components"]["schemas"]["RowAnswer"]["properties"]
        metrics = http.get("/metrics").text
    assert [a.status_code for a in answers] == [200, 200, 200]
    results = answers[0].json()["results"]
    expected = list(assign(keys, "ab_door", [("challenger", 3000)]))
    assert [r["arm"] for r in results] == expected and "challenger" in expected
    assert all(r["model"] == {"name": "churn", "version": 1} for r in results), "the champion scored every row"
    assert all(r["score"] == champion[r["key"]] for r in results)
    assert ready["status"] == "ready" and ready["arms"] == [
        {"arm": "challenger", "version": second, "basis_points": 3000, "fallback": True}]
    outputs = {o["name"]: o["data"] for o in v2.json()["outputs"]}
    assert outputs["arm"] == expected and set(outputs["model_version"]) == {1}
    assert "arm" in documented and "model.split" in documented["arm"]["description"]
    fallen = 4 * expected.count("challenger")
    assert f'scoring_online_arm_fallbacks_total{{arm="challenger",job="ab_door"}} {float(fallen)}' in metrics
    assert 'scoring_online_arm_fallback{arm="challenger",job="ab_door"} 1.0' in metrics
    lines = [r.getMessage() for r in caplog.records if "model.split arm" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "arm 'challenger' cannot serve" in lines[0] and f"v{second} is not loaded: ModelIntegrityError" in lines[0]
    assert "scored by the champion churn v1" in lines[0]
    with engines.for_connection("scoring_db").connect() as conn:  # every answered row recorded with its arm
        recorded = conn.execute(sa.text(f"SELECT arm, model_version, COUNT(*) FROM {online.table_of(job.output.table)}"
                                        " GROUP BY arm, model_version ORDER BY arm")).all()
    assert [tuple(r) for r in recorded] == [("challenger", 1, fallen), ("champion", 1, 4 * expected.count("champion"))]


def test_a_reload_moving_an_arms_alias_changes_its_scores_without_a_failed_request(
        home: Path, challenger_models: Path) -> None:
    second = with_challenger(home, challenger_models)
    registry = Registry()
    third = train_churn(registry, end=DAY - dt.timedelta(days=4), days=1, n=1500, seed=13, alias=None).version
    job = _split_job(home)
    door = Door(job)
    door.load()
    keys = list(range(1, 61))
    rows = _rows(keys)
    before = door.score(rows, "before")

    def switch() -> None:
        registry.promote("churn", third, alias="challenger")
        assert door.refresh() is True

    answers, _ = switch_while_scoring(lambda: [(r.arm, r.model_version, r.score) for r in door.score(rows, "loop")],
                                      switch)
    after = door.score(rows, "after")
    assert [r.arm for r in after] == [r.arm for r in before], "the split and the salt did not change: nor the arms"
    challenger = [i for i, r in enumerate(after) if r.arm == "challenger"]
    assert challenger and {before[i].model_version for i in challenger} == {second}
    assert {after[i].model_version for i in challenger} == {third}
    assert any(after[i].score != before[i].score for i in challenger), "the new version scores the arm's rows"
    assert all(after[i].score == before[i].score for i in range(len(keys)) if i not in challenger)
    for answer in answers:  # a request is answered by one generation: the arm's rows all by v2, or all by v3
        assert len({v for arm, v, _ in answer if arm == "challenger"}) == 1, answer
    assert door.reload_failures == 0 and door.served is not None and door.served.arms["challenger"]["version"] == third


def test_an_arm_with_another_contract_stops_the_server_from_starting(home: Path, challenger_models: Path) -> None:
    second = with_challenger(home, challenger_models)
    card_path = home / "models" / "churn" / f"v{second}" / "card.json"
    card = json.loads(card_path.read_text())
    for column in card["inputs"]:
        if column["name"] == "tenure_months":
            column["nullable"] = True
    card_path.write_text(json.dumps(card))
    readopt("churn")
    job = _split_job(home)
    with pytest.raises(ConfigError) as refused:
        Service(job, port=0, tokens=["t"]).open()
    message = str(refused.value)
    assert "model.split arm 'challenger'" in message and f"churn v{second}" in message
    assert "input 'tenure_months' is nullable (champion: not nullable)" in message
    cli = scoring_cli("serve", "ab_door", "--no-auth", "--port", "0")
    assert cli.returncode != 0 and "input 'tenure_months' is nullable" in cli.stderr, cli
    assert "Traceback" not in cli.stderr


def test_a_door_reloading_into_another_contract_keeps_the_last_good_generation(
        home: Path, challenger_models: Path, caplog: pytest.LogCaptureFixture) -> None:
    second = with_challenger(home, challenger_models)
    registry = Registry()
    third = train_churn(registry, end=DAY - dt.timedelta(days=4), days=1, n=1500, seed=13, alias=None).version
    card_path = home / "models" / "churn" / f"v{third}" / "card.json"
    card = json.loads(card_path.read_text())
    for column in card["inputs"]:
        if column["name"] == "age":
            column["type"] = "int"
    card_path.write_text(json.dumps(card))
    readopt("churn")
    door = Door(_split_job(home))
    door.load()
    registry.promote("churn", third, alias="challenger")
    assert door.refresh() is False and door.refresh() is False
    assert door.reload_failures == 2 and "input 'age' is int (champion: float)" in (door.last_reload_error or "")
    assert door.served is not None and door.served.arms["challenger"]["version"] == second
    refusals = [r for r in caplog.records if r.levelname == "ERROR" and "not loaded, still serving" in r.message]
    assert len(refusals) == 1 and f"arm challenger: churn v{third}" in refusals[0].message
    assert {r.model_version for r in door.score(_rows(list(range(1, 31))), "still") if r.arm == "challenger"} == {second}


@pytest.mark.parametrize("any_db", ["sqlite", "postgresql"], indirect=True)
def test_an_online_table_made_before_the_arm_column_gets_it(any_db: str, home: Path) -> None:
    engine = engines.for_connection("scoring_db")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE old_online (request_id TEXT NOT NULL, row_index INTEGER NOT NULL, "
                             "entity_key BIGINT, received_at TIMESTAMP NOT NULL, day DATE NOT NULL, model_name TEXT, "
                             "model_version INTEGER, status TEXT NOT NULL, prediction TEXT, score DOUBLE PRECISION, "
                             "flags TEXT, reasons TEXT, inputs TEXT, inputs_sha256 TEXT NOT NULL, "
                             "PRIMARY KEY (request_id, row_index))")
        conn.exec_driver_sql("INSERT INTO old_online VALUES ('old', 0, 7, '2026-11-20 10:00:00', '2026-11-20', "
                             "'churn', 1, 'scored', '0', 0.25, NULL, NULL, NULL, 'x')")
    assert online.ensure_online(engine, "old", "str") == "int", "the table in place keeps its key type"
    with engine.begin() as conn:
        online.insert(conn, [{"request_id": "new", "row_index": 0, "entity_key": 8,
                              "received_at": dt.datetime(2026, 11, 20, 11), "day": DAY, "model_name": "churn",
                              "model_version": 2, "status": "scored", "prediction": "1", "score": 0.75, "flags": None,
                              "reasons": None, "inputs": None, "inputs_sha256": "y", "arm": "challenger"}],
                      online.insert_statement(conn, "old"))
        rows = conn.execute(sa.text("SELECT request_id, arm FROM old_online ORDER BY request_id")).all()
    assert [tuple(r) for r in rows] == [("new", "challenger"), ("old", None)]
    assert online.ensure_online(engine, "old", "str") == "int", "made twice: nothing to add"
