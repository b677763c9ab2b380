"""Realised performance: once outcomes arrive, how good were the predictions of an earlier partition?

A job's ``outcomes`` names where the realised labels land: files (one folder per outcome date,
like a source) or a table. ``evaluate`` (``scoring outcomes JOB --date D``) reads the outcomes
dated ``D + outcomes.horizon_days``, joins them by entity key to the predictions of partition D
(the champion's table and, with model.challengers, the shadow table) and records per model
version and role, in ``scoring_performance``:

- classifiers (binary): ``roc_auc``, ``log_loss``, ``accuracy``, ``brier`` and ``calibration_gap``
  (mean score minus the positive rate: above zero, the model over-predicts); multi-class:
  ``accuracy``; regressors: ``mae`` and ``rmse``;
- with ``outcomes.floors`` / ``outcomes.ceilings``, a metric below its floor (or above its
  ceiling) is ``breached`` and alerts through the drift alert path (ERROR log, optional webhook).

With ``model.split`` or ``model.challengers``, the other versions are then judged against the champion on
the same outcomes (``verdicts.record``: scoring_ab_results, view ``<output.table>_ab``); ``evaluate_all``
returns both. The partition's rows are replaced on every evaluation (idempotent). Metrics are computed by
scikit-learn on the joined rows, which are held in memory (key, score, prediction, label: a
few tens of bytes a row).
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from pipeline import alerts, ledger, settings, verdicts
from pipeline.config import JobConfig
from pipeline.errors import ConfigError, ScoringError
from pipeline.kernels import verdict as kernel
from pipeline.partition import data_files, parse_date, partition_dir
from pipeline.resolve import Models
from pipeline.store import engines, naming, operational

log = logging.getLogger(__name__)
HIGHER_IS_BETTER = {"roc_auc", "accuracy"}


class OutcomesError(ScoringError):
    """The outcomes of a partition are missing or unusable."""


def outcome_date(job: JobConfig, day: dt.date) -> dt.date:
    return day + dt.timedelta(days=job.outcomes.horizon_days) if job.outcomes else day


def read_outcomes(job: JobConfig, day: dt.date, engine: Any) -> pd.DataFrame:
    """The outcomes judging partition ``day``: columns ``key`` and ``label``, one row per entity."""
    cfg = job.outcomes
    if cfg is None:
        raise ConfigError(f"job {job.job_id} has no outcomes section: add outcomes.path (or table) and label")
    key, when = cfg.key or job.entity_key, outcome_date(job, day)
    if cfg.path is not None:
        root = Path(cfg.path) if Path(cfg.path).is_absolute() else settings.home() / cfg.path
        folder = partition_dir(root, cfg.layout, when)
        files = data_files(folder, cfg.format)
        if not files:
            raise OutcomesError(f"job {job.job_id}: no outcome files for {when} (judging partition {day}) in "
                                f"{folder}. They arrive {cfg.horizon_days} day(s) after the partition; evaluate "
                                "again once they are there.")
        frames = []
        for path in files:
            try:
                frame = (pd.read_parquet(path, columns=[key, cfg.label]) if cfg.format == "parquet"
                         else pd.read_csv(path, usecols=[key, cfg.label]))
            except (ValueError, KeyError, OSError) as exc:
                raise OutcomesError(f"outcome file {path}: cannot read columns {key!r} and {cfg.label!r} "
                                    f"({str(exc).splitlines()[0]}). Fix outcomes.key / outcomes.label or the file."
                                    ) from None
            frames.append(frame)
        raw, where = pd.concat(frames, ignore_index=True), str(folder)
    else:
        source = engines.for_connection(cfg.connection) if cfg.connection else engine
        q = source.dialect.identifier_preparer
        sql = (f"SELECT {naming.quote_column(source, key)}, {naming.quote_column(source, cfg.label, 'label')} FROM "
               f"{naming.table_name(source, cfg.table)} WHERE {naming.quote_column(source, cfg.date_column, 'date')} = :d")
        with source.connect() as conn:
            raw = pd.read_sql(sa.text(sql), conn, params={"d": when})
        raw.columns = [key, cfg.label]
        where = f"table {cfg.table} ({q.quote(cfg.date_column)} = {when})"
    raw = raw.rename(columns={key: "key", cfg.label: "label"}).dropna(subset=["key"])
    raw["key"], raw["label"] = raw["key"].map(kernel.as_text), raw["label"].map(kernel.as_text)  # joined as text, both sides
    conflicting = raw.groupby("key")["label"].nunique()
    if (conflicting > 1).any():
        example = conflicting[conflicting > 1].index[0]
        raise OutcomesError(f"outcomes for {when} in {where}: entity {example!r} has two different labels. "
                            "Deduplicate the outcomes, then evaluate again.")
    return raw.drop_duplicates("key")


def metrics(task: str, positive: str | None, labels: pd.Series, prediction: pd.Series,
            score: pd.Series) -> dict[str, float | None]:
    """The metrics of one model version on its labelled rows (scikit-learn)."""
    from sklearn import metrics as m

    if task == "regression":
        truth = labels.astype(float).to_numpy()
        value = score.astype(float).to_numpy()
        return {"mae": float(m.mean_absolute_error(truth, value)),
                "rmse": float(np.sqrt(m.mean_squared_error(truth, value)))}
    out: dict[str, float | None] = {"accuracy": float(m.accuracy_score(labels, prediction))}
    if task == "binary_classification" and positive is not None:
        y = (labels == positive).astype(int).to_numpy()
        p = score.astype(float).to_numpy()
        out["roc_auc"] = float(m.roc_auc_score(y, p)) if len(set(y)) == 2 else None
        out["log_loss"] = float(m.log_loss(y, p, labels=[0, 1]))
        out["brier"] = float(m.brier_score_loss(y, p))
        out["calibration_gap"] = float(p.mean() - y.mean())
    return out


def _predictions(engine: Any, job: JobConfig, day: dt.date
                 ) -> tuple[list[tuple[str, str, int, pd.DataFrame]], pd.DataFrame | None, pd.DataFrame | None]:
    """(role, model name, version, rows) of the partition: the champion's, each A/B arm's (role ``arm``: the rows
    its version published), then each shadow version's (role ``challenger``). The champion's own shadow scores
    (of the arms' rows) are left out: its performance is that of the rows it published. Beside them, the
    partition's rows of the predictions and shadow tables as read (``verdicts.partition_rows``, None: no such
    table), which the verdicts judge without reading them again."""
    table = job.output.table
    predicted = verdicts.partition_rows(engine, job, table, day)
    shadow = verdicts.partition_rows(engine, job, f"{table}_shadow", day)
    found: list[tuple[str, str, int, pd.DataFrame]] = []
    champion = None
    if predicted is not None and not predicted.empty:
        champion = verdicts.champion_of_rows(predicted)
        for (model, version), rows in predicted.groupby(["model_name", "model_version"]):
            found.append(("champion" if int(version) == champion else "arm", str(model), int(version), rows))
    if shadow is not None:
        for (model, version), rows in shadow.groupby(["model_name", "model_version"]):
            if int(version) != champion:
                found.append(("challenger", str(model), int(version), rows))
    return found, predicted, shadow


COLUMNS = ("job_id", "partition_date", "model_name", "model_version", "role", "metric", "value", "rows_predicted",
           "rows_labelled", "bound", "breached", "outcome_date", "computed_at")


def evaluate(job: JobConfig, day: dt.date | str, engine: Any = None, resolver: Any = None) -> list[dict[str, Any]]:
    """Join partition ``day``'s outcomes to its predictions; record and return the metrics; alert on breaches; with
    model.split or model.challengers, record the verdicts too (``evaluate_all`` returns them)."""
    return evaluate_all(job, day, engine, resolver)[0]


def evaluate_all(job: JobConfig, day: dt.date | str, engine: Any = None,
                 resolver: Any = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``evaluate``, returning (the performance rows, the verdicts of the partition: ``verdicts.record``'s rows,
    [] for a job with neither model.split nor model.challengers)."""
    if job.output.table is None:
        raise ConfigError(f"job {job.job_id}: realised performance reads the predictions table; it has no "
                          "output.table (push-only jobs keep no predictions to judge)")
    day = parse_date(day)
    engine = engine or engines.for_connection(job.output.connection, resolver)
    operational.ensure_ledger(engine)
    outcomes = read_outcomes(job, day, engine)
    predicted, published, shadow = _predictions(engine, job, day)
    if not predicted:
        raise OutcomesError(f"job {job.job_id}: no predictions for partition {day} in {job.output.table}: "
                            "score the partition first")
    cfg, now, rows = job.outcomes, ledger.now(), []
    models = Models(resolver)  # cards checked against the registry database's anchors, each version once
    for role, model, version, frame in predicted:
        joined = frame.assign(key=frame["key"].map(kernel.as_text)).merge(outcomes, on="key", how="inner")
        joined = joined[joined["label"].notna()]
        task, positive = kernel.task_of(verdicts.card_or_none(models, model, version))
        values = (metrics(task, positive, joined["label"], joined["prediction"], joined["score"])
                  if len(joined) else {})
        for metric, value in values.items():
            bound = cfg.floors.get(metric, cfg.ceilings.get(metric))
            breached = value is not None and (
                (metric in cfg.floors and value < cfg.floors[metric])
                or (metric in cfg.ceilings and value > cfg.ceilings[metric]))
            rows.append({"job_id": job.job_id, "partition_date": day, "model_name": model, "model_version": version,
                         "role": role, "metric": metric, "value": value, "rows_predicted": len(frame),
                         "rows_labelled": len(joined), "bound": bound, "breached": bool(breached),
                         "outcome_date": outcome_date(job, day), "computed_at": now})
        if not len(joined):
            log.warning("job %s partition %s: none of the %d predictions of %s v%d has an outcome", job.job_id,
                        day, len(frame), model, version)
    with engines.begin(engine) as conn:
        conn.execute(sa.text("DELETE FROM scoring_performance WHERE job_id = :j AND partition_date = :d"),
                     {"j": job.job_id, "d": day})
        if rows:
            conn.execute(sa.text(f"INSERT INTO scoring_performance ({', '.join(COLUMNS)}) VALUES "
                                 f"({', '.join(':' + c for c in COLUMNS)})"), rows)
    breaches = [r for r in rows if r["breached"]]
    if breaches:
        text = (f"PERFORMANCE ALERT job {job.job_id} partition {day}: " + "; ".join(
            f"{r['role']} {r['model_name']} v{r['model_version']} {r['metric']} {r['value']:.4g} "
            f"{'below its floor' if r['metric'] in cfg.floors else 'above its ceiling'} {r['bound']:g}"
            for r in breaches) + f" (outcomes of {outcome_date(job, day)}; see table scoring_performance).")
        alerts.send(text, job.drift.alert_connection,
                    {"job_id": job.job_id, "partition_date": str(day), "breached": breaches},
                    f"performance-{job.job_id}-{day}", resolver, logger=log)
    return rows, verdicts.record(job, day, engine, models, labels=outcomes, predicted=published, shadow=shadow)
