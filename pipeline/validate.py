"""Validate: the stage around the validation kernel (``pipeline.kernels.validate``).

It reads the staged ``ingested`` rows batch by batch, has the kernel split them into ``valid`` rows
(with their flags) and ``quarantine`` rows (with their reasons), writes both, the report (JSON and
HTML) and applies the job's quarantine threshold.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import settings, steps
from pipeline.context import Progress, counted
from pipeline.errors import ValidationFailedError
from pipeline.kernels.conform import original_values
from pipeline.kernels.validate import (
    RowValidator,
    quarantine_schema,
    split_rows,
    suite,
    valid_schema,
)
from pipeline.report import validation_html
from pipeline.settings import safe_name
from pipeline.staging import RunSpec, StagedWriter, read_batches, staged_rows, staged_schema

if TYPE_CHECKING:
    import pyarrow as pa

    from pipeline.context import RunContext

log = logging.getLogger(__name__)


# -- the stage ---------------------------------------------------------------------------
def suite_for(ctx: RunContext, schema: pa.Schema, duplicate_keys: list[Any]) -> list[dict[str, Any]]:
    """The run's checks: the card's contract, duplicate keys, then the job file's own expectations."""
    job = ctx.job
    return suite(ctx.card["inputs"], job.entity_key, schema, duplicate_keys=duplicate_keys,
                 configured=job.validation.expectations, unknown_categories=job.validation.unknown_categories,
                 job_id=job.job_id)


def duplicate_keys_of(ctx: RunContext) -> list[Any]:
    """Keys seen more than once in the partition: from the shard plan, else from ingest."""
    spec = ctx.spec
    if spec.reads_plan:
        return list(spec.read_json(steps.PLAN_STATE, run_level=True)["duplicate_keys"])
    return list(spec.read_json(steps.INGEST_STATE)["duplicate_keys"])



def validate_file(ctx: RunContext, counts: dict[str, Any] | None = None) -> dict[str, Any]:
    """The validate stage: ``ingested`` -> ``valid`` + ``quarantine``, a report, then the threshold."""
    source = ctx.path(steps.INGESTED)
    schema = staged_schema(source)
    validator = RowValidator(suite_for(ctx, schema, duplicate_keys_of(ctx)), ctx.job.job_id)
    total = staged_rows(source)
    progress = Progress(ctx.log, "validate", total)
    flagged = 0
    with StagedWriter(ctx.path(steps.VALID), valid_schema(schema)) as good, \
            StagedWriter(ctx.path(steps.QUARANTINE), quarantine_schema(schema)) as bad:
        for split in split_rows(validator, _progressed(read_batches(source, ctx.batch_rows), progress), ctx.batch_rows):
            good.write(split.valid)
            if split.quarantined is not None:
                bad.write(split.quarantined)
            flagged += split.flagged
    counts = counted(counts, rows_valid=good.rows, rows_quarantined=bad.rows)
    summary = validator.report()
    report_path = write_report(ctx, summary, rows_in=total, rows_valid=good.rows, rows_quarantined=bad.rows,
                               rows_flagged=flagged)
    # a sharded run applies the threshold to the whole partition in combine, a cascade after its routes
    if ctx.spec.sees_partition:
        check_threshold(ctx, total, bad.rows, summary["unexpected_counts"], report_path, counts)
    return counts


def _progressed(batches: Iterable[pa.RecordBatch], progress: Progress) -> Iterator[pa.RecordBatch]:
    """The batches, each counted in the progress log once the rows before it are written."""
    for batch in batches:
        yield batch
        progress.add(batch.num_rows)


def report_stem(spec: RunSpec) -> Path:
    """Where a task's report goes, without the suffix: the run's, a shard's or a cascade route's."""
    return settings.reports_dir() / spec.job_id / spec.partition_date / (safe_name(spec.run_id) + spec.report_suffix)


def write_report(ctx: RunContext, summary: dict[str, Any], **counts: int) -> Path:
    """The validation report as JSON and HTML (counts: rows_in, rows_valid, ...); returns the HTML's path."""
    spec = ctx.spec
    report = {**summary, "job_id": spec.job_id, "partition": spec.partition_date, "run_id": spec.run_id,
              **counts, "max_quarantine_share": ctx.job.validation.max_quarantine_share,
              "on_breach": {"validation": ctx.job.validation.on_breach, "drift": ctx.job.drift.on_breach},
              "drift_settings": {"psi_threshold": ctx.job.drift.psi_threshold, "alpha": ctx.job.drift.alpha,
                                 "min_rows": ctx.job.drift.min_rows},
              "model": f"{spec.model_name} v{spec.model_version}",
              "quarantine_sample": sample(ctx.path(steps.QUARANTINE), 20)}
    html = _save_report(report_stem(spec), report)
    ctx.log.info("validation report: %s (JSON beside it)", html)
    return html


def _save_report(stem: Path, report: dict[str, Any]) -> Path:
    """A report as ``<stem>.json`` and ``<stem>.html``; returns the HTML's path."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    # JSON escapes a NUL or a byte that was not UTF-8 (\u0000, \udcff); the page shows them escaped
    stem.with_name(stem.name + ".json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    html = stem.with_name(stem.name + ".html")
    html.write_text(validation_html(report), encoding="utf-8")
    return html


def check_threshold(ctx: RunContext, total: int, quarantined: int, unexpected: dict[str, int],
                    report_path: Path | str, counts: dict[str, Any] | None = None) -> None:
    """A quarantined share above the job's threshold is a breach: with validation.on_breach ``block`` fail
    (publishing nothing); ``flag`` / ``ignore`` go on (the quality gate marks a flagged one)."""
    limit, policy = ctx.job.validation.max_quarantine_share, ctx.job.validation.on_breach
    share = quarantined / total if total else 0.0
    if share <= limit:
        return
    top = ", ".join(f"{k} ({v})" for k, v in sorted(unexpected.items(), key=lambda kv: -kv[1])[:5])
    if policy != "block":
        ctx.log.warning("quarantine breach: %d of %d rows (%.1f%%) quarantined, above max_quarantine_share %.1f%%; "
                        "validation.on_breach is %s, so the valid rows go on to be published%s. Most frequent "
                        "failures: %s. Report: %s", quarantined, total, share * 100, limit * 100, policy,
                        " and the partition is flagged" if policy == "flag" else "", top, report_path)
        return
    raise ValidationFailedError(
        f"partition {ctx.spec.partition_date}: {quarantined} of {total} rows ({share:.1%}) failed "
        f"validation, above the job's max_quarantine_share of {limit:.1%}. Nothing was published. Most "
        f"frequent failures: {top}. Report: {report_path}. Fix the input upstream, or raise "
        "validation.max_quarantine_share (or set validation.on_breach: flag) in the job file if this is expected.",
        counts=counts,
    )



def sample(path: Path, n: int) -> list[dict[str, Any]]:
    """The first ``n`` rows of a staged file as they arrived (across its record batches), for reports."""
    rows: list[dict[str, Any]] = []
    for batch in read_batches(path, n):
        rows.extend(original_values(r) for r in batch.slice(0, n - len(rows)).to_pylist())
        if len(rows) >= n:
            break
    return rows


def finish_report(ctx: RunContext, row: dict[str, Any]) -> Path | None:
    """After the run: the report completed with the scored count, drift and (push) the delivery outcome.

    (A sharded run's partition report is the one combine merged from its shards.)
    """
    spec = ctx.spec
    stem = report_stem(spec)
    json_path = stem.with_name(stem.name + ".json")
    if not json_path.exists():
        return None
    report = json.loads(json_path.read_text())
    report["rows_scored"] = row["rows_scored"]
    report["drift"] = spec.read_json(steps.DRIFT_STATE, default=[])
    if spec.mode == "push":
        report["delivery"] = {k: row.get(k) for k in ("sink", "rows_delivered", "rows_dead_lettered",
                                                      "rows_not_selected", "rows_failed")}
    html = _save_report(stem, report)
    ctx.log.info("run report: %s", html)
    return html


def merge_shard_reports(ctx: RunContext) -> Path:
    """A sharded run's partition report (``<run>.html`` and JSON) from its shards' reports; its HTML path.

    Written by combine, before the partition-wide threshold, so a run that fails there has its report.
    """
    html = _save_report(report_stem(ctx.spec), _merged_shards(ctx.spec))
    ctx.log.info("validation report of the partition (%d shards): %s", ctx.spec.shards, html)
    return html


def _merged_shards(spec: RunSpec) -> dict[str, Any]:
    """One partition report from its shards' reports: counts and failures added up, samples joined."""
    parts = []
    for one in spec.shard_specs():
        stem = report_stem(one)
        parts.append(json.loads(stem.with_name(stem.name + ".json").read_text()))
    merged = {**parts[0], "run_id": spec.run_id}
    for key in ("rows_in", "rows_valid", "rows_quarantined", "rows_flagged", "rows_evaluated"):
        merged[key] = sum(int(p.get(key) or 0) for p in parts)
    merged["unexpected_counts"] = {}
    for part in parts:
        for code, n in part["unexpected_counts"].items():
            merged["unexpected_counts"][code] = merged["unexpected_counts"].get(code, 0) + n
    checks: dict[str, dict[str, Any]] = {}
    for part in parts:  # a shard whose files held no bad text has no invalid_utf8 check: the union, in order
        for c in part["checks"]:
            checks.setdefault(c["reason"], {**c, "unexpected": 0, "sample": []})
    for part in parts:
        for c in part["checks"]:
            checks[c["reason"]]["unexpected"] += c["unexpected"]
            checks[c["reason"]]["sample"] = (checks[c["reason"]]["sample"] + c["sample"])[:5]
    merged["checks"] = list(checks.values())
    merged["quarantine_sample"] = [row for p in parts for row in p.get("quarantine_sample") or []][:20]
    return merged
