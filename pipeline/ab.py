"""A/B by rule: a job's live traffic split between its champion and other versions (``model.split``).

The run pins the arms when it starts (``pin``): each arm's reference resolved to a version, its contract
checked against the champion's (``kernels.arms.contract_differences``: a split over versions with different
contracts is refused, the run fails before it reads a row). An arm that does not resolve is pinned with its
error: its rows fall back to the champion (a ledger warning and a metric), the run goes on. The online door
pins the same way, so an entity gets the same arm in both (``kernels.arms``).

In the nightly run every arm's version scores all the valid rows in the shadow, like a challenger
(``shadow.score_challengers``). Then the score step's part ``arms`` (``steps.ARMS``, ``assign_arms``) gives each
row its arm (``kernels.arms.assign``: the entity key and the salt, nothing else) and rewrites the run's
``scored`` rows: an arm's rows take its version's prediction and score, and every row names the version that
scored it (``model_name``, ``model_version``) and its ``arm``. The champion's scores of every row stay staged as
``champion-scored`` for the shadow (the comparison, and the shadow table's rows of the version that did not
publish a row). An arm whose version failed to load or verify scored nothing: its rows keep the champion's
scores, their ``arm`` and the champion's version, and the run records a warning (``ab_arm_fallback: ...``) and
a metric. The rows per arm go to the ledger (``scoring_runs.arms``); finalize checks that they add up to
``rows_scored`` and opens a new assignment period (``scoring_ab_periods``) when the split, its salt or a
version behind it changed since the job's newest period (``record_period``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import ledger, redact, shadow, steps
from pipeline.errors import ConfigError, ScoringError, StagingError
from pipeline.kernels.arms import CHAMPION, assign, contract_differences, ranges
from pipeline.model import ModelVersion
from pipeline.partition import parse_date
from pipeline.resolve import Models
from pipeline.staging import RunSpec, StagedWriter, read_batches, staged_schema
from pipeline.store import engines, operational

if TYPE_CHECKING:
    from pipeline.context import RunContext


@dataclass(frozen=True)
class Arm:
    """One arm of a split: its name (the reference in ``model.split``), the version it resolved to (None: it did
    not resolve, ``error`` says why, and its rows fall back to the champion) and its share in basis points."""

    name: str
    version: int | None
    basis_points: int
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def salt(job: Any) -> str:
    """The assignment's salt: ``model.split_salt``, else the job id."""
    return job.model.split_salt or job.job_id


def split_of(arms: list[Arm]) -> list[tuple[str, int]]:
    """``[(arm, basis points), ...]`` for ``kernels.arms.assign``, in the split's order."""
    return [(arm.name, arm.basis_points) for arm in arms]


def pin(job: Any, models: Models, champion: ModelVersion) -> list[Arm]:
    """The job's arms resolved now, for the whole run (or the door's model generation).

    Raises ``ConfigError`` when an arm's version has another contract than the champion's, or is the champion's
    own version; an arm that does not resolve (or whose card fails its anchor) is kept with its error."""
    arms = []
    for ref, basis_points in job.model.split_basis_points():
        try:
            mv = models.resolve(job.model.name, ref)
        except ScoringError as exc:
            arms.append(Arm(ref, None, basis_points, redact.redact(str(exc))))
            continue
        if mv.version == champion.version:
            raise ConfigError(f"job {job.job_id}: model.split arm {ref!r} is {mv.name} v{mv.version}, the champion "
                              f"itself ({job.model.ref!r}): point the arm at another version, or remove it from "
                              "model.split")
        differences = contract_differences(champion.card, mv.card)
        if differences:
            raise ConfigError(f"job {job.job_id}: model.split arm {ref!r} is {mv.name} v{mv.version}, whose contract "
                              f"differs from the champion v{champion.version}'s: " + "; ".join(differences)
                              + ". A split needs versions with the same contract: compare this one in the "
                              "shadow (model.challengers) instead, or register it with the champion's contract.")
        arms.append(Arm(ref, int(mv.version), basis_points))
    return arms



# -- the arms pinned for the run (a run-level state file of its staging area, read by every task) ----------------
FALLBACK = "ab_arm_fallback"  # the ledger warning's code (scoring_runs.warnings)
SCORED_COLUMNS = (("model_name", pa.string()), ("model_version", pa.int32()), ("arm", pa.string()))


def pinned(spec: RunSpec) -> tuple[str | None, list[Arm]]:
    """The run's salt and arms as ``run.start`` pinned them in its spec (``(None, [])``: the job has no split)."""
    return spec.ab_salt, [Arm(**a) for a in spec.arms]


def describe(arms: list[Arm]) -> str:
    """The arms for a log line: ``challenger v5 (30%), next unresolved (10%)``."""
    return ", ".join(f"{a.name} {'v' + str(a.version) if a.version is not None else 'unresolved'} "
                     f"({percent(a.basis_points)})" for a in arms)


def percent(basis_points: int) -> str:
    """Basis points as the job file writes a share: 1000 -> ``10%``, 250 -> ``2.5%``."""
    return f"{basis_points / 100:g}%"


# -- in the score step: each row's arm --------------------------------------------------------------------------
def assign_arms(ctx: RunContext, counts: dict[str, Any] | None = None) -> dict[str, Any]:
    """Step ``arms``: each valid row's arm; ``scored`` rewritten with the arm versions' scores and per-row
    ``model_name``, ``model_version``, ``arm``; the champion's scores kept as ``champion-scored``. ``counts["arms"]``:
    the rows per arm (the ledger's ``scoring_runs.arms``, without its period: finalize adds it)."""
    counts = {} if counts is None else counts
    spec, key = ctx.spec, ctx.job.entity_key
    run_salt, arms = pinned(spec)
    if not arms or spec.dry_run:
        return counts
    champion = spec.model_version
    states = spec.read_json(shadow.STATE, default={})
    usable: dict[str, int] = {}
    errors: dict[str, str] = {}
    for arm in arms:
        state = states.get(arm.name) or {}
        error = arm.error or state.get("error")
        if error is None and (arm.version is None or not ctx.path(shadow.dataset(arm.version)).exists()):
            error = "no shadow scores staged"
        if error is None:
            usable[arm.name] = int(arm.version)  # type: ignore[arg-type]
        else:
            errors[arm.name] = error
    scored, kept = ctx.path(steps.SCORED), ctx.path(steps.CHAMPION_SCORED)
    os.replace(scored, kept)  # the champion's scores of every row, for the shadow
    base = staged_schema(kept)
    schema = pa.schema([*base, *(pa.field(n, t) for n, t in SCORED_COLUMNS)])
    split = split_of(arms)
    rows = dict.fromkeys([CHAMPION, *(a.name for a in arms)], 0)
    names = list(usable)
    streams = [read_batches(kept, ctx.batch_rows),
               *(read_batches(ctx.path(shadow.dataset(usable[n])), ctx.batch_rows) for n in names)]
    with StagedWriter(scored, schema) as writer:
        for champ, *others in shadow.lockstep(streams, kept):
            keys = champ.column(key)
            arm_of = assign(keys, run_salt or salt(ctx.job), split)
            prediction, score = champ.column("prediction"), champ.column("score")
            version = np.full(len(arm_of), champion, dtype=np.int32)
            for name, other in zip(names, others, strict=True):
                if not pc.all(pc.equal(other.column(key), keys)).as_py() and other.num_rows:
                    raise StagingError(f"partition {spec.partition_date}: arm {name!r}'s shadow rows are not the "
                                       "champion's rows in the same order; clear the run from its first task")
                mask = pa.array(arm_of == name)
                prediction = pc.if_else(mask, other.column("prediction"), prediction)
                score = pc.if_else(mask, other.column("score"), score)
                version[arm_of == name] = usable[name]
            for name, n in zip(*np.unique(arm_of.astype(str), return_counts=True), strict=True):
                rows[str(name)] = rows.get(str(name), 0) + int(n)
            table = pa.table({**{f.name: champ.column(f.name) for f in base}, "prediction": prediction,
                              "score": score,
                              "model_name": pa.repeat(pa.scalar(spec.model_name, pa.string()), champ.num_rows),
                              "model_version": pa.array(version, pa.int32()),
                              "arm": pa.array(arm_of.tolist(), pa.string())}, schema=schema)
            writer.write(table)
    summary = {"period": None, "salt": run_salt or salt(ctx.job),
               "arms": {CHAMPION: {"version": champion, "rows": rows[CHAMPION]},
                        **{a.name: {"version": a.version, "rows": rows[a.name], "fallback": a.name in errors,
                                    "error": errors.get(a.name)} for a in arms}}}
    for name, error in errors.items():
        ctx.log.warning("arm %s: its %d rows fall back to the champion v%d: %s", name, rows[name], champion, error)
    ctx.log.info("arms: %s", ", ".join(f"{n} {r} rows" for n, r in rows.items()))
    counts["arms"] = json.dumps(summary, sort_keys=True)
    return counts


def combine(shard_specs: list[RunSpec], counts: dict[str, Any]) -> None:
    """A sharded run's rows per arm: the shards' added up (an arm fell back if it fell back in any shard)."""
    merged: dict[str, Any] | None = None
    for one in shard_specs:
        text = one.read_json(steps.SHARD_STATE)["counts"].get("arms")
        if not text:
            continue
        part = json.loads(text)
        if merged is None:
            merged = part
            continue
        for name, arm in part["arms"].items():
            have = merged["arms"].setdefault(name, {**arm, "rows": 0})
            have["rows"] += arm["rows"]
            if arm.get("fallback"):
                have["fallback"], have["error"] = True, have.get("error") or arm.get("error")
    if merged is not None:
        counts["arms"] = json.dumps(merged, sort_keys=True)


# -- in finalize ------------------------------------------------------------------------------------------------
def reconciliation_problems(row: dict[str, Any]) -> list[str]:
    """The rows per arm add up to the rows scored (nothing to check for a run without arms)."""
    summary = ledger.as_json(row.get("arms")) if row.get("arms") else None
    if not summary:
        return []
    total = sum(int(a["rows"]) for a in summary["arms"].values())
    if total != row["rows_scored"]:
        each = ", ".join(f"{name} {arm['rows']}" for name, arm in summary["arms"].items())
        return [f"rows per arm ({each}) add up to {total}, not rows_scored {row['rows_scored']}"]
    return []


def finish(ctx: RunContext, row: dict[str, Any]) -> dict[str, Any] | None:
    """After a run reconciled: its assignment period (opened if the split changed), set in the ledger's
    ``arms``; a warning for each arm that fell back. Returns the ledger's arms summary (None: no split)."""
    spec, job = ctx.spec, ctx.job
    if spec.dry_run:
        return None
    run_salt, arms = pinned(spec)
    summary = ledger.as_json(row.get("arms")) if row.get("arms") else None
    period = record_period(ctx, run_salt, arms)
    if summary is None:
        return None
    summary["period"] = period
    ledger.update(ctx.engine, spec.job_id, spec.run_id, spec.attempt, arms=json.dumps(summary, sort_keys=True))
    champion = summary["arms"][CHAMPION]["version"]
    for name, arm in summary["arms"].items():
        if name != CHAMPION and arm.get("fallback"):
            version = f"v{arm['version']}" if arm.get("version") is not None else "(unresolved)"
            note = (f"{FALLBACK}: arm {name!r} ({job.model.name} {version}) could not score: {arm.get('error')}; its "
                    f"{arm['rows']} rows of partition {spec.partition_date} were scored by the champion "
                    f"v{champion} (their arm column stays {name!r}). Fix or re-register the version, or remove "
                    "the arm from model.split, then re-run the partition.")
            ctx.log.warning("%s", note)
            ledger.add_warning(ctx.engine, spec.job_id, spec.run_id, spec.attempt, note)
    return summary


# -- assignment periods -----------------------------------------------------------------------------------------
def fingerprint(champion: int, run_salt: str | None, arms: list[Arm]) -> str:
    """What an assignment period stands for: the champion's version, the salt and the arms (name, version, basis
    points, in order); no split: the empty fingerprint."""
    if not arms:
        return "no split"
    text = json.dumps([champion, run_salt, [[a.name, a.version, a.basis_points] for a in arms]])
    return hashlib.sha256(text.encode()).hexdigest()


def period_arms(arms: list[Arm]) -> list[dict[str, Any]]:
    """A period's arms as ``scoring_ab_periods.arms`` keeps them, with their bucket ranges."""
    spans = {name: (first, end) for name, first, end in ranges(split_of(arms))}
    return [{"name": a.name, "version": a.version, "basis_points": a.basis_points,
             "first_bucket": spans[a.name][0], "end_bucket": spans[a.name][1]} for a in arms]


def change_text(before: dict[str, Any] | None, champion: int, run_salt: str | None, arms: list[Arm]) -> str:
    """What changed from the period ``before`` (a ``scoring_ab_periods`` row, None: none) to this split, in
    words: ``first split``, ``challenger 10% -> 20%``, ``salt changed: every entity reshuffled``,
    ``challenger v4 -> v5``, ``champion v3 -> v4``, ``split removed``."""
    if not arms:
        return "split removed"
    if before is None:
        return "first split"
    old = ledger.as_json(before["arms"]) or []
    if not old:
        return "split restored"
    changes = []
    if before["salt"] != run_salt:
        changes.append("salt changed: every entity reshuffled")
    if int(before["champion_version"]) != champion:
        changes.append(f"champion v{before['champion_version']} -> v{champion}")
    was = {a["name"]: a for a in old}
    now = {a["name"]: a for a in period_arms(arms)}
    for name, arm in now.items():
        prior = was.get(name)
        if prior is None:
            changes.append(f"arm {name} added at {percent(arm['basis_points'])}")
            continue
        if prior["basis_points"] != arm["basis_points"]:
            changes.append(f"{name} {percent(prior['basis_points'])} -> {percent(arm['basis_points'])}")
        if prior["version"] != arm["version"]:
            changes.append(f"{name} {_v(prior['version'])} -> {_v(arm['version'])}")
        if prior["first_bucket"] != arm["first_bucket"] and before["salt"] == run_salt:
            changes.append(f"{name}'s buckets moved ({prior['first_bucket']}.. -> {arm['first_bucket']}..: an arm "
                           "before it changed): its entities changed")
    changes += [f"arm {name} removed" for name in was if name not in now]
    return "; ".join(changes) or "split changed"


def _v(version: int | None) -> str:
    return "unresolved" if version is None else f"v{version}"


def record_period(ctx: RunContext, run_salt: str | None, arms: list[Arm], tries: int = 5) -> int | None:
    """The run's assignment period: the job's newest if its fingerprint is this run's, else a new one (period N+1,
    ``change`` in words, logged). Two runs finishing at once insert the same period once (the primary key,
    insert-if-absent): the second finds it. None: the job has no split and never had one open."""
    spec = ctx.spec
    champion = int(spec.model_version)
    mark = fingerprint(champion, run_salt, arms)
    for _ in range(tries):
        with engines.begin(ctx.engine) as conn:
            newest = operational.newest_ab_period(conn, spec.job_id)
            if newest is not None and newest["fingerprint"] == mark:
                return None if not arms else int(newest["period"])
            if newest is None and not arms:
                return None
            period = 1 if newest is None else int(newest["period"]) + 1
            change = change_text(newest, champion, run_salt, arms)
            inserted = operational.insert_ab_period(conn, {
                "job_id": spec.job_id, "period": period, "model_name": spec.model_name,
                "champion_version": champion, "salt": run_salt or "", "arms": json.dumps(period_arms(arms)),
                "fingerprint": mark, "change": change, "first_partition": parse_date(spec.partition_date),
                "run_id": spec.run_id, "started_at": ledger.now()})
        if inserted:
            level = ctx.log.info if change == "first split" else ctx.log.warning
            level("A/B assignment period %d of job %s opened: %s (%s)", period, spec.job_id, change,
                  describe(arms) or "no arms: every row is the champion's")
            return None if not arms else period
    raise ScoringError(f"job {spec.job_id}: could not record its A/B assignment period after {tries} tries "
                       "(other runs kept changing it); re-run the partition")


__all__ = ["CHAMPION", "Arm", "pin", "salt", "split_of"]
