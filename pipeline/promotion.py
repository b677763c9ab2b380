"""The promotion gate: a version becomes champion when its realised comparison says it is better, and every
promotion, rollback and refused promotion is a row of the model audit.

``promote(..., if_better=True)`` reads the newest cumulative verdict of the version against the CURRENT champion
(``pipeline.verdicts.latest``, in the job's database) and moves the alias only when that verdict is ``better`` at
the job's ``verdict.confidence`` with ``verdict.min_rows`` labelled rows on each side; otherwise nothing moves and
the refusal, with the figures and the next step, is recorded. Without ``if_better`` the promote is a person's
override (today's ``scoring models promote``), recorded as such. ``rollback`` moves the alias back one step of
its history (``Registry.rollback``), recorded the same way.

The audit is ``scoring_model_audit`` (``sql/migrations/013_model_audit.sql``) in the registry database, the one
holding the anchors (``pipeline.anchors``): a row per event with who (``requested_by``), when (``at``), why
(``reason``, the requester's words; ``decision``, the gate's), the verdict row read (``figures``) and the source
(``cli`` or ``dag``). A promotion's row is written in the same transaction as the alias moves, under the model's
lock: if the row cannot be written, the alias does not move. The CLI (``scoring models promote --if-better``,
``rollback``, ``audit``) and the DAG ``<job_id>_promote`` (``dags/scoring_promotions.py``) both call this module.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import math
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pipeline import anchors as anchoring
from pipeline import settings, verdicts
from pipeline.anchors import Anchors
from pipeline.config import JobConfig, VerdictConfig, load_job, load_jobs
from pipeline.connections import Resolver
from pipeline.context import engine_for_job
from pipeline.errors import ConfigError, ScoringError, StoreError
from pipeline.registry import Record, Registry
from pipeline.store import engines, sqlfiles

log = logging.getLogger(__name__)

TABLE = "scoring_model_audit"
PROMOTE, ROLLBACK, REFUSED = "promote", "rollback", "refused"
IF_BETTER, NO_GATE = "if_better", "none"
SOURCES = ("cli", "dag")
BETTER, WORSE, NOT_YET = "better", "worse", "not_yet"


class PromotionRefused(ScoringError):
    """The gate refused a promotion (recorded in the audit): asking again changes nothing until the figures do."""

    retryable = False

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.text)
        self.outcome = outcome


@dataclass(frozen=True)
class Decision:
    """What the gate says of one verdict row: promote or not, and why in words (figures and next step)."""

    promote: bool
    text: str


@dataclass(frozen=True)
class Outcome:
    """What a promote or rollback did: the event recorded (promote, rollback or refused) and its audit row's id."""

    event: str
    name: str
    alias: str
    from_version: int | None
    to_version: int | None
    text: str
    job_id: str | None = None
    figures: dict[str, Any] | None = None
    audit_id: str | None = None


# -- the gate (pure) -----------------------------------------------------------------------------------------------
def figures_text(row: dict[str, Any]) -> str:
    """A verdict row's figures in one line: the metric, both means, the difference with its interval, the rows."""
    def num(value: Any) -> str:
        return "n/a" if value is None else f"{float(value):.4g}"

    return (f"{row.get('metric')} {num(row.get('value'))} vs champion {num(row.get('champion_value'))}, difference "
            f"{num(row.get('difference'))} [{num(row.get('difference_ci_low'))}, {num(row.get('difference_ci_high'))}]"
            f" at {float(row.get('confidence') or 0):.0%} on {row.get('rows')}/{row.get('champion_rows')} labelled rows"
            f" ({row.get('design')} arm {row.get('arm')!r}, up to partition {row.get('partition_date')})")


def decide(row: dict[str, Any] | None, *, name: str, job_id: str, candidate: int, champion: int | None,
           verdict: VerdictConfig) -> Decision:
    """The gate on the newest verdict row of ``candidate`` against ``champion`` (None: there is none).

    Promote only when the row is of that pair, says ``better``, was judged at the job's confidence or higher (and on
    the job's metric, if it names one), its interval lies wholly below 0 and both sides have ``verdict.min_rows``
    labelled rows. Every refusal names the figures and the next step.
    """
    new, head = f"v{candidate}", f"{name} v{candidate}"
    if champion is None:
        return Decision(False, f"{head}: the model has no champion to be compared with. Promote a first version "
                               f"without --if-better (`scoring models promote {name} {candidate} --reason ...`).")
    old = f"v{champion}"
    if candidate == champion:
        return Decision(False, f"{head} is the champion already: nothing to promote.")
    wait = (f"Let job {job_id}'s nightly runs score {new} beside the champion {old} (model.challengers or "
            f"model.split) and their outcomes arrive (`scoring outcomes {job_id} --date DAY` records the verdicts), "
            "then ask again.")
    if row is None:
        return Decision(False, f"{head}: job {job_id} has no realised comparison of {new} against the current "
                               f"champion {old} yet (a verdict against an earlier champion does not count). {wait}")
    judged = (int(row.get("model_version", -1)), int(row.get("champion_version", -1)))
    if judged != (candidate, champion):
        return Decision(False, f"{head}: the comparison found is stale: v{judged[0]} against v{judged[1]}, but the "
                               f"champion is {old} now. {wait}")
    figures = figures_text(row)
    if verdict.metric and row.get("metric") != verdict.metric:
        return Decision(False, f"{head}: the comparison is on {row.get('metric')}, but job {job_id} judges on "
                               f"{verdict.metric} now ({figures}). The next evaluation judges on the job's metric: "
                               "ask again after it.")
    if float(row.get("confidence") or 0) + 1e-12 < verdict.confidence:
        return Decision(False, f"{head}: judged at {float(row.get('confidence') or 0):.0%} confidence, job {job_id} "
                               f"asks {verdict.confidence:.0%} ({figures}). The next evaluation judges at the job's "
                               "confidence: ask again after it.")
    rows, champion_rows = int(row.get("rows") or 0), int(row.get("champion_rows") or 0)
    if min(rows, champion_rows) < verdict.min_rows:
        return Decision(False, f"{head}: too few labelled rows to decide: {rows} for {new} and {champion_rows} for "
                               f"{old}, job {job_id} asks {verdict.min_rows} each ({figures}). {wait}")
    if row.get("verdict") == WORSE:
        return Decision(False, f"{head} is WORSE than the champion {old} ({figures}): it is not promoted. Keep "
                               f"{old}; retrain, or take {new} out of model.split / model.challengers.")
    high = row.get("difference_ci_high")
    if row.get("verdict") != BETTER or high is None or float(high) >= 0:
        return Decision(False, f"{head}: not yet distinguishable from the champion {old} at {rows}/{champion_rows} "
                               f"rows: the interval of the difference holds 0 ({figures}). {wait}")
    return Decision(True, f"{head} is better than the champion {old}: {figures}")


# -- promote and roll back (the shell) -----------------------------------------------------------------------------
def promote(registry: Registry, name: str, ref: str | int, *, alias: str = "champion", if_better: bool = True,
            job_id: str | None = None, reason: str | None = None, by: str | None = None, source: str = "cli",
            run_id: str | None = None, resolver: Resolver | None = None, jobs_dir: Path | None = None) -> Outcome:
    """Point ``alias`` at the version ``ref`` names: through the gate (``if_better``), or as a person's override.

    The gate's comparison is job ``job_id``'s (default: the one job of the jobs folder that scores ``ref`` beside
    model ``name``'s champion). A refusal is recorded and returned (event ``refused``); nothing moves.
    """
    _check_source(source)
    store = _audit_store(registry, f"models promote {name}")
    candidate = registry.version_of(name, ref)
    champion = registry.aliases(name).get(alias)
    who = by or _login()
    facts = {"model_name": name, "alias": alias, "reason": reason, "source": source, "run_id": run_id}
    if not if_better:
        text = (f"{name}: {alias} v{champion if champion is not None else '-'} -> v{candidate} by {who}, an override "
                "without the gate (no realised comparison was checked)")
        audit_id = _new_id(store)
        registry.promote(name, candidate, alias, expect=champion, by=who, record=_recorder(store, {
            **facts, "id": audit_id, "event": PROMOTE, "gate": NO_GATE, "decision": text}))
        return _done(audit_id, PROMOTE, name, alias, champion, candidate, text)
    job = judging_job(registry, name, ref, candidate, job_id, jobs_dir)
    row = (_verdict(engine_for_job(job, resolver=resolver), job, candidate, champion)
           if champion is not None and champion != candidate else None)
    decision = decide(row, name=name, job_id=job.job_id, candidate=candidate, champion=champion, verdict=job.verdict)
    figures = _figures(row)
    facts |= {"gate": IF_BETTER, "decision": decision.text, "job_id": job.job_id, "figures": figures}
    if not decision.promote:
        audit_id = _write(store, {**facts, "event": REFUSED, "from_version": champion, "to_version": candidate,
                                  "requested_by": who})
        log.warning("promotion gate REFUSED %s v%s as %s (job %s, by %s): %s", name, candidate, alias, job.job_id, who,
                    decision.text)
        return Outcome(REFUSED, name, alias, champion, candidate, decision.text, job.job_id, figures, audit_id)
    audit_id = _new_id(store)
    registry.promote(name, candidate, alias, expect=champion, by=who,
                     record=_recorder(store, {**facts, "id": audit_id, "event": PROMOTE}))
    return _done(audit_id, PROMOTE, name, alias, champion, candidate, f"{name}: {alias} v{champion} -> v{candidate}. "
                 f"{decision.text}", job.job_id, figures)


def rollback(registry: Registry, name: str, *, alias: str = "champion", to: int | None = None,
             reason: str | None = None, by: str | None = None, source: str = "cli",
             run_id: str | None = None) -> Outcome:
    """Move ``alias`` back one step of its history (or to the live version ``to``), recorded in the audit."""
    _check_source(source)
    store = _audit_store(registry, f"models rollback {name}")
    before = registry.aliases(name).get(alias)
    who = by or _login()
    text = f"{name}: {alias} rolled back by {who}" + (f" to v{to} (explicit)" if to is not None else " one step")
    audit_id = _new_id(store)
    version = registry.rollback(name, alias, to, by=who, record=_recorder(store, {
        "id": audit_id, "model_name": name, "alias": alias, "reason": reason, "source": source, "run_id": run_id, "event": ROLLBACK,
        "gate": NO_GATE, "decision": text}))
    return _done(audit_id, ROLLBACK, name, alias, before, version, f"{name}: {alias} rolled back v{before} -> v{version}")


def judging_job(registry: Registry, name: str, ref: str | int, candidate: int, job_id: str | None = None,
                jobs_dir: Path | None = None) -> JobConfig:
    """The job whose comparison decides: ``job_id``, else the one job of the jobs folder that scores model ``name``
    with ``ref`` (the version ``candidate``) as a challenger or a split arm. None or several: ConfigError."""
    folder = Path(jobs_dir) if jobs_dir else settings.jobs_dir()
    if job_id:
        path = folder / f"{job_id}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in folder.glob("*.y*ml"))
            raise ConfigError(f"--job {job_id}: no job file {path} (jobs in {folder}: {', '.join(known) or 'none'})")
        job = load_job(path)
        if job.model.name != name:
            raise ConfigError(f"--job {job_id} scores model {job.model.name!r}, not {name!r}: give a job of {name}")
        return job
    of_model = [j for j in load_jobs(folder).jobs.values() if j.model.name == name]
    found = [j for j in of_model if any(_names(registry, name, r, candidate) for r in j.model.shadowed())]
    if len(found) == 1:
        return found[0]
    listed = "; ".join(f"{j.job_id} (challengers: {', '.join(j.model.challengers) or '-'}; split: "
                       f"{', '.join(f'{r} {s:g}%' for r, s in j.model.split.items()) or '-'})" for j in of_model)
    if not found:
        raise ConfigError(
            f"no job in {folder} scores model {name} v{candidate} ({ref}) as a challenger or a split arm, so none has "
            f"compared it with the champion. Jobs of {name}: {listed or 'none'}. Give --job JOB, or add {ref} to a "
            "job's model.challengers or model.split and let its runs and outcomes judge it.")
    raise ConfigError(f"{len(found)} jobs score model {name} v{candidate} ({ref}) beside the champion: "
                      f"{', '.join(j.job_id for j in found)}. Say whose comparison decides with --job JOB.")


# -- the audit -----------------------------------------------------------------------------------------------------
def history(engine: sa.engine.Engine, name: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The newest ``limit`` audit rows (of model ``name``, or of every model), newest first; figures as a dict."""
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(TABLE):
                return []
            query = sqlfiles.plain("store/audit.sql", "of_model" if name else "every")
            rows = conn.execute(sa.text(query), {"n": name, "limit": limit}).mappings().all()
    except sa.exc.DBAPIError as exc:
        raise StoreError(f"the model audit could not be read from the registry database {engines.describe(engine)}: "
                         f"{str(exc.orig).splitlines()[0] if exc.orig else type(exc).__name__}. Check the database "
                         "and the connection (SCORING_REGISTRY_DB, default scoring_db).") from None
    return [{**r, "at": _utc(r["at"]), "figures": _as_dict(r["figures"])} for r in rows]


def audit_engine(registry: Registry) -> sa.engine.Engine:
    """The registry database, where the audit lives (ConfigError when none is configured)."""
    return anchoring.require(registry.anchors, "models audit").engine


def _audit_store(registry: Registry, what: str) -> Anchors | None:
    """The registry database the audit row goes to, its tables migrated; None only with SCORING_ALLOW_UNANCHORED=1
    (development: the change is made, NOT audited, with a warning)."""
    store = registry.anchors
    if store is None:
        if settings.allow_unanchored():
            log.warning("%s: NOT audited (%s=1 and %s)", what, settings.ALLOW_UNANCHORED, anchoring.not_configured())
            return None
        anchoring.require(store, f"{what}: every promotion and rollback is recorded in the registry database's "
                                 f"{TABLE}")
    store.ensure()
    return store


def _recorder(store: Anchors | None, facts: dict[str, Any]) -> Record | None:
    """The registry's audit hook: the row written in a transaction around the alias's move (which it rolls back)."""
    return None if store is None else store.recorder(facts)


def _write(store: Anchors | None, facts: dict[str, Any]) -> str | None:
    """One audit row in a transaction of its own (a refusal); its id."""
    if store is None:
        return None
    with engines.begin(store.engine) as conn:
        return store.audit(conn, facts)


def _new_id(store: Anchors | None) -> str | None:
    """The id of the audit row about to be written (None: not audited)."""
    return None if store is None else uuid.uuid4().hex


def _done(audit_id: str | None, event: str, name: str, alias: str, before: int | None, after: int, text: str,
          job_id: str | None = None, figures: dict[str, Any] | None = None) -> Outcome:
    """The outcome of a move, with the id of the audit row its hook wrote."""
    log.info("%s (audit row %s)", text, audit_id)
    return Outcome(event, name, alias, before, after, text, job_id, figures, audit_id)


def _verdict(engine: sa.engine.Engine, job: JobConfig, candidate: int, champion: int) -> dict[str, Any] | None:
    """``verdicts.latest`` of the pair in the job's database; a database that cannot be read says so (StoreError)."""
    try:
        return verdicts.latest(engine, job.job_id, candidate, champion)
    except sa.exc.DBAPIError as exc:
        raise StoreError(
            f"job {job.job_id}: its comparisons could not be read from {engines.describe(engine)} (connection "
            f"{job.output.connection}): {str(exc.orig).splitlines()[0] if exc.orig else type(exc).__name__}. Nothing "
            "was promoted or recorded; check the database and the connection, then ask again.") from None


def _figures(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A verdict row as JSON can hold it: dates as text, NaN and infinities as null."""
    if row is None:
        return None
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        elif isinstance(value, dt.date | dt.datetime):
            value = value.isoformat()
        out[key] = value
    return out


def _utc(value: Any) -> dt.datetime:
    """A timestamp as either database returns it (SQLite: text, naive UTC), as an aware UTC datetime."""
    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _as_dict(value: Any) -> dict[str, Any] | None:
    return json.loads(value) if isinstance(value, str) else value


def _names(registry: Registry, name: str, ref: str, version: int) -> bool:
    """Whether ``ref`` names ``version`` of model ``name`` now (an unknown ref names nothing)."""
    try:
        return registry.version_of(name, ref) == version
    except ScoringError:
        return False


def _check_source(source: str) -> None:
    if source not in SOURCES:
        raise ConfigError(f"promotion source {source!r}: one of {', '.join(SOURCES)}")


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "unknown"
