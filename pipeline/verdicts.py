"""Realised performance per arm and the verdict between versions (issue 28): is v2 better than the champion?

Once a partition's outcomes are read (``outcomes.evaluate``, which calls ``record``), each other version of
the partition is judged against the champion on the labelled rows, by the per-row loss of ``verdict.metric``
(``pipeline.kernels.verdict``):

- an **A/B arm** (``model.split``): unpaired, each version on its own arm's rows of the predictions table,
  grouped by ``model_version`` (a row of an arm that fell back to the champion carries the champion's
  version: it counts with the champion);
- a **shadow challenger** (``model.challengers`` outside the split): paired, its rows of
  ``<output.table>_shadow`` against the champion's scores of the same entities (the champion's rows of the
  predictions table, and its shadow scores of the arms' rows).

``scoring_ab_results`` gets one scope ``day`` row per version pair and partition (with the sufficient
statistics) and one scope ``period`` row combining the day rows of the same pair up to that partition: over
the A/B assignment period of the partition's run (``scoring_runs.arms``), or over every evaluated day of the
pair for a shadow challenger (and an A/B partition whose run recorded no period). A partition evaluated again
replaces its day rows and the cumulative rows from it on. ``latest`` is what the promotion gate reads; the
analysts read ``<output.table>_ab`` in the job's schema.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from pipeline import dictionary, ledger
from pipeline.config import JobConfig
from pipeline.errors import ConfigError, ModelNotFoundError
from pipeline.kernels import verdict as kernel
from pipeline.kernels.arms import CHAMPION
from pipeline.kernels.verdict import Moments
from pipeline.partition import parse_date
from pipeline.resolve import Models
from pipeline.store import comments, engines, grants, locks, naming, sqlfiles

log = logging.getLogger(__name__)
SQL = "store/verdicts.sql"
TABLE = "scoring_ab_results"
AB, SHADOW = "ab", "shadow"


def _sql(name: str) -> sa.TextClause:
    return sa.text(sqlfiles.plain(SQL, name))


def view_name(table: str) -> str:
    """The analysts' view of a job's verdicts: ``<output.table>_ab``."""
    return f"{table}_ab"


def applies(job: JobConfig) -> bool:
    """Whether a job has other versions to judge: a split or challengers, and a predictions table."""
    return job.output.table is not None and bool(job.model.split or job.model.challengers)


# -- reading the partition --------------------------------------------------------------------------------------
def partition_rows(engine: Any, job: JobConfig, table: str, day: dt.date) -> pd.DataFrame | None:
    """A partition's rows of the predictions or shadow table, the key as text (``arm`` None where the table has
    no such column); None when the table does not exist. ``outcomes`` reads them once for both its metrics and
    the verdicts."""
    schema = job.output.schema_
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        home = naming.analyst_schema(conn, schema)
        if not inspector.has_table(table, schema=home):
            return None
        has_arm = any(c["name"] == "arm" for c in inspector.get_columns(table, schema=home))
        k = naming.quote_column(conn, job.entity_key)
        frame = pd.read_sql(sa.text(f"SELECT {k} AS key, prediction, score, model_name, model_version, run_id"
                                    f"{', arm' if has_arm else ''} FROM {naming.table_name(conn, table, schema)} "
                                    "WHERE partition_date = :d"), conn, params={"d": day})
    if not has_arm:
        frame["arm"] = None
    frame["key"] = frame["key"].map(kernel.as_text)
    frame["model_version"] = frame["model_version"].astype(int)
    return frame


def _live_run(engine: Any, job_id: str, day: dt.date, run_ids: pd.Series) -> dict[str, Any]:
    """The ledger row (champion version, arms JSON) of the attempt that published the partition."""
    if run_ids.empty:
        return {}
    run_id = Counter(run_ids.tolist()).most_common(1)[0][0]
    with engine.connect() as conn:
        row = conn.execute(_sql("live_run"), {"job_id": job_id, "run_id": run_id, "day": day}).mappings().first()
    if row is None:
        return {}
    return {"model_version": row["model_version"], "arms": ledger.as_json(row["arms"]) if row["arms"] else None}


def _champion_version(live: dict[str, Any], predicted: pd.DataFrame) -> int:
    """The champion of the partition: the ledger's version, else the rows of arm ``champion``, else the version
    that scored most rows."""
    arms = live.get("arms") or {}
    version = (arms.get("arms") or {}).get(CHAMPION, {}).get("version") or live.get("model_version")
    return int(version) if version is not None else champion_of_rows(predicted)


def champion_of_rows(predicted: pd.DataFrame) -> int:
    """The champion as the partition's rows show it: the version of the rows of arm ``champion``, else the version
    that scored most rows (``outcomes`` takes it so; ``record`` when the ledger has no row)."""
    own = predicted[predicted["arm"] == CHAMPION]
    return int((own if len(own) else predicted)["model_version"].mode().iloc[0])


def _arm_names(live: dict[str, Any], predicted: pd.DataFrame) -> dict[int, str]:
    """The arm name of each version of the predictions table (from the ``arm`` column, else the ledger)."""
    names: dict[int, str] = {}
    for name, arm in ((live.get("arms") or {}).get("arms") or {}).items():
        if arm.get("version") is not None and not arm.get("fallback") and name != CHAMPION:
            names[int(arm["version"])] = name
    marked = predicted.dropna(subset=["arm"])
    for version, arms in marked.groupby("model_version")["arm"]:
        names.setdefault(int(version), str(arms.mode().iloc[0]))
    return names


def _challenger_refs(engine: Any, job_id: str, day: dt.date) -> dict[int, str]:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("scoring_shadow_comparisons"):
            return {}
        return {int(v): str(r) for v, r in conn.execute(_sql("challenger_refs"), {"job_id": job_id, "day": day})}


# -- judging ----------------------------------------------------------------------------------------------------
class _Judge:
    """The loss of each version's labelled rows under the job's metric (cards read once each)."""

    def __init__(self, job: JobConfig, models: Models, champion_card: dict[str, Any] | None) -> None:
        task, positive = kernel.task_of(champion_card)
        try:
            self.metric = kernel.metric_for(task, job.verdict.metric)
        except ValueError as exc:
            raise ConfigError(f"job {job.job_id}: {exc} (in the job file's verdict section)") from None
        self.positive, self.models = positive, models

    def losses(self, rows: pd.DataFrame, suffix: str = "") -> np.ndarray:
        """Per-row losses of ``rows``' columns ``prediction<suffix>`` and ``score<suffix>`` against ``label``."""
        return kernel.losses(self.metric, rows["label"].to_numpy(dtype=object),
                             prediction=rows["prediction" + suffix].map(kernel.as_text).to_numpy(dtype=object),
                             score=rows["score" + suffix].to_numpy(dtype="float64"), positive=self.positive)


def card_or_none(models: Models, name: str, version: int) -> dict[str, Any] | None:
    """A version's checked card; None for a version deleted since (judged from what the table holds)."""
    try:
        return models.card(name, version)  # an unanchored or changed card is refused, not read
    except ModelNotFoundError:
        return None  # a version deleted since: judge it from what the table holds


def _stats_row(moments: tuple[Moments, Moments, Moments | None]) -> dict[str, Any]:
    version, champion, paired = moments
    return {"rows": version.n, "champion_rows": champion.n, "loss_sum": version.total, "loss_sumsq": version.total_sq,
            "champion_loss_sum": champion.total, "champion_loss_sumsq": champion.total_sq,
            "diff_sum": paired.total if paired else None, "diff_sumsq": paired.total_sq if paired else None}


def _moments(row: dict[str, Any]) -> tuple[Moments, Moments, Moments | None]:
    version = Moments(int(row["rows"]), float(row["loss_sum"]), float(row["loss_sumsq"]))
    champion = Moments(int(row["champion_rows"]), float(row["champion_loss_sum"]), float(row["champion_loss_sumsq"]))
    paired = (Moments(int(row["rows"]), float(row["diff_sum"]), float(row["diff_sumsq"]))
              if row["design"] == SHADOW and row["diff_sum"] is not None else None)
    return version, champion, paired


def _judged(base: dict[str, Any], moments: tuple[Moments, Moments, Moments | None], confidence: float,
            min_rows: int) -> dict[str, Any]:
    """A row of scoring_ab_results: ``base`` plus the statistics, the intervals and the verdict in words."""
    result = kernel.judge(*moments, confidence, min_rows)
    reason = kernel.sentence(result, base["metric"], base["model_version"], base["champion_version"], confidence,
                             min_rows)
    return {**base, **_stats_row(moments), **result, "confidence": confidence, "min_rows": min_rows,
            "reason": reason}


def record(job: JobConfig, day: dt.date | str, engine: Any, models: Models, *, labels: pd.DataFrame,
           predicted: pd.DataFrame | None, shadow: pd.DataFrame | None) -> list[dict[str, Any]]:
    """Judge partition ``day``'s other versions against its champion on the labelled rows; write the day's and
    the cumulative rows of ``scoring_ab_results`` (replacing the day's) and return the cumulative ('period')
    rows of ``day``, one per version judged ([] for a job with neither model.split nor model.challengers).

    Args:
        models: the caller's resolver of cards (each version's card read once).
        labels: the outcomes judging the partition, columns ``key`` and ``label`` as text
            (``outcomes.read_outcomes``).
        predicted, shadow: the partition's rows of the predictions and shadow tables (``partition_rows``).
    """
    if not applies(job):
        return []
    day = parse_date(day)
    if predicted is None or predicted.empty:
        log.warning("job %s partition %s: no predictions in %s, no verdict", job.job_id, day, job.output.table)
        return []
    live = _live_run(engine, job.job_id, day, predicted["run_id"])
    champion = _champion_version(live, predicted)
    period = (live.get("arms") or {}).get("period")
    names, refs = _arm_names(live, predicted), _challenger_refs(engine, job.job_id, day)
    model_name = str(predicted["model_name"].iloc[0])
    versions = [champion, *sorted(set(predicted["model_version"]) | set(() if shadow is None else shadow["model_version"]))]
    card = next((c for c in (card_or_none(models, model_name, int(v)) for v in dict.fromkeys(versions)) if c), None)
    if card is None:
        raise ConfigError(f"job {job.job_id} partition {day}: none of the versions of model {model_name} that scored "
                          f"it ({', '.join(f'v{v}' for v in dict.fromkeys(versions))}) is in the registry any more, so "
                          "its task and classes are unknown and no verdict can be made: restore the model folder")
    judge = _Judge(job, models, card)
    labels = labels[labels["label"].notna()][["key", "label"]]
    cfg, now = job.verdict, ledger.now()
    outcome_day = day + dt.timedelta(days=job.outcomes.horizon_days) if job.outcomes else day
    base = {"job_id": job.job_id, "partition_date": day, "scope": "day", "model_name": model_name,
            "champion_version": champion, "first_partition": day, "days": 1, "metric": judge.metric,
            "outcome_date": outcome_day, "computed_at": now}
    day_rows: list[dict[str, Any]] = []

    published = predicted.merge(labels, on="key", how="inner")
    champion_own = published[published["model_version"] == champion]
    champion_losses = judge.losses(champion_own)
    for version, rows in published[published["model_version"] != champion].groupby("model_version"):
        version = int(version)
        moments = (Moments.of(judge.losses(rows)), Moments.of(champion_losses), None)
        day_rows.append(_judged({**base, "design": AB, "arm": names.get(version, f"v{version}"),
                                 "model_version": version, "period": period}, moments, cfg.confidence, cfg.min_rows))
    ab_versions = set(predicted["model_version"].unique().tolist()) - {champion}
    if shadow is not None and not shadow.empty:
        # the champion's score of every entity: its published rows and its shadow rows (of the arms' entities)
        champion_all = pd.concat([predicted[predicted["model_version"] == champion],
                                  shadow[shadow["model_version"] == champion]], ignore_index=True)
        champion_all = champion_all.drop_duplicates("key").merge(labels, on="key", how="inner")
        for version, rows in shadow.groupby("model_version"):
            version = int(version)
            if version == champion or version in ab_versions or version in names:
                continue  # an A/B arm is judged on its own rows, above
            both = rows.merge(champion_all, on="key", how="inner", suffixes=("", "_champion"))
            mine, theirs = judge.losses(both), judge.losses(both, "_champion")
            moments = (Moments.of(mine), Moments.of(theirs), Moments.of(mine - theirs))
            day_rows.append(_judged({**base, "design": SHADOW, "arm": refs.get(version, f"v{version}"),
                                     "model_version": version, "period": None}, moments, cfg.confidence,
                                     cfg.min_rows))
    if not day_rows:
        log.info("job %s partition %s: only the champion v%d scored the partition, no verdict", job.job_id, day,
                 champion)
    period_rows = _write(engine, job, day, day_rows)
    _ensure_view(engine, job)
    for row in period_rows:
        (log.warning if row["verdict"] == kernel.WORSE else log.info)(
            "job %s partition %s: %s %s (%s, period %s, %d day(s)): %s", job.job_id, day, row["design"], row["arm"],
            row["metric"], row["period"] if row["period"] is not None else "all days", row["days"], row["reason"])
    return period_rows


def _write(engine: Any, job: JobConfig, day: dt.date, day_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replace the day's rows, then make the cumulative rows from ``day`` on again; the cumulative rows of ``day``."""
    keyed = {"job_id": job.job_id, "day": day}
    written: list[dict[str, Any]] = []
    with engines.begin(engine) as conn:
        conn.execute(_sql("delete_day"), keyed)
        if day_rows:
            conn.execute(_sql("insert"), day_rows)
        conn.execute(_sql("delete_periods_from"), keyed)
        every = [dict(r) for r in conn.execute(_sql("day_rows"), keyed).mappings()]
        periods = _cumulative(every, day)
        if periods:
            conn.execute(_sql("insert"), periods)
        written = [r for r in periods if r["partition_date"] == day]
    return written


def _pair(row: dict[str, Any]) -> tuple[Any, ...]:
    """What day rows combine: the design, the metric, the versions and the A/B period (NULL: every day of the
    pair); a metric changed in the job file starts again."""
    return (row["design"], row["metric"], int(row["model_version"]), int(row["champion_version"]),
            None if row["design"] == SHADOW or row["period"] is None else int(row["period"]))


def _cumulative(day_rows: list[dict[str, Any]], since: dt.date) -> list[dict[str, Any]]:
    """The scope 'period' row of every day row on or after ``since``: its pair's day rows up to it, added up."""
    out, now = [], ledger.now()
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in day_rows:
        row["partition_date"] = parse_date(row["partition_date"])
        groups.setdefault(_pair(row), []).append(row)
    for rows in groups.values():
        total: tuple[Moments, Moments, Moments | None] | None = None
        for i, row in enumerate(rows):
            m = _moments(row)
            total = m if total is None else (total[0] + m[0], total[1] + m[1],
                                             None if total[2] is None or m[2] is None else total[2] + m[2])
            if row["partition_date"] < since:
                continue
            base = {k: row[k] for k in ("job_id", "partition_date", "design", "arm", "model_name", "model_version",
                                        "champion_version", "period", "metric", "outcome_date")}
            base |= {"scope": "period", "first_partition": rows[0]["partition_date"], "days": i + 1,
                     "computed_at": now}
            out.append(_judged(base, total, float(row["confidence"]), int(row["min_rows"])))
    return out


# -- the analysts' view -----------------------------------------------------------------------------------------
def _ensure_view(engine: Any, job: JobConfig) -> None:
    """``<output.table>_ab`` in the job's analysts' schema, made anew with its readers kept."""
    table, schema, view = job.output.table, job.output.schema_, view_name(job.output.table)

    def ensure(conn: Any) -> None:
        home = naming.analyst_schema(conn, schema)
        readers = grants.view_readers(conn, home, [view])
        for stmt in sqlfiles.named(conn, SQL, "view", schema, literals={"job": job.job_id},
                                   quoted={"results": naming.quote(conn, TABLE)}, view=view):
            conn.exec_driver_sql(stmt)
        grants.give_back(conn, readers, schema)
        comments.comment(conn, dictionary.objects("verdicts", table), schema)  # PostgreSQL: the dictionary's texts

    locks.short_locks(engine, f"preparing view {view_name(table)}", ensure)


# -- reading the verdicts ---------------------------------------------------------------------------------------
def _has_table(engine: Any) -> bool:
    with engine.connect() as conn:
        return sa.inspect(conn).has_table(TABLE)


def _clean(row: Any) -> dict[str, Any]:
    out = dict(row)
    for k in ("partition_date", "first_partition", "outcome_date"):
        if out.get(k) is not None:
            out[k] = parse_date(out[k])
    return out


def latest(engine: Any, job_id: str, model_version: int, champion_version: int) -> dict[str, Any] | None:
    """The newest cumulative (scope 'period') verdict of ``model_version`` against ``champion_version`` in a job:
    verdict (better | worse | not_yet), reason, metric, value, champion_value, difference, difference_ci_low,
    difference_ci_high, rows, champion_rows, confidence, min_rows, partition_date, design, arm, period, days...;
    None when the pair was never judged."""
    if not _has_table(engine):
        return None
    with engine.connect() as conn:
        row = conn.execute(_sql("latest"), {"job_id": job_id, "model_version": int(model_version),
                                            "champion_version": int(champion_version)}).mappings().first()
    return None if row is None else _clean(row)


def for_partition(engine: Any, job_id: str, day: dt.date | str, scope: str = "period") -> list[dict[str, Any]]:
    """The verdicts recorded for a partition (scope 'period': cumulative up to it; 'day': its own rows)."""
    if not _has_table(engine):
        return []
    with engine.connect() as conn:
        rows = conn.execute(_sql("for_partition"), {"job_id": job_id, "day": parse_date(day), "scope": scope})
        return [_clean(r) for r in rows.mappings()]
