"""Airflow plugin: a backfill of a scoring job runs with the parameters the operator chose, or is refused.

Airflow 3.3.2's *Backfill* dialog shows the DAG's Run Parameters but sends them only when its
checkbox *Override parameters on existing runs* (i18n key ``backfill.overrideExistingParams``) is ticked; otherwise the request carries
``"dag_run_conf": null`` and every run gets the params' defaults: a *Dry run* switched on in
the form is dropped and the backfill writes real predictions. This root middleware of the API
server looks at every ``POST /api/v2/backfills`` (the dialog's *Run Backfill* and the REST API;
the dialog's preview, ``POST /api/v2/backfills/dry_run``, is left alone) of a DAG tagged
``scoring`` and answers HTTP 400, with a ``detail`` the dialog shows, when

- ``dag_run_conf`` is null (or missing): the operator's parameters would be dropped. Tick
  *Override parameters on existing runs* (the form's parameters are then sent as the conf), or send
  ``dag_run_conf`` through the API (``{}`` for the job's defaults);
- ``dag_run_conf`` holds a ``partition_date``: every run of the backfill would score that one
  day (the rule of ``pipeline.partition``; the run would refuse it anyway, day by day).

A conf that is sent is honoured by each run (``dry_run``, ``model_ref``, ``output_mode``, as a
triggered run's). The middleware refuses only a caller who could create the backfill (a valid
token of a user allowed to run the DAG): anyone else gets Airflow's own answer (401, 403).
``airflow backfill create`` does not go through the API server: it creates the backfill in the
metadata database directly, with ``--dag-run-conf`` as its conf (none: the defaults, as documented).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)
TAG = "scoring"
ROUTE = "/api/v2/backfills"

NO_CONF = (
    "Backfill of scoring job {dag_id} refused: the request carries no run parameters (dag_run_conf is null), so "
    "every run would use the defaults (dry run off, the job's model and output mode) whatever the form showed. "
    "In the Backfill dialog, tick \"Override parameters on existing runs\" (whatever its name, it is what sends "
    "the Run Parameters, to new runs too), then Run Backfill again. Through the REST API, send dag_run_conf (an "
    "empty {{}} for the job's defaults)."
)


def refusal(body: Any, tags: set[str]) -> str | None:
    """Why a backfill request of a DAG with ``tags`` is refused, or None to let Airflow handle it."""
    from pipeline.errors import ConfigError
    from pipeline.partition import resolve_partition_date

    if TAG not in tags or not isinstance(body, dict):
        return None
    conf = body.get("dag_run_conf")
    if conf is None:
        return NO_CONF.format(dag_id=body.get("dag_id"))
    if isinstance(conf, dict) and conf.get("partition_date") not in (None, ""):
        from zoneinfo import ZoneInfo

        try:  # the run's own rule, so the two say the same thing
            resolve_partition_date(tz=ZoneInfo("UTC"), param=conf["partition_date"], run_type="backfill")
        except ConfigError as exc:
            return (f"Backfill of scoring job {body.get('dag_id')} refused: {exc} In the Backfill dialog, empty "
                    "the Partition date field.")
    return None


def dag_tags(dag_id: str) -> set[str]:
    """The tags of a DAG, from the metadata database (empty for an unknown DAG)."""
    from airflow.models.dag import DagTag
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return set(session.scalars(select(DagTag.name).where(DagTag.dag_id == dag_id)))


async def may_backfill(headers: dict[str, str], cookies: dict[str, str], dag_id: str) -> bool:
    """Whether the request's credentials (bearer token, else the UI's cookie) may create runs of ``dag_id``."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import (
        DagAccessEntity,
        DagDetails,
    )
    from airflow.api_fastapi.core_api.security import resolve_user_from_token
    from fastapi import HTTPException
    from starlette.concurrency import run_in_threadpool

    scheme, _, token = headers.get("authorization", "").partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else cookies.get("_token", "")
    try:
        user = await resolve_user_from_token(token or None)
    except HTTPException:
        return False
    return bool(await run_in_threadpool(
        get_auth_manager().is_authorized_dag, method="POST", access_entity=DagAccessEntity.RUN,
        details=DagDetails(id=dag_id), user=user))


class BackfillParamsMiddleware:
    """Refuse a scoring DAG's backfill whose parameters would be dropped (see the module's doc)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].rstrip("/").endswith(ROUTE):
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        raw = b"".join(chunks)
        answer = await self._refusal(scope, raw)
        if answer is not None:
            from starlette.responses import JSONResponse

            await JSONResponse({"detail": answer}, status_code=400)(scope, receive, send)
            return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refusal(self, scope: dict[str, Any], raw: bytes) -> str | None:
        from starlette.concurrency import run_in_threadpool
        from starlette.requests import Request

        try:
            body = json.loads(raw or b"null")
            dag_id = body.get("dag_id") if isinstance(body, dict) else None
            if not isinstance(dag_id, str):
                return None  # Airflow answers a malformed request itself
            answer = refusal(body, await run_in_threadpool(dag_tags, dag_id))
            if answer is None:
                return None
            request = Request(scope)
            if not await may_backfill(dict(request.headers), dict(request.cookies), dag_id):
                return None  # Airflow's own 401/403 for a caller who could not create it anyway
            log.warning("refused a backfill of %s: %s", dag_id, answer)
            return answer
        except Exception:  # noqa: BLE001 - a fault here must not take the API down: Airflow handles the request
            log.exception("could not check a backfill request; passing it to Airflow")
            return None


class ScoringBackfillPlugin(AirflowPlugin):
    name = "scoring_backfill"
    fastapi_root_middlewares = [{"middleware": BackfillParamsMiddleware, "name": "scoring backfill parameters"}]
