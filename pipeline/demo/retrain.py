"""The demo's retraining on a breach: train on the latest labelled days, register the result as the challenger.

``dags/demo_retrain.py`` runs ``retrain`` when the demo job (``churn_daily``) emits a breach event
(``<job_id>.breach``, see ``pipeline/breaches.py``). The labelled days are the job's own partitions
(``source.path``) joined by entity key to their realised outcomes (``outcomes``: the files dated
``horizon_days`` after each partition, read by ``pipeline.outcomes.read_outcomes``), the latest ``days``
of them up to the breached partition. The new version is registered in one call of the registry's
``register`` (artifact, card, golden rows, anchor, alias) under the alias ``challenger``, never
``champion``: the job lists ``challengers: [challenger]``, so its next run scores it in the champion's
shadow, and a person (or ``scoring models promote --if-better``) decides on promotion.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import outcomes as outcome_reader
from pipeline import settings
from pipeline.config import JobConfig
from pipeline.demo import data as demo_data
from pipeline.demo import train
from pipeline.errors import ConfigError
from pipeline.partition import data_files, partition_dir
from pipeline.registry import ModelVersion, Registry

log = logging.getLogger(__name__)

DEMO_JOB = "churn_daily"  # the demo job whose breaches the sample DAG retrains on
ALIAS = "challenger"  # what a retrained version is registered as; never the champion
LOOK_BACK_DAYS = 60  # how far before the breached partition labelled days are looked for


def _root(path: str) -> Path:
    return Path(path) if Path(path).is_absolute() else settings.home() / path


def labelled_days(job: JobConfig, until: dt.date, days: int) -> list[dt.date]:
    """The latest ``days`` partitions up to ``until`` that have data files and outcome files, oldest first."""
    if job.outcomes is None or job.outcomes.path is None or job.source.path is None:
        raise ConfigError(f"job {job.job_id}: the demo's retraining reads partition files (source.path) and "
                          "outcome files (outcomes.path, label); add them to the job file")
    source, labels = _root(job.source.path), _root(job.outcomes.path)
    found: list[dt.date] = []
    for back in range(LOOK_BACK_DAYS + 1):
        day = until - dt.timedelta(days=back)
        when = outcome_reader.outcome_date(job, day)
        if data_files(partition_dir(source, job.source.layout, day), job.source.format) and \
                data_files(partition_dir(labels, job.outcomes.layout, when), job.outcomes.format):
            found.append(day)
            if len(found) == days:
                break
    return sorted(found)


def labelled_rows(job: JobConfig, days: list[dt.date], engine: Any = None) -> pd.DataFrame:
    """The partitions' rows joined by entity key to their outcomes; the label in column ``churned`` (0/1)."""
    frames = []
    for day in days:
        folder = partition_dir(_root(str(job.source.path)), job.source.layout, day)
        files = data_files(folder, job.source.format)
        rows = pd.concat([pd.read_parquet(f) if job.source.format == "parquet" else pd.read_csv(f) for f in files],
                         ignore_index=True)
        labels = outcome_reader.read_outcomes(job, day, engine)  # key, label (as text)
        rows["key"] = rows[job.entity_key].map(str)
        joined = rows.merge(labels, on="key", how="inner").drop(columns="key")
        joined[demo_data.LABEL] = (joined.pop("label") == "1").astype("int64")
        log.info("retrain: partition %s: %d rows, %d with an outcome", day, len(rows), len(joined))
        frames.append(joined)
    return pd.concat(frames, ignore_index=True)


def retrain(job: JobConfig, breach: dict[str, Any], registry: Registry | None = None, *, days: int = 3,
            engine: Any = None, alias: str = ALIAS) -> ModelVersion:
    """Train on the latest ``days`` labelled days up to the breached partition and register the result, in one
    call, under ``alias`` (the challenger; the champion is refused). The new version, as registered."""
    if alias == "champion":
        raise ConfigError(f"job {job.job_id}: a retrained model is registered as a challenger, never as the "
                          "champion; promote it after its comparison (scoring models promote ... --if-better)")
    until = dt.date.fromisoformat(str(breach["partition_date"])[:10])
    chosen = labelled_days(job, until, days)
    if not chosen:
        raise ConfigError(
            f"job {job.job_id}: no labelled day up to {until} (partitions in {job.source.path} with outcome files "
            f"in {job.outcomes.path if job.outcomes else '-'} dated {job.outcomes.horizon_days if job.outcomes else 0} "
            f"day(s) later) within {LOOK_BACK_DAYS} days: nothing to retrain on. Write the outcomes "
            "(scoring-demo data writes them), then clear this task.")
    raw = labelled_rows(job, chosen, engine)
    cause = (f"by hand up to partition {until}" if breach.get("kind") == "manual"
             else f"on a {breach.get('kind')} breach of partition {until}")
    text = (f"job {job.job_id} partitions {chosen[0]} .. {chosen[-1]} ({len(chosen)} day(s)) joined to their "
            f"outcomes; retrained {cause}")
    estimator, card, golden = train.fit(raw, text, 7, "Customer churn within 30 days (demo), retrained on a breach: "
                                        "HistGradientBoosting on usage and contract features.")
    registry = registry or Registry()
    name = job.model.name
    if name != "churn":
        raise ConfigError(f"job {job.job_id}: the demo's retraining trains the churn model, not {name!r}")
    before = registry.aliases(name).get("champion")
    mv = train.register(registry, estimator, card, golden, alias)  # one call: artifact, card, anchor, alias
    after = registry.aliases(name)
    if after.get("champion") != before or after.get(alias) != mv.version:
        raise ConfigError(f"model {name}: registering v{mv.version} as {alias} left the aliases {after} "
                          f"(champion was v{before}): check the registry")
    log.info("retrain: registered %s v%s as %s (champion stays v%s) on %d rows of %s: %s", name, mv.version, alias,
             before, card["training"]["rows"], text, card["metrics"])
    return mv
