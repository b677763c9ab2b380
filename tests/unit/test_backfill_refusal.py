"""A scoring DAG's backfill is refused when its parameters would be dropped (plugins/scoring_backfill.py).

The API server's lookups (the DAG's tags in the metadata database, the caller's token) are replaced
here; tests/e2e/test_backfill_browser.py runs the middleware in the real API server, from the dialog.
"""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "plugins"))
scoring_backfill = pytest.importorskip("scoring_backfill")
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"got": await request.json()})


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setattr(scoring_backfill, "dag_tags", lambda dag_id: {"scoring"} if dag_id == "churn" else set())

    async def allowed(headers, cookies, dag_id):  # type: ignore[no-untyped-def]
        return headers.get("authorization") == "Bearer ok" or cookies.get("_token") == "ok"

    monkeypatch.setattr(scoring_backfill, "may_backfill", allowed)
    app = Starlette(routes=[Route("/api/v2/backfills", echo, methods=["POST"]),
                            Route("/api/v2/backfills/dry_run", echo, methods=["POST"])])
    app.add_middleware(scoring_backfill.BackfillParamsMiddleware)
    return TestClient(app)


BODY = {"dag_id": "churn", "from_date": "2026-10-01T00:00:00Z", "to_date": "2026-10-03T00:00:00Z"}


def test_the_dialog_without_its_tick_is_refused_naming_the_checkbox(client: TestClient) -> None:
    out = client.post("/api/v2/backfills", json={**BODY, "dag_run_conf": None}, headers={"Authorization": "Bearer ok"})
    assert out.status_code == 400
    assert 'tick "Override parameters on existing runs"' in out.json()["detail"] and "dag_run_conf is null" in out.json()["detail"]


def test_a_partition_date_is_refused_up_front(client: TestClient) -> None:
    out = client.post("/api/v2/backfills", json={**BODY, "dag_run_conf": {"partition_date": "2026-10-01"}},
                      cookies={"_token": "ok"})
    assert out.status_code == 400 and "every run of the backfill would score that one day" in out.json()["detail"]


def test_a_sent_conf_the_preview_other_dags_and_strangers_pass_untouched(client: TestClient) -> None:
    auth = {"Authorization": "Bearer ok"}
    body = {**BODY, "dag_run_conf": {"dry_run": True, "model_ref": "1", "partition_date": None}}
    assert client.post("/api/v2/backfills", content=json.dumps(body), headers=auth).json() == {"got": body}
    preview = {**BODY, "dag_run_conf": None}  # the dialog's preview of the runs never sends the conf
    assert client.post("/api/v2/backfills/dry_run", json=preview, headers=auth).status_code == 200
    other = {**BODY, "dag_id": "not_scoring", "dag_run_conf": None}
    assert client.post("/api/v2/backfills", json=other, headers=auth).status_code == 200
    # a caller who may not create the backfill gets Airflow's answer (here: the route's), not ours
    assert client.post("/api/v2/backfills", json={**BODY, "dag_run_conf": None}).status_code == 200
