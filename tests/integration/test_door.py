"""The online door's model lifecycle (issue 27, point 3) without a server: not ready before its first load, a
promotion and a rollback picked up by ``refresh`` (each version verified before it serves), requests looping
through a switch answered by one version or the other, a tampered artifact refused with the batch's own
ModelIntegrityError text while the last good version keeps serving; and a request's rows in order, with
duplicate keys within the request quarantined as the batch quarantines a partition's."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import JobConfig, load_job
from pipeline.demo.train import train_churn
from pipeline.errors import ModelIntegrityError, RequestError
from pipeline.registry import Registry
from pipeline.resolve import Models
from pipeline.score import scorer_for
from pipeline.serve.door import Door, inputs_sha256
from tests.conftest import DAY, clean_customers, switch_while_scoring, with_challenger, write_job


def _job(home: Path, **overrides: Any) -> JobConfig:
    return load_job(write_job(home, job_id="door_test", **overrides))


def _rows(n: int = 5) -> list[dict[str, Any]]:
    """Demo rows as typed JSON records (missing values as null)."""
    frame = clean_customers(n)
    return [{k: (None if v != v else v) for k, v in r.items()} for r in frame.to_dict("records")]


def test_not_ready_before_the_first_load(home: Path) -> None:
    door = Door(_job(home))
    assert not door.ready and door.served is None
    with pytest.raises(RuntimeError, match="job door_test: no model is loaded yet"):
        door.score(_rows(1), "r0")
    served = door.load()
    assert door.ready and (served.name, served.version) == ("churn", 1)
    assert served.loaded_at.tzinfo is dt.UTC and len(served.sha256) == 64
    assert door.refresh() is False, "the alias still names the served version"


def test_a_request_is_answered_in_its_order_with_the_batch_reasons(home: Path) -> None:
    door = Door(_job(home))
    door.load()
    rows = _rows(4)
    rows[1]["customer_id"] = rows[3]["customer_id"]  # a key twice in one request
    rows[2]["monthly_charges"] = -3.0
    rows.append({"customer_id": None, **{k: v for k, v in rows[0].items() if k != "customer_id"}})
    results = door.score(rows, "r1")
    assert [r.index for r in results] == [0, 1, 2, 3, 4]
    assert [r.status for r in results] == ["scored", "quarantined", "quarantined", "quarantined", "quarantined"]
    assert results[1].reasons == results[3].reasons == ["duplicate_key:customer_id"]
    assert results[2].reasons == ["be_between:monthly_charges"] and results[2].score is None
    assert results[4].reasons == ["not_null:customer_id"] and results[4].key is None
    assert results[0].key == rows[0]["customer_id"] and 0 <= (results[0].score or -1) <= 1
    assert results[0].inputs is rows[0] and results[0].inputs_sha256 == inputs_sha256(rows[0])
    alone = door.score([rows[1]], "r2")[0]
    assert alone.status == "scored", "alone, the key is no duplicate"
    with pytest.raises(RequestError, match="got an object"):
        door.score({"rows": rows}, "r3")  # type: ignore[arg-type]


def test_promote_and_rollback_are_picked_up_by_refresh(home: Path, challenger_models: Path) -> None:
    second = with_challenger(home, challenger_models)
    door = Door(_job(home))
    assert door.load().version == 1
    Registry().promote("churn", second)
    assert door.refresh() is True and door.served is not None and door.served.version == second
    assert {r.model_version for r in door.score(_rows(3), "after-promote")} == {second}
    assert Registry().rollback("churn") == 1
    assert door.refresh() is True and door.served is not None and door.served.version == 1
    assert door.reload_failures == 0 and door.last_reload_error is None


def test_requests_looping_through_a_switch_name_one_version_or_the_other(home: Path,
                                                                         challenger_models: Path) -> None:
    second = with_challenger(home, challenger_models)
    door = Door(_job(home))
    door.load()
    rows = _rows(2)

    def switch() -> None:
        Registry().promote("churn", second)
        assert door.refresh() is True

    answers, switched = switch_while_scoring(lambda: [r.model_version for r in door.score(rows, "loop")], switch,
                                             before=3, after=3)
    assert all(len(set(a)) == 1 and a[0] in (1, second) for a in answers), "a request is answered by one version"
    assert answers[0][0] == 1 and all(a == [second, second] for a in answers[switched + 1:])


def test_a_tampered_version_is_refused_as_in_batch_and_the_last_good_one_keeps_serving(
        home: Path, challenger_models: Path, caplog: pytest.LogCaptureFixture) -> None:
    second = with_challenger(home, challenger_models)
    registry = Registry()
    registry.promote("churn", second)
    door = Door(_job(home))
    assert door.load().version == second
    third = train_churn(registry, end=DAY - dt.timedelta(days=4), days=1, n=1500, seed=13, alias=None).version
    artifact = registry.resolve("churn", third).artifact
    artifact.write_bytes(artifact.read_bytes() + b"\x00")
    registry.promote("churn", third)
    with pytest.raises(ModelIntegrityError) as batch:
        scorer_for(registry, Models(registry=Registry()).resolve("churn", "champion"))
    assert door.refresh() is False
    assert door.served is not None and door.served.version == second
    assert door.reload_failures == 1
    assert door.last_reload_error == f"ModelIntegrityError: {batch.value}"
    assert "Refusing to unpickle it" in (door.last_reload_error or "")
    assert {r.model_version for r in door.score(_rows(2), "still-v2")} == {second}
    assert door.refresh() is False and door.reload_failures == 2, "tried again, refused again"
    refusals = [r for r in caplog.records if r.levelname == "ERROR" and "not loaded, still serving" in r.message]
    assert len(refusals) == 1, "the same refusal every reload_seconds is counted each time, logged once"
    assert f"churn v{third}" in refusals[0].message and f"churn v{second}" in refusals[0].message


def test_concurrent_requests_get_the_answers_of_requests_made_one_at_a_time(home: Path) -> None:
    """Requests in flight together each take a validator of their own: the same scores and reasons as alone."""
    door = Door(_job(home))
    door.load()
    rows = _rows(6)
    rows[2]["monthly_charges"] = -1.0
    alone = [(r.status, r.score, r.reasons) for r in door.score(rows, "alone")]
    answers: list[list[tuple[Any, ...]]] = []
    barrier = threading.Barrier(4)

    def ask() -> None:
        barrier.wait()
        for _ in range(3):
            answers.append([(r.status, r.score, r.reasons) for r in door.score(rows, "together")])

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 12 and all(a == alone for a in answers)
    assert alone[2] == ("quarantined", None, ["be_between:monthly_charges"])
