"""The stages of one run, as the DAG's tasks and the CLI call them.

Each stage reads its input from the run's staging area, writes its output there, records
its counts and duration in the ledger, and on failure marks the attempt failed with the
error text before re-raising. The DAG tasks and ``scoring run`` call exactly these.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline import connections, ledger, store
from pipeline.config import JobConfig, jobs_dir, load_job, project_home
from pipeline.errors import (
    ConfigError,
    DeliveryError,
    DriftError,
    InputError,
    ReconciliationError,
    ScoringError,
    ValidationFailedError,
)
from pipeline.partition import data_files, parse_date, partition_dir, partition_files
from pipeline.registry import Registry
from pipeline.staging import (
    RunSpec,
    StagedWriter,
    read_batches,
    safe_name,
    staged_rows,
    staged_schema,
    staging_root,
)

log = logging.getLogger("pipeline.run")
FLAGS = "__flags"  # validation's 'flag' reasons, carried to the predictions' flags column


def reports_dir() -> Path:
    """Folder of validation reports (``SCORING_REPORTS_DIR``, default ``<home>/reports``)."""
    env = os.environ.get("SCORING_REPORTS_DIR")
    return Path(env) if env else project_home() / "reports"


def find_job(job_id: str) -> JobConfig:
    """Load a job file by id from the jobs folder."""
    path = jobs_dir() / f"{job_id}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in jobs_dir().glob("*.yaml"))
        raise ConfigError(f"no job file {path} (jobs in {jobs_dir()}: {', '.join(known) or 'none'})")
    return load_job(path)


class RunLog(logging.LoggerAdapter):
    """Prefix every line with the job, partition and run id."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        e = self.extra or {}
        return f"[job={e['job']} partition={e['partition']} run={e['run']}] {msg}", kwargs


def run_log(spec: RunSpec) -> RunLog:
    return RunLog(log, {"job": spec.job_id, "partition": spec.partition_date, "run": spec.run_id})


def engine(job: JobConfig, url: str | None = None) -> Any:
    return store.engine_for(url or store.resolve_url(job.output.connection))


def preload() -> None:
    """Import the heavy libraries the stages use (Great Expectations, scikit-learn) now.

    A process that runs several stages, a benchmark or a worker started ahead of its tasks
    pays these imports (seconds, mostly Great Expectations) once instead of in its first stage.
    """
    from pipeline import drift, preprocess, score, validate  # noqa: F401

    validate.load_gx()
    import sklearn.ensemble  # noqa: F401


# -- readiness -------------------------------------------------------------------------
def partition_path(job: JobConfig, partition_date: dt.date) -> Path:
    return partition_dir(job.source_root(), job.source.layout, partition_date)


def partition_ready(job: JobConfig, partition_date: dt.date) -> bool:
    """True when the partition's directory holds at least one data file."""
    return bool(data_files(partition_path(job, partition_date), job.source.format))


# -- stages ----------------------------------------------------------------------------
def start(
    job: JobConfig,
    *,
    run_id: str,
    partition_date: dt.date | str,
    model_ref: str | None = None,
    dry_run: bool = False,
    url: str | None = None,
    mode: str | None = None,
    resend: bool = False,
) -> RunSpec:
    """Pin the model version and output mode for the run, open its ledger row and staging area."""
    day = parse_date(partition_date)
    mode = output_mode(job, mode)
    mv = Registry().resolve(job.model.name, model_ref or job.model.ref)
    eng = engine(job, url)
    store.ensure_ledger(eng)
    attempt = ledger.start_attempt(
        eng, job_id=job.job_id, run_id=run_id, partition_date=day, mode=mode,
        dry_run=dry_run, model_name=mv.name, model_version=mv.version,
    )
    staging = staging_root() / job.job_id / day.isoformat() / f"{safe_name(run_id)}.{attempt}"
    staging.mkdir(parents=True, exist_ok=True)
    spec = RunSpec(job.job_id, run_id, attempt, day.isoformat(), mv.name, mv.version, dry_run, str(staging),
                   mode=mode, resend=resend)
    run_log(spec).info("started attempt %d with model %s v%d (ref %r), output mode %s%s%s", attempt, mv.name,
                       mv.version, model_ref or job.model.ref, mode, " [dry run]" if dry_run else "",
                       " [full resend]" if resend else "")
    return spec


def output_mode(job: JobConfig, override: str | None = None) -> str:
    """The run's output mode: the trigger's override if given, else the job's; it must be configured."""
    mode = override or job.output.mode
    if mode not in job.output.modes:
        need = "output.table" if mode == "persist" else "output.push.sink"
        raise ConfigError(
            f"job {job.job_id}: output mode {mode!r} is not configured (the job file has no {need}); "
            f"this job can run in: {', '.join(job.output.modes)}"
        )
    return mode


@contextmanager
def stage(job: JobConfig, spec: RunSpec, name: str, url: str | None = None) -> Iterator[dict[str, Any]]:
    """Time a stage, store its counts in the ledger; on failure record the error and re-raise."""
    eng = engine(job, url)
    rlog = run_log(spec)
    counts: dict[str, Any] = {}
    started = time.perf_counter()
    sharded = spec.shard is not None
    label = f"{name}[shard {spec.shard}]" if sharded else name
    if not sharded:
        ledger.update(eng, spec.job_id, spec.run_id, spec.attempt, status="running")
    rlog.info("%s: started", label)
    try:
        yield counts
    except BaseException as exc:
        message = str(exc) if isinstance(exc, ScoringError) else f"{type(exc).__name__}: {exc}"
        rlog.error("%s failed: %s", label, message)
        try:
            ledger.update(eng, spec.job_id, spec.run_id, spec.attempt, status="failed",
                          failed_stage=label, error=message[:4000], finished_at=ledger.now(),
                          **({} if sharded else counts))
        except Exception as ledger_exc:  # noqa: BLE001 - the original error matters more
            rlog.error("could not record the failure in the ledger: %s", ledger_exc)
        raise
    seconds = time.perf_counter() - started
    if sharded:  # parallel shards never write the same ledger row; combine() adds them up
        state = spec.read_json("shard") if (spec.staging / "shard.json").exists() else {"counts": {}, "seconds": {}}
        state["counts"].update(counts)
        state["seconds"][name] = round(seconds, 3)
        spec.write_json("shard", state)
    else:
        ledger.update(eng, spec.job_id, spec.run_id, spec.attempt, stage=name, seconds=seconds, **counts)
    rlog.info("%s: done in %.2fs %s", label, seconds, counts)


def ingest(job: JobConfig, spec: RunSpec, url: str | None = None) -> dict[str, Any]:
    """Read the partition's files into ``ingested.arrow`` in the contract's schema."""
    from pipeline import ingest as ingest_mod

    with stage(job, spec, "ingest", url) as counts:
        card = Registry().resolve(spec.model_name, spec.model_version).card
        day = parse_date(spec.partition_date)
        if spec.shard is not None:  # the files the plan saw, so a retried shard reads the same ones
            planned = [Path(f) for f in json.loads((spec.root / "keys.json").read_text())["files"]]
            files = shard_files(planned, spec.shards, spec.shard)
        else:
            files = partition_files(job.source_root(), job.source.layout, job.source.format, day)
        with StagedWriter(spec.path("ingested")) as writer:
            result = ingest_mod.ingest(
                files, fmt=job.source.format, inputs=card["inputs"], key=job.entity_key,
                partition_date=day, batch_rows=job.source.batch_rows, write=writer.write,
            )
            writer.schema = writer.schema or result.schema  # an empty partition still has its schema
        spec.write_json("ingest", {"files": result.files, "duplicate_keys": result.duplicate_keys,
                                   "ignored_columns": result.ignored_columns})
        counts["rows_in"] = result.rows
        if result.rows == 0 and spec.shard is None:
            where = partition_path(job, day)
            if job.validation.on_empty == "fail":
                raise InputError(
                    f"partition {day}: the {len(files)} file(s) in {where} hold no rows. Nothing was published. "
                    "If the upstream export is incomplete, re-export it and re-run the partition; if an empty "
                    "day is normal for this job, set validation.on_empty: succeed in the job file."
                )
            run_log(spec).warning("partition %s is empty (%d file(s) in %s, 0 rows): continuing with zero rows "
                                  "(validation.on_empty: succeed)", day, len(files), where)
    return counts


def validate(job: JobConfig, spec: RunSpec, url: str | None = None) -> dict[str, Any]:
    """Run the expectation suite; split rows into ``valid`` and ``quarantine``; apply the threshold."""
    from pipeline import validate as val

    with stage(job, spec, "validate", url) as counts:
        rlog = run_log(spec)
        card = Registry().resolve(spec.model_name, spec.model_version).card
        expectations = val.contract_expectations(card["inputs"], job.entity_key,
                                                 unknown_categories=job.validation.unknown_categories)
        dups = (json.loads((spec.root / "keys.json").read_text())["duplicate_keys"] if spec.shard is not None
                else spec.read_json("ingest")["duplicate_keys"])
        if dups:  # keys seen more than once across the partition's files
            expectations.append(val.expectation("expect_column_values_to_not_be_in_set",
                                                f"duplicate_key:{job.entity_key}", column=job.entity_key,
                                                value_set=dups))
        source = spec.path("ingested")
        schema = staged_schema(source)
        extra = val.job_expectations(job.validation.expectations)
        for i, exp in enumerate(extra):
            unknown = [c for c in val.columns_of(exp) if c not in schema.names]
            if unknown:
                raise ConfigError(
                    f"job {job.job_id}: validation.expectations[{i}] ({exp['type']}) names column(s) "
                    f"{', '.join(unknown)} that the input does not have (columns: "
                    f"{', '.join(n for n in schema.names if not n.startswith('__'))})"
                )
        expectations = val.unique_reasons(expectations + extra)
        validator = val.RowValidator(expectations, job.job_id)
        total = staged_rows(source)
        q_schema = schema.append(pa.field("reasons", pa.string()))
        v_schema = schema.append(pa.field(val.FLAGS, pa.string()))
        done = 0
        started = time.perf_counter()
        flagged = 0
        with StagedWriter(spec.path("valid"), v_schema) as good, StagedWriter(spec.path("quarantine"), q_schema) as bad:
            for batch in read_batches(source, job.source.batch_rows):
                outcome = validator.check(batch.to_pandas(types_mapper=_exact_integers, strings_to_categorical=True))
                keep = outcome.keep_mask()
                valid = pa.Table.from_batches([batch.filter(pa.array(keep))])
                flags = (pa.array(outcome.flags[keep], pa.string()) if outcome.flags is not None
                         else pa.nulls(valid.num_rows, pa.string()))
                flagged += valid.num_rows - flags.null_count
                good.write(valid.append_column(val.FLAGS, flags))
                if len(outcome.bad):
                    bad.write(pa.Table.from_batches([batch.take(pa.array(outcome.bad))])
                              .append_column("reasons", pa.array(outcome.reasons, pa.string())))
                done += batch.num_rows
                rate = done / max(time.perf_counter() - started, 1e-9)
                rlog.info("validate: %d/%d rows (%.0f rows/s)", done, total, rate)
        report = validator.report()
        report.update(job_id=job.job_id, partition=spec.partition_date, run_id=spec.run_id, rows_in=total,
                      rows_valid=good.rows, rows_quarantined=bad.rows, rows_flagged=flagged,
                      max_quarantine_share=job.validation.max_quarantine_share,
                      model=f"{spec.model_name} v{spec.model_version}",
                      quarantine_sample=_sample(spec.path("quarantine"), 20))
        stem = reports_dir() / job.job_id / spec.partition_date / (
            safe_name(spec.run_id) + ("" if spec.shard is None else f".shard-{spec.shard:03d}"))
        stem.parent.mkdir(parents=True, exist_ok=True)
        report_path = stem.with_name(stem.name + ".html")
        stem.with_name(stem.name + ".json").write_text(json.dumps(report, indent=2, default=str))
        from pipeline.report import validation_html

        report_path.write_text(validation_html(report))
        rlog.info("validation report: %s (JSON beside it)", report_path)
        counts.update(rows_valid=good.rows, rows_quarantined=bad.rows)
        if spec.shard is None:
            check_threshold(job, spec, total, bad.rows, report["unexpected_counts"], report_path)
    return counts


def check_threshold(job: JobConfig, spec: RunSpec, total: int, quarantined: int, unexpected: dict[str, int],
                    report_path: Path | str) -> None:
    """Fail (publishing nothing) when the quarantined share passes the job's threshold."""
    share = quarantined / total if total else 0.0
    if share <= job.validation.max_quarantine_share:
        return
    top = ", ".join(f"{k} ({v})" for k, v in sorted(unexpected.items(), key=lambda kv: -kv[1])[:5])
    raise ValidationFailedError(
        f"partition {spec.partition_date}: {quarantined} of {total} rows ({share:.1%}) failed "
        f"validation, above the job's max_quarantine_share of "
        f"{job.validation.max_quarantine_share:.1%}. Nothing was published. Most frequent "
        f"failures: {top}. Report: {report_path}. Fix the input upstream, or raise "
        "validation.max_quarantine_share in the job file if this is expected."
    )


def _exact_integers(arrow_type: pa.DataType) -> Any:
    """to_pandas types: integers stay exact with nulls (pandas' Int64), not float64."""
    import pandas as pd

    return pd.Int64Dtype() if pa.types.is_integer(arrow_type) else None


def _sample(path: Path, n: int) -> list[dict[str, Any]]:
    """The first ``n`` rows of a staged file, for reports."""
    first = next(read_batches(path, n), None)
    return [_original_values(r) for r in first.to_pylist()] if first is not None else []


def _original_values(row: dict[str, Any]) -> dict[str, Any]:
    """A row as it arrived: ``__raw__`` text back in its column, bookkeeping columns dropped."""
    from pipeline.ingest import RAW_PREFIX

    out = {k: v for k, v in row.items() if not k.startswith("__")}
    for k, v in row.items():
        if k.startswith(RAW_PREFIX) and v is not None:
            out[k[len(RAW_PREFIX):]] = v
    return out


def preprocess(job: JobConfig, spec: RunSpec, url: str | None = None) -> dict[str, Any]:
    """Apply the model's registered preprocessing to the valid rows (``features.arrow``)."""
    from pipeline import preprocess as prep

    with stage(job, spec, "preprocess", url):
        card = Registry().resolve(spec.model_name, spec.model_version).card
        transform = prep.for_card(card)
        inputs = [c["name"] for c in card["inputs"]]
        with StagedWriter(spec.path("features")) as writer:
            for batch in read_batches(spec.path("valid"), job.source.batch_rows):
                frame = batch.to_pandas()
                features = transform(frame[inputs])
                features.insert(0, job.entity_key, frame[job.entity_key].to_numpy())
                features[FLAGS] = frame[FLAGS].to_numpy()
                table = pa.Table.from_pandas(features, preserve_index=False)
                # a batch without flags would make the column Arrow's null type: keep it text
                writer.write(table.set_column(table.schema.get_field_index(FLAGS), FLAGS,
                                              table[FLAGS].cast(pa.string())))
            if writer.schema is None:  # zero valid rows: an empty file with the feature schema
                empty = staged_schema(spec.path("valid")).empty_table().to_pandas()
                features = transform(empty[inputs])
                features.insert(0, job.entity_key, empty[job.entity_key])
                features[FLAGS] = empty[FLAGS]
                schema = pa.Table.from_pandas(features, preserve_index=False).schema
                writer.schema = schema.set(schema.get_field_index(FLAGS), pa.field(FLAGS, pa.string()))
    return {}


def score(job: JobConfig, spec: RunSpec, url: str | None = None) -> dict[str, Any]:
    """Load the pinned model (sha256 and golden rows checked) and score ``features`` in batches."""
    from pipeline.score import load_scorer

    with stage(job, spec, "score", url) as counts:
        rlog = run_log(spec)
        scorer = load_scorer(Registry(), spec.model_name, spec.model_version)
        source = spec.path("features")
        total = staged_rows(source)
        key_type = staged_schema(source).field(job.entity_key).type
        out_schema = pa.schema([(job.entity_key, key_type), ("prediction", pa.string()), ("score", pa.float64()),
                                ("flags", pa.string())])
        done = 0
        started = time.perf_counter()
        with StagedWriter(spec.path("scored"), out_schema) as writer:
            for batch in read_batches(source, job.source.batch_rows):
                frame = batch.to_pandas()
                prediction, score_ = scorer.predict(frame.drop(columns=[job.entity_key, FLAGS]))
                writer.write(pa.table({job.entity_key: batch.column(job.entity_key),
                                       "prediction": pa.array(prediction.astype(str)),
                                       "score": pa.array(score_, pa.float64()),
                                       "flags": batch.column(FLAGS).cast(pa.string())}, schema=out_schema))
                done += batch.num_rows
                rlog.info("score: %d/%d rows (%.0f rows/s)", done, total,
                          done / max(time.perf_counter() - started, 1e-9))
        spec.write_json("score", {"scored_at": ledger.now().isoformat()})
        counts["rows_scored"] = writer.rows
        if spec.shard is None:  # a sharded run checks drift over every shard in combine()
            _check_drift(job, spec, writer.rows, url)
    return counts


def _check_drift(job: JobConfig, spec: RunSpec, rows: int, url: str | None) -> None:
    """PSI of the inputs and scores against training (``drift.json``); with drift.block, stop before publishing."""
    from pipeline import drift

    rlog = run_log(spec)
    if rows < job.drift.min_rows:
        rlog.info("drift: %d scored rows, fewer than drift.min_rows (%d): not checked", rows, job.drift.min_rows)
        spec.write_json("drift", [])
        return
    card = Registry().resolve(spec.model_name, spec.model_version).card
    results = drift.compute(card, spec.parts("valid"), spec.parts("scored"), threshold=job.drift.psi_threshold,
                            batch_rows=job.source.batch_rows)
    spec.write_json("drift", results)
    bad = drift.drifted(results)
    if not bad:
        rlog.info("drift: none above PSI %g (largest: %s)", job.drift.psi_threshold,
                  drift.describe(sorted(results, key=lambda r: -r["value"])[:3]))
        return
    rlog.warning("drift above PSI %g: %s", job.drift.psi_threshold, drift.describe(bad))
    if job.drift.block:
        eng = engine(job, url)
        drift.replace(eng, job_id=job.job_id, partition_date=parse_date(spec.partition_date), run_id=spec.run_id,
                      model_name=spec.model_name, model_version=spec.model_version, results=results)
        drift.alert(job, spec.partition_date, spec.run_id, bad)  # AIRFLOW_CONN_* connections only here
        raise DriftError(
            f"partition {spec.partition_date}: inputs or scores drifted from the training data of "
            f"{spec.model_name} v{spec.model_version} above PSI {job.drift.psi_threshold:g}: {drift.describe(bad)}. "
            "drift.block is true, so nothing was published (details in table scoring_drift). If the shift is "
            "real and expected, retrain and register a new model version, or set drift.block: false to publish "
            "with a warning."
        )


def persist(job: JobConfig, spec: RunSpec, url: str | None = None) -> dict[str, Any]:
    """Replace the partition in the predictions table (and the quarantine) in one transaction."""
    with stage(job, spec, "persist", url) as counts:
        rlog = run_log(spec)
        if spec.dry_run:
            rlog.info("persist: dry run, nothing written")
            counts["rows_written"] = 0
            return counts
        eng = engine(job, url)
        key_type = staged_schema(spec.parts("scored")[0]).field(job.entity_key).type
        store.ensure_predictions(eng, job.output.table, job.entity_key,
                                 "int" if pa.types.is_integer(key_type) else "str")
        scored_at = dt.datetime.fromisoformat(spec.read_json("score")["scored_at"])
        day = parse_date(spec.partition_date)
        counts["rows_written"] = store.replace_partition(
            eng, table=job.output.table, key=job.entity_key, job_id=job.job_id, partition_date=day,
            batches=_prediction_batches(spec, job, day, scored_at),
            quarantine=_quarantine_rows(spec, job, day),
        )
    return counts


def push(job: JobConfig, spec: RunSpec, url: str | None = None,
         resolver: connections.Resolver | None = None) -> dict[str, Any]:
    """Push mode: send the scored rows (or the top candidates) to the job's sink; keep none."""
    from pipeline import push as push_mod

    with stage(job, spec, "push", url) as counts:
        rlog = run_log(spec)
        if job.output.push is None:
            raise ConfigError(f"job {job.job_id} has no output.push sink")
        day = parse_date(spec.partition_date)
        outbox = spec.staging / "outbox.parquet"  # Parquet: its row groups are the batches
        selected, not_selected = push_mod.build_outbox(
            job, spec.parts("scored"), outbox, partition_date=spec.partition_date, model_name=spec.model_name,
            model_version=spec.model_version, batch_rows=job.output.push.sink.batch_rows)
        counts["rows_not_selected"] = not_selected
        rlog.info("push: %d rows selected to send, %d not selected (%s)", selected, not_selected,
                  job.output.push.select.model_dump(exclude_none=True) or "no selection")
        if spec.dry_run:
            rlog.info("push: dry run, nothing sent")
            counts.update(rows_delivered=0, rows_dead_lettered=0, rows_failed=0)
            return counts
        eng = engine(job, url)
        store.replace_quarantine(eng, job_id=job.job_id, partition_date=day,
                                 quarantine=_quarantine_rows(spec, job, day))
        try:
            counts.update(push_mod.push_partition(
                eng, job, run_id=spec.run_id, partition_date=spec.partition_date, model_name=spec.model_name,
                model_version=spec.model_version, outbox=outbox, resend=spec.resend, resolver=resolver))
        except DeliveryError as exc:
            counts.update(getattr(exc, "counts", {}))
            raise
    return counts


def _prediction_batches(spec: RunSpec, job: JobConfig, day: dt.date, scored_at: dt.datetime) -> Iterator[pa.Table]:
    for batch in read_batches(spec.parts("scored"), job.source.batch_rows):
        n = batch.num_rows
        table = pa.Table.from_batches([batch])
        yield (
            table.append_column("partition_date", pa.repeat(pa.scalar(day, pa.date32()), n))
            .append_column("model_name", pa.repeat(pa.scalar(spec.model_name, pa.string()), n))
            .append_column("model_version", pa.repeat(pa.scalar(spec.model_version, pa.int32()), n))
            .append_column("run_id", pa.repeat(pa.scalar(spec.run_id, pa.string()), n))
            .append_column("scored_at", pa.repeat(pa.scalar(scored_at, pa.timestamp("us")), n))
        )


def _quarantine_rows(spec: RunSpec, job: JobConfig, day: dt.date) -> Iterator[list[dict[str, Any]]]:
    now = ledger.now()
    for batch in read_batches(spec.parts("quarantine"), job.source.batch_rows):
        rows = batch.to_pylist()
        if not rows:
            continue
        yield [
            {"job_id": job.job_id, "partition_date": day, "run_id": spec.run_id,
             "entity_key": None if row[job.entity_key] is None else str(row[job.entity_key]),
             "reasons": row["reasons"],
             "row_values": json.dumps(_original_values({k: v for k, v in row.items() if k != "reasons"}),
                                      default=str),
             "quarantined_at": now}
            for row in rows
        ]


def finalize(job: JobConfig, spec: RunSpec, url: str | None = None, keep_staging: bool = False) -> dict[str, Any]:
    """Check the reconciliation, mark the attempt successful, clean the staging area."""
    eng = engine(job, url)
    with stage(job, spec, "finalize", url):
        row = ledger.get(eng, spec.job_id, spec.run_id, spec.attempt)
        rows_in, scored, quarantined = row["rows_in"], row["rows_scored"], row["rows_quarantined"]
        problems = []
        if rows_in != scored + quarantined:
            problems.append(f"rows_in {rows_in} != rows_scored {scored} + rows_quarantined {quarantined}")
        if spec.mode == "push" and not spec.dry_run:
            sent = {k: row[k] or 0 for k in ("rows_delivered", "rows_dead_lettered", "rows_not_selected")}
            if scored != sum(sent.values()) or sent["rows_dead_lettered"]:
                problems.append(
                    f"rows_in {rows_in} != rows_delivered {sent['rows_delivered']} + rows_dead_lettered "
                    f"{sent['rows_dead_lettered']} + rows_not_selected {sent['rows_not_selected']} + "
                    f"rows_quarantined {quarantined}")
        elif not spec.dry_run:
            in_table = store.count_partition(eng, job.output.table, parse_date(spec.partition_date))
            if row["rows_written"] != scored or in_table != scored:
                problems.append(f"rows_scored {scored}, rows_written {row['rows_written']}, "
                                f"rows in {job.output.table} for the partition {in_table}")
        if problems:
            raise ReconciliationError(
                f"partition {spec.partition_date}: the run does not reconcile: {'; '.join(problems)}. "
                f"Staging kept in {spec.staging_dir} for inspection; re-run the partition."
            )
        drifted = _record_drift(job, spec, eng)
    finished = ledger.now()
    ledger.update(eng, spec.job_id, spec.run_id, spec.attempt, status="success", finished_at=finished,
                  duration_s=(finished - dt.datetime.fromisoformat(str(row["started_at"]))).total_seconds())
    if not keep_staging:
        spec.cleanup()
    summary = ledger.get(eng, spec.job_id, spec.run_id, spec.attempt)
    summary["drifted_features"] = drifted
    fields = ("status", "mode", "drifted_features", *ledger.COUNT_FIELDS, *(ledger.PUSH_COUNT_FIELDS if spec.mode == "push" else ()))
    run_log(spec).info("finalized: %s", {k: summary[k] for k in fields})
    return summary


def _record_drift(job: JobConfig, spec: RunSpec, eng: Any) -> list[str]:
    """Write the run's drift results (computed at score) to ``scoring_drift``; return the drifted names."""
    from pipeline import drift

    path = spec.staging / "drift.json"
    results = spec.read_json("drift") if path.exists() else []
    if not spec.dry_run:
        drift.replace(eng, job_id=job.job_id, partition_date=parse_date(spec.partition_date), run_id=spec.run_id,
                      model_name=spec.model_name, model_version=spec.model_version, results=results)
    return [r["feature"] for r in drift.drifted(results)]


def drift_alert(job: JobConfig, partition_date: dt.date | str, run_id: str, url: str | None = None,
                resolver: connections.Resolver | None = None) -> str | None:
    """Alert (ERROR log, optional webhook) if the run's partition drifted; the DAG's finalize callback."""
    from pipeline import drift

    rows = drift.drifted_rows(engine(job, url), job.job_id, parse_date(partition_date), run_id)
    return drift.alert(job, partition_date, run_id, rows, resolver)


# -- sharded runs ------------------------------------------------------------------------
def shard_files(files: list[Path], shards: int, shard: int) -> list[Path]:
    """A shard's share of a partition's files (round robin over the sorted files)."""
    return files[shard::shards]


def plan_shards(job: JobConfig, spec: RunSpec) -> tuple[RunSpec, list[RunSpec]]:
    """Split a partition into shards by file; find duplicate keys across all of them first.

    Returns the run's root spec (with the number of shards actually used: never more than
    files) and one spec per shard. The duplicate keys go to ``keys.json`` in the staging area,
    so each shard's validation sees duplicates that span shards.
    """
    from dataclasses import replace

    from pipeline.ingest import partition_keys

    day = parse_date(spec.partition_date)
    files = partition_files(job.source_root(), job.source.layout, job.source.format, day)
    shards = max(1, min(job.source.shards, len(files)))
    root = replace(spec, shards=shards, shard=None)
    duplicates = partition_keys(files, job.source.format, job.entity_key)
    root.root.mkdir(parents=True, exist_ok=True)
    root.write_json("keys", {"duplicate_keys": duplicates, "files": [str(f) for f in files]})
    run_log(root).info("planned %d shard(s) over %d file(s); %d duplicate key(s) across the partition", shards,
                       len(files), len(duplicates))
    return root, [root.for_shard(i) for i in range(shards)]


def score_shard(job: JobConfig, spec: RunSpec, url: str | None = None) -> dict[str, Any]:
    """One shard, start to scores: ingest, validate, preprocess, score (its own staging folder)."""
    for step in (ingest, validate, preprocess, score):
        step(job, spec, url)
    return spec.read_json("shard")["counts"]


def combine(job: JobConfig, spec: RunSpec, url: str | None = None) -> dict[str, Any]:
    """After every shard: add up their counts in the ledger, apply the threshold and drift to the partition."""
    with stage(job, spec, "combine", url) as counts:
        states = [spec.for_shard(i).read_json("shard") for i in range(spec.shards)]
        for field in ("rows_in", "rows_valid", "rows_quarantined", "rows_scored"):
            counts[field] = sum(int(st["counts"].get(field, 0)) for st in states)
        eng = engine(job, url)
        for name in ("ingest", "validate", "preprocess", "score"):  # wall time of the slowest shard
            ledger.update(eng, spec.job_id, spec.run_id, spec.attempt, stage=name,
                          seconds=max(st["seconds"].get(name, 0.0) for st in states))
        if counts["rows_in"] == 0 and job.validation.on_empty == "fail":
            raise InputError(
                f"partition {spec.partition_date}: the files in {partition_path(job, parse_date(spec.partition_date))} "
                "hold no rows. Nothing was published. If the upstream export is incomplete, re-export it and "
                "re-run the partition; if an empty day is normal, set validation.on_empty: succeed."
            )
        unexpected: dict[str, int] = {}
        stem = reports_dir() / job.job_id / spec.partition_date / safe_name(spec.run_id)
        for i in range(spec.shards):
            shard_report = stem.with_name(f"{stem.name}.shard-{i:03d}.json")
            for code, n in json.loads(shard_report.read_text())["unexpected_counts"].items():
                unexpected[code] = unexpected.get(code, 0) + n
        check_threshold(job, spec, counts["rows_in"], counts["rows_quarantined"], unexpected,
                        f"{stem}.shard-*.html")
        scored_at = max(st_spec.read_json("score")["scored_at"] for st_spec in
                        (spec.for_shard(i) for i in range(spec.shards)))
        spec.write_json("score", {"scored_at": scored_at})
        _check_drift(job, spec, counts["rows_scored"], url)
    return counts


def run_partition(
    job: JobConfig,
    partition_date: dt.date | str,
    *,
    run_id: str | None = None,
    model_ref: str | None = None,
    dry_run: bool = False,
    url: str | None = None,
    mode: str | None = None,
    resend: bool = False,
    resolver: connections.Resolver | None = None,
) -> dict[str, Any]:
    """Every stage in order, without Airflow (``scoring run``)."""
    day = parse_date(partition_date)
    output_mode(job, mode)
    partition_files(job.source_root(), job.source.layout, job.source.format, day)  # fail before the ledger
    run_id = run_id or f"cli__{day.isoformat()}__{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}"
    spec = start(job, run_id=run_id, partition_date=day, model_ref=model_ref, dry_run=dry_run, url=url,
                 mode=mode, resend=resend)
    if job.source.shards > 1:
        spec, shards = plan_shards(job, spec)
        for shard in shards:  # one after the other here; the DAG maps them onto workers
            score_shard(job, shard, url)
        combine(job, spec, url)
    else:
        for step in (ingest, validate, preprocess, score):
            step(job, spec, url)
    if spec.mode == "push":
        push(job, spec, url, resolver)
    else:
        persist(job, spec, url)
    summary = finalize(job, spec, url)
    if summary["drifted_features"]:
        drift_alert(job, day, run_id, url, resolver)
    return summary


def redrive(job: JobConfig, partition_date: dt.date | str, url: str | None = None,
            resolver: connections.Resolver | None = None) -> dict[str, Any]:
    """Send a partition's dead-lettered batches again (``scoring redrive``)."""
    from pipeline import push as push_mod

    eng = engine(job, url)
    store.ensure_ledger(eng)
    return push_mod.redrive(eng, job, parse_date(partition_date), resolver=resolver)
