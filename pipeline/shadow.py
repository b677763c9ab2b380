"""Champion/challenger shadow scoring: challengers score the champion's valid rows, beside it.

A job lists ``model.challengers`` (versions or aliases of the same model). The run pins them at
start (``run.start``); in the score step, after the champion, its part ``shadow`` (``steps.SHADOW``,
with the run's bookkeeping) has each challenger score the same valid rows with its own verified
artifact (sha256, anchor, golden rows) and preprocessing, into ``shadow-v<N>.arrow``
(``score_challengers``). Once the champion's partition is published and
reconciled, ``publish`` (in finalize) replaces the partition's rows of every challenger in
``<output.table>_shadow`` and records one comparison per challenger in
``scoring_shadow_comparisons`` (view ``<output.table>_compare``): rows, agreement of the
predicted classes, mean and max absolute score difference, Spearman rank correlation, top-N
overlap and the PSI of the challenger's scores against the champion's.

A challenger that fails (it does not resolve, its artifact is tampered with, its contract does
not fit the rows, the comparison fails) is recorded ``failed`` with its error and logged; the
champion's run never fails because of it. The comparison holds the two score columns of the
partition (16 bytes a row); the rows themselves stream.

With ``model.split`` the arms are scored here like challengers, and the score step's part ``arms``
(``pipeline.ab``) then publishes each arm's rows with its version: the champion's own scores of every row stay
staged as ``champion-scored``. The comparison is then the champion's scores against the arm's over every row,
and the shadow table holds, for every row, the scores of each version that did not publish it (the champion's
of an arm's rows, with the champion's version).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from pipeline import drift, ledger, redact, steps
from pipeline.errors import ScoringError, StagingError
from pipeline.partition import parse_date
from pipeline.resolve import Models
from pipeline.score import scored_schema, scorer_for
from pipeline.staging import StagedWriter, read_batches, staged_schema
from pipeline.store import engines, job_tables, writes

if TYPE_CHECKING:
    from pipeline.context import RunContext

STATE = "shadow"  # per work dir: {ref: {"version", "rows", "error"}}


def pin(job: Any, models: Models) -> list[dict[str, Any]]:
    """The job's challengers and split arms (``ModelRef.shadowed``) resolved to versions now (``models``: the run's
    resolver), for the whole run; one that does not resolve is kept with its error (it is recorded as a failed
    comparison, the champion's run goes on; an arm's rows fall back to the champion: ``pipeline.ab``)."""
    pinned = []
    for ref in job.model.shadowed():
        try:
            pinned.append({"ref": ref, "version": models.resolve(job.model.name, ref).version, "error": None})
        except ScoringError as exc:
            pinned.append({"ref": ref, "version": None, "error": str(exc)})
    return pinned


def dataset(version: int) -> str:
    return f"shadow-v{version}"


# -- in the score stage --------------------------------------------------------------------
def score_challengers(ctx: RunContext, counts: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Step ``shadow``: each pinned challenger over this task's valid rows -> ``shadow-v<N>.arrow``; failures
    recorded, not raised (``counts``: the rows each challenger scored, for the step's log line)."""
    spec, key = ctx.spec, ctx.job.entity_key
    state: dict[str, dict[str, Any]] = {}
    if not spec.challengers or spec.dry_run:
        return state
    registry = ctx.registry()  # the anchors of the registry database, whatever database the job writes to
    valid = ctx.path(steps.VALID)
    schema = scored_schema(key, staged_schema(valid).field(key).type)
    for pin in spec.challengers:
        ref, version = pin["ref"], pin["version"]
        if version is None:
            state[ref] = {"version": None, "error": pin["error"]}
            continue
        try:
            mv = ctx.models.resolve(spec.model_name, version)
            scorer = scorer_for(registry, mv)
            with StagedWriter(ctx.path(dataset(version)), schema) as writer:
                for batch in read_batches(valid, ctx.batch_rows):
                    prediction, score = scorer.predict_arrow(scorer.features(batch.to_pandas()))
                    writer.write(pa.table({key: batch.column(key), "prediction": prediction, "score": score,
                                           "flags": pa.nulls(batch.num_rows, pa.string())}, schema=schema))
            state[ref] = {"version": version, "rows": writer.rows, "error": None}
            if counts is not None:
                counts[f"rows_v{version}"] = writer.rows
            ctx.log.info("challenger %s (v%d) scored %d rows in the shadow", ref, version, writer.rows)
        except Exception as exc:  # noqa: BLE001 - a challenger never fails the champion's run
            state[ref] = {"version": version, "error": redact.redact(str(exc) or type(exc).__name__)}
            ctx.log.warning("challenger %s (v%s) failed, the champion's run goes on: %s", ref, version,
                            state[ref]["error"])
    spec.write_json(STATE, state)
    return state


# -- in finalize ---------------------------------------------------------------------------
def publish(ctx: RunContext) -> list[dict[str, Any]]:
    """After the champion's partition is published: the challengers' rows and comparisons (never raises)."""
    spec, job = ctx.spec, ctx.job
    if not spec.challengers or spec.dry_run:
        return []
    day = parse_date(spec.partition_date)
    states = _merged_state(ctx)
    compared: list[dict[str, Any]] = []
    ok: list[tuple[str, int]] = []
    for pin in spec.challengers:
        ref = pin["ref"]
        row = {"job_id": spec.job_id, "partition_date": day, "challenger_ref": ref, "run_id": spec.run_id,
               "model_name": spec.model_name, "champion_version": spec.model_version,
               "challenger_version": pin["version"], "status": "failed", "error": states.get(ref, {}).get("error"),
               "computed_at": ledger.now(), **dict.fromkeys(METRICS)}
        if row["error"] is None:
            try:
                row |= compare(ctx, pin["version"], job.model.compare_top_n)
                row["status"] = "compared"
                ok.append((ref, pin["version"]))
            except Exception as exc:  # noqa: BLE001 - recorded, the champion's run stands
                row["error"] = redact.redact(f"the comparison failed: {type(exc).__name__}: {exc}")
        compared.append(row)
    try:
        key_type = staged_schema(ctx.parts(steps.SCORED)[0]).field(job.entity_key).type
        job_tables.ensure_shadow(ctx.engine, job.output.table, job.entity_key,
                            "int" if pa.types.is_integer(key_type) else "str", job.job_id, job.output.schema_)
        written = writes.replace_shadow(ctx.engine, table=job.output.table, key=job.entity_key, partition_date=day,
                                       batches=_shadow_rows(ctx, [v for _, v in ok]), schema=job.output.schema_)
        with engines.begin(ctx.engine) as conn:
            conn.execute(sa.text("DELETE FROM scoring_shadow_comparisons WHERE job_id = :j AND partition_date = :d"),
                         {"j": spec.job_id, "d": day})
            conn.execute(sa.text(f"INSERT INTO scoring_shadow_comparisons ({', '.join(COLUMNS)}) VALUES "
                                 f"({', '.join(':' + c for c in COLUMNS)})"), compared)
    except Exception as exc:  # noqa: BLE001 - the champion's partition is published; say so and go on
        ctx.log.error("the challengers' rows and comparisons of partition %s could not be written (%s); the "
                      "champion's partition is published. Re-run the partition to compare again.", day,
                      redact.redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
        return compared
    for row in compared:
        if row["status"] == "compared":
            ctx.log.info("challenger %s (v%s) vs champion v%s: agreement %.4f, mean |diff| %.4g, spearman %s, "
                         "top-%d overlap %.3f, psi %.4f", row["challenger_ref"], row["challenger_version"],
                         row["champion_version"], row["agreement"], row["mean_abs_diff"], row["spearman"],
                         row["top_n"], row["top_n_overlap"], row["psi"])
        else:
            ctx.log.warning("challenger %s failed: %s", row["challenger_ref"], row["error"])
    ctx.log.info("shadow table %s_shadow: %d challenger rows for partition %s", job.output.table, written, day)
    return compared


METRICS = ("rows_compared", "agreement", "mean_abs_diff", "max_abs_diff", "spearman", "top_n", "top_n_overlap", "psi")
COLUMNS = ("job_id", "partition_date", "challenger_ref", "run_id", "model_name", "champion_version",
           "challenger_version", "status", "error", *METRICS, "computed_at")


def _merged_state(ctx: RunContext) -> dict[str, dict[str, Any]]:
    """The challengers' state over every shard: a challenger failed if it failed in any shard."""
    spec = ctx.spec
    specs = spec.part_specs()
    merged: dict[str, dict[str, Any]] = {}
    for one in specs:
        for ref, s in one.read_json(STATE, default={}).items():
            have = merged.setdefault(ref, {"version": s.get("version"), "rows": 0, "error": None})
            have["rows"] += s.get("rows") or 0
            have["error"] = have["error"] or s.get("error")
    for pin in spec.challengers:  # a state file lost with its shard: say so rather than compare nothing
        merged.setdefault(pin["ref"], {"version": pin["version"], "error": pin["error"] or "no shadow scores staged"})
    return merged


def champion_dataset(ctx: RunContext) -> str:
    """The staged dataset of the champion's scores of every row: ``champion-scored`` once a split's arms took their
    rows (``pipeline.ab.assign_arms``), else ``scored``."""
    parts = ctx.parts(steps.CHAMPION_SCORED)
    return steps.CHAMPION_SCORED if parts and all(p.exists() for p in parts) else steps.SCORED


def lockstep(streams: list[Iterator[pa.RecordBatch]], what: Any) -> Iterator[list[pa.RecordBatch]]:
    """Batches of several staged files of the same rows in the same order, cut to the same lengths."""
    heads: list[pa.RecordBatch | None] = [None] * len(streams)
    while True:
        for i, stream in enumerate(streams):
            while heads[i] is None or heads[i].num_rows == 0:  # type: ignore[union-attr]
                heads[i] = next(stream, None)
                if heads[i] is None:
                    break
        ended = [h is None for h in heads]
        if all(ended):
            return
        if any(ended):
            raise StagingError(f"{what}: the staged scores of the versions do not hold the same number of rows; "
                               "clear the run from its first task to stage the partition again")
        n = min(h.num_rows for h in heads)  # type: ignore[union-attr]
        yield [h.slice(0, n) for h in heads]  # type: ignore[union-attr]
        heads = [h.slice(n) for h in heads]  # type: ignore[union-attr]


def _columns(paths: list[Any], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Key, prediction and score of staged scored files, in order."""
    keys, predictions, scores = [], [], []
    for batch in read_batches(paths, 1_000_000):
        keys.append(batch.column(key).to_numpy(zero_copy_only=False))
        predictions.append(batch.column("prediction").to_numpy(zero_copy_only=False))
        scores.append(batch.column("score").to_numpy(zero_copy_only=False))
    if not keys:
        return np.array([]), np.array([]), np.array([], dtype="float64")
    return np.concatenate(keys), np.concatenate(predictions), np.concatenate(scores).astype("float64")


def compare(ctx: RunContext, version: int, top_n: int) -> dict[str, Any]:
    """The comparison of a challenger's staged scores with the champion's, over the same rows."""
    key = ctx.job.entity_key
    k1, p1, s1 = _columns(ctx.parts(champion_dataset(ctx)), key)
    k2, p2, s2 = _columns(ctx.parts(dataset(version)), key)
    if len(k1) != len(k2) or not np.array_equal(k1, k2):  # same valid rows in the same order, or align by key
        o1, o2 = np.argsort(k1, kind="stable"), np.argsort(k2, kind="stable")
        k1, p1, s1, k2, p2, s2 = k1[o1], p1[o1], s1[o1], k2[o2], p2[o2], s2[o2]
        if not np.array_equal(k1, k2):
            raise ValueError(f"the challenger scored {len(k2)} rows, the champion {len(k1)}: not the same rows")
    return metrics(k1, p1, s1, p2, s2, top_n)


def metrics(keys: np.ndarray, p1: np.ndarray, s1: np.ndarray, p2: np.ndarray, s2: np.ndarray,
            top_n: int) -> dict[str, Any]:
    """Champion (1) against challenger (2) on the same rows, in the same order."""
    from scipy.stats import spearmanr

    n = len(keys)
    if n == 0:
        return {"rows_compared": 0, "top_n": 0}
    diff = np.abs(s1 - s2)
    rho = float(spearmanr(s1, s2).statistic) if n > 1 and np.ptp(s1) > 0 and np.ptp(s2) > 0 else None
    top = min(top_n, n)
    best1 = set(keys[np.lexsort((keys, -s1))[:top]].tolist())
    best2 = set(keys[np.lexsort((keys, -s2))[:top]].tolist())
    edges = np.unique(np.quantile(s1, np.linspace(0.1, 0.9, 9)))
    shares = [np.bincount(np.searchsorted(edges, s, side="right"), minlength=len(edges) + 1) / n for s in (s1, s2)]
    return {"rows_compared": n, "agreement": float(np.mean(p1 == p2)), "mean_abs_diff": float(diff.mean()),
            "max_abs_diff": float(diff.max()), "spearman": rho, "top_n": top,
            "top_n_overlap": len(best1 & best2) / top, "psi": drift.psi(shares[0], shares[1])}


def _shadow_rows(ctx: RunContext, versions: list[int]) -> Iterator[pa.Table]:
    """The compared versions' staged rows with the run's columns (``job_tables.SHADOW_COLUMNS``): every row a version
    scored but did not publish; with a split's arms, also the champion's scores of the rows an arm published."""
    spec, key = ctx.spec, ctx.job.entity_key
    scored_at = dt.datetime.fromisoformat(spec.read_json(steps.SCORE_STATE)["scored_at"])
    day = parse_date(spec.partition_date)
    split = champion_dataset(ctx) == steps.CHAMPION_SCORED

    def rows(batch: pa.RecordBatch | pa.Table, version: int) -> pa.Table:
        n = batch.num_rows
        return pa.table({key: batch.column(key), "partition_date": pa.repeat(pa.scalar(day, pa.date32()), n),
                         "model_name": pa.repeat(pa.scalar(spec.model_name), n),
                         "model_version": pa.repeat(pa.scalar(version, pa.int32()), n),
                         "prediction": batch.column("prediction"), "score": batch.column("score"),
                         "run_id": pa.repeat(pa.scalar(spec.run_id), n),
                         "scored_at": pa.repeat(pa.scalar(scored_at, pa.timestamp("us")), n)})

    def not_published_by(dataset_name: str, version: int) -> Iterator[pa.Table]:
        """A staged dataset's rows whose published version (``scored``'s ``model_version``) is not ``version``."""
        streams = [read_batches(ctx.parts(dataset_name), ctx.batch_rows),
                   read_batches(ctx.parts(steps.SCORED), ctx.batch_rows, columns=["model_version"])]
        for batch, published in lockstep(streams, f"partition {spec.partition_date}"):
            yield rows(pa.Table.from_batches([batch]).filter(pc.not_equal(published.column(0), version)), version)

    for version in versions:
        if split:
            yield from not_published_by(dataset(version), version)
        else:
            for batch in read_batches(ctx.parts(dataset(version)), ctx.batch_rows):
                yield rows(batch, version)
    if split:
        yield from not_published_by(steps.CHAMPION_SCORED, spec.model_version)


def comparisons(engine: Any, model_name: str, day: dt.date, job_id: str | None = None) -> list[dict[str, Any]]:
    """The recorded comparisons of a model's challengers for one partition (``scoring models compare``)."""
    sql = ("SELECT * FROM scoring_shadow_comparisons WHERE model_name = :m AND partition_date = :d"
           + (" AND job_id = :j" if job_id else "") + " ORDER BY job_id, challenger_ref")
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(sql), {"m": model_name, "d": day, "j": job_id}).mappings()]

