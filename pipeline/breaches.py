"""A breach as an event: the payload of a job's ``<job_id>.breach`` asset event, for a team's own DAG to act on.

Three kinds of breach, each with the partition it concerns, the model and its versions, and the
figures that made it a breach:

- ``drift``: a scoring run's inputs or scores drifted past ``drift.psi_threshold`` (and significant), with
  ``drift.on_breach`` ``flag`` (published, marked) or ``block`` (not published; the breach happened all
  the same). ``ignore`` says the job's owner does not want to act on drift: no event. A dry run records
  no drift rows: no event either. Figures: the drifted features with their PSI, p-value and threshold.
- ``performance``: realised performance (``pipeline.outcomes``) below a floor or above a ceiling.
  Figures: each breached metric with its value and its floor or ceiling.
- ``ab_verdict``: a decisive verdict (``better`` or ``worse``) of a version against the champion over its
  assignment period (scope ``period`` of ``scoring_ab_results``). Figures: the verdict, the difference of
  mean losses and its interval.

One task emits one event; its extra is the first breach's payload plus ``breaches``, the list of every
payload (a drift breach is alone; an outcomes evaluation may find a performance breach and verdicts).
Every value is JSON (numbers, text, ISO dates). Nothing here imports Airflow: the DAG attaches the extra.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from pipeline.context import engine_for_job
from pipeline.drift import GATE, drifted_rows

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from pipeline.config import JobConfig
    from pipeline.connections import Resolver

KINDS = ("drift", "performance", "ab_verdict")
DECISIVE = ("better", "worse")


def asset_name(job_id: str) -> str:
    """The breach asset's name: ``<job_id>.breach``."""
    return f"{job_id}.breach"


def asset_uri(job_id: str) -> str:
    """The breach asset's URI: ``scoring://<job_id>/breach``."""
    return f"scoring://{job_id}/breach"


def _number(value: Any) -> float | None:
    """A figure as a JSON number (Decimal, numpy and NaN included: NaN is null)."""
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _day(value: dt.date | str) -> str:
    return value.isoformat() if isinstance(value, dt.date) else str(value)[:10]


def payload(kind: str, job_id: str, partition_date: dt.date | str, model_name: str, versions: dict[str, int],
            figures: dict[str, Any]) -> dict[str, Any]:
    """One breach: ``{"job_id", "kind", "partition_date", "model_name", "versions", "figures"}``."""
    if kind not in KINDS:
        raise ValueError(f"unknown breach kind {kind!r}: use {', '.join(KINDS)}")
    return {"job_id": job_id, "kind": kind, "partition_date": _day(partition_date), "model_name": model_name,
            "versions": {str(k): int(v) for k, v in versions.items()}, "figures": figures}


def drift_payload(job: JobConfig, partition_date: dt.date | str, model_name: str, model_version: int,
                  rows: list[dict[str, Any]], *, published: bool) -> dict[str, Any]:
    """A drift breach from the run's drifted rows of ``scoring_drift`` (feature, kind, value, threshold, p_value,
    row_count); ``versions``: the version that scored the partition (its training statistics are the baseline)."""
    drifted = [{"feature": str(r["feature"]), "kind": str(r.get("kind") or ""), "psi": _number(r["value"]),
                "p_value": _number(r.get("p_value")), "threshold": _number(r.get("threshold")),
                "rows": None if r.get("row_count") is None else int(r["row_count"])}
               for r in sorted(rows, key=lambda r: -float(r["value"]))]
    figures = {"drifted": drifted, "psi_threshold": job.drift.psi_threshold, "alpha": job.drift.alpha,
               "policy": job.drift.on_breach, "published": published}
    return payload("drift", job.job_id, partition_date, model_name, {"scored": model_version}, figures)


def performance_payload(job: JobConfig, partition_date: dt.date | str,
                        rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A performance breach from ``pipeline.outcomes.evaluate``'s rows (those with ``breached``); None if none.
    ``versions``: role (champion, challenger) -> version of the versions that breached."""
    bad = [r for r in rows if r.get("breached")]
    if not bad:
        return None
    floors = job.outcomes.floors if job.outcomes else {}
    breached = []
    for r in bad:
        side = "floor" if r["metric"] in floors else "ceiling"
        breached.append({"metric": str(r["metric"]), "value": _number(r["value"]), side: _number(r["bound"]),
                         "role": str(r["role"]), "model_version": int(r["model_version"]),
                         "rows_labelled": int(r["rows_labelled"]),
                         "outcome_date": _day(r["outcome_date"]) if r.get("outcome_date") else None})
    versions = {str(r["role"]): int(r["model_version"]) for r in bad}
    return payload("performance", job.job_id, partition_date, str(bad[0]["model_name"]), versions,
                   {"breached": breached})


def verdict_payload(job: JobConfig, row: dict[str, Any]) -> dict[str, Any]:
    """An A/B (or shadow) verdict from a ``scoring_ab_results`` row; ``versions``: the arm's and the champion's."""
    figures = {
        "verdict": str(row["verdict"]), "arm": str(row["arm"]), "design": str(row.get("design") or ""),
        "scope": str(row.get("scope") or "period"), "metric": str(row["metric"]),
        "value": _number(row.get("value")), "champion_value": _number(row.get("champion_value")),
        "difference": _number(row.get("difference")),
        "interval": [_number(row.get("difference_ci_low")), _number(row.get("difference_ci_high"))],
        "confidence": _number(row.get("confidence")), "rows": int(row.get("rows") or 0),
        "champion_rows": int(row.get("champion_rows") or 0), "min_rows": int(row.get("min_rows") or 0),
        "reason": str(row.get("reason") or ""),
    }
    versions = {str(row["arm"]): int(row["model_version"]), "champion": int(row["champion_version"])}
    return payload("ab_verdict", job.job_id, row["partition_date"], str(row["model_name"]), versions, figures)


def verdict_payloads(job: JobConfig, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The decisive verdicts (better, worse) over an assignment period among a day's verdict rows."""
    return [verdict_payload(job, r) for r in rows
            if str(r.get("scope") or "period") == "period" and r.get("verdict") in DECISIVE]


def outcome_payloads(job: JobConfig, partition_date: dt.date | str, performance: list[dict[str, Any]],
                     verdicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The breaches an outcomes evaluation found: the performance breach first, then the decisive verdicts."""
    found = performance_payload(job, partition_date, performance)
    return ([found] if found else []) + verdict_payloads(job, verdicts)


def event_extra(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    """One asset event's extra for one or more breaches: the first's fields and ``breaches``, every payload."""
    if not payloads:
        raise ValueError("no breach: no asset event")
    return {**payloads[0], "breaches": payloads}


def of_run(engine: Engine, job: JobConfig, run_id: str, partition_date: dt.date) -> dict[str, Any] | None:
    """The drift breach of a scoring run, or None: its newest attempt's ledger row says the drift was flagged
    (status success, ``breach`` with drift) or blocked (failed at the drift gate), and ``scoring_drift`` holds
    the drifted rows of the run. A dry run, ``on_breach: ignore`` or no drift: None."""
    with engine.connect() as conn:
        row = conn.execute(sa.text(
            "SELECT * FROM scoring_runs WHERE job_id = :j AND run_id = :r ORDER BY attempt DESC LIMIT 1"),
            {"j": job.job_id, "r": run_id}).mappings().first()
    if row is None or row["dry_run"]:
        return None
    flagged = row["status"] == "success" and "drift" in str(row["breach"] or "").split(",")
    blocked = row["status"] == "failed" and row["failed_stage"] == GATE
    if not (flagged or blocked):
        return None
    rows = drifted_rows(engine, job.job_id, partition_date, run_id)
    if not rows:
        return None
    return drift_payload(job, partition_date, str(row["model_name"]), int(row["model_version"]), rows,
                         published=flagged)


def for_run(job: JobConfig, partition_date: dt.date, run_id: str, url: str | None = None,
            resolver: Resolver | None = None) -> dict[str, Any] | None:
    """``of_run`` on the job's output database (``url``, else its connection): what the DAG's task calls."""
    return of_run(engine_for_job(job, url, resolver), job, run_id, partition_date)
