"""The kernels on a partition's rows in memory give exactly what the staged run stored (issue 26, point 1):
predictions (key, score, prediction, flags, route lineage), quarantine reasons per key, the ledger's counts and
the drift table, for a plain, a sharded and a cascade job, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from pipeline import local, run
from pipeline.config import JobConfig, load_job
from pipeline.kernels.flow import DriftSettings, Model, Scored, score_cascade, score_rows
from pipeline.kernels.route import DEFAULT, child_schema
from pipeline.kernels.validate import suite
from pipeline.keys import duplicates
from pipeline.registry import Registry
from pipeline.score import load_scorer
from pipeline.staging import read_batches, staged_schema
from pipeline.store import engines
from tests.conftest import DAY, write_job, write_partition

FLAG_AGE = {"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "min_value": 20,
                                                                     "max_value": 80}, "on_fail": "flag"}
# a check the Arrow screen does not know: GX decides it on whole batches
SHORT_CONTRACT = {"type": "expect_column_values_to_match_regex",
                  "kwargs": {"column": "contract_type", "regex": "^(?:one|two)-year$"}, "on_fail": "flag"}
MANY_TICKETS = {"type": "expect_column_values_to_be_between",
                "kwargs": {"column": "support_tickets_90d", "max_value": 6}, "on_fail": "quarantine"}
CASCADES = {
    "default_model_and_gate": {"routes": {"frequent": {"name": "churn_frequent"}},
                               "default": {"name": "churn_occasional"}, "gate": 0.999},
    "unrouted_quarantined": {"routes": {"frequent": {"name": "churn_frequent"}}, "default": "quarantine"},
}


def _kept_staging(monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """The run's staging area, kept after finalize (the staged ``ingested`` rows are the kernels' input)."""
    kept: dict[str, Path] = {}
    finalize = run.finalize

    def keeping(ctx: Any, keep_staging: bool = False) -> dict[str, Any]:
        kept["dir"] = ctx.spec.run_dir
        return finalize(ctx, keep_staging=True)

    monkeypatch.setattr(run, "finalize", keeping)
    return kept


def _ingested(run_dir: Path) -> list[Path]:
    """The run's ingested rows: the run's file, or one per shard (never a cascade route's)."""
    return [p for p in [run_dir / "ingested.arrow", *sorted(run_dir.glob("shard-*/ingested.arrow"))] if p.exists()]


def _model(job: JobConfig, name: str, version: int, schema: pa.Schema, duplicate_keys: list[Any]) -> Model:
    scorer = load_scorer(Registry(), name, version)
    card = scorer.version.card
    checks = suite(card["inputs"], job.entity_key, schema, duplicate_keys=duplicate_keys,
                   configured=job.validation.expectations, unknown_categories=job.validation.unknown_categories,
                   job_id=job.job_id)
    return Model(card, scorer, checks)


def _in_memory(job: JobConfig, row: dict[str, Any], paths: list[Path], cascade: dict[str, Any] | None) -> Scored:
    """The partition's ingested rows through the kernels, in memory, in batches of another size than the run's."""
    schema = staged_schema(paths[0])
    keys = [pa.chunked_array([b.column(job.entity_key) for b in read_batches(paths, 10_000, [job.entity_key])])]
    dupes = duplicates(keys)
    batches = read_batches(paths, 257)
    drift = DriftSettings(job.drift.psi_threshold, job.drift.alpha, job.drift.min_rows)
    router = _model(job, row["model_name"], row["model_version"], schema, dupes)
    if cascade is None:
        return score_rows(batches, router, key=job.entity_key, schema=schema, batch_rows=300, drift=drift)
    plan = _pinned(cascade)
    routes = {name: _model(job, m["name"], m["version"], child_schema(schema), []) for name, m in
              {**plan["routes"], **({DEFAULT: plan["default"]} if isinstance(plan["default"], dict) else {})}.items()}
    return score_cascade(batches, router, routes, plan, key=job.entity_key, schema=schema, batch_rows=300,
                         drift=drift)


def _pinned(cascade: dict[str, Any]) -> dict[str, Any]:
    def one(ref: dict[str, Any]) -> dict[str, Any]:
        mv = Registry().resolve(ref["name"], "champion")
        return {"name": mv.name, "version": mv.version}

    default = cascade.get("default", "quarantine")
    return {"routes": {k: one(v) for k, v in cascade["routes"].items()},
            "default": default if isinstance(default, str) else one(default), "gate": cascade.get("gate")}


def _stored(job: JobConfig, lineage: bool) -> dict[Any, tuple]:
    cols = "customer_id, prediction, score, flags" + (", route, model_name, model_version, router_model, "
                                                      "router_version" if lineage else "")
    with engines.for_connection("scoring_db").connect() as conn:
        rows = conn.execute(sa.text(f"SELECT {cols} FROM {job.output.table} WHERE partition_date = :d"), {"d": DAY})
        return {r[0]: tuple(r[1:]) for r in rows}


def _computed(result: Scored, lineage: bool) -> dict[Any, tuple]:
    names = ["prediction", "score", "flags"] + (["route", "model_name", "model_version", "router_model",
                                                 "router_version"] if lineage else [])
    table = result.predictions
    columns = [table.column(n).to_pylist() for n in names]
    return {k: tuple(c[i] for c in columns) for i, k in enumerate(table.column("customer_id").to_pylist())}


def _stored_quarantine(job: JobConfig) -> list[tuple[str, str]]:
    """The quarantined keys with their reasons (a duplicated key once per row that has it)."""
    with engines.for_connection("scoring_db").connect() as conn:
        rows = conn.execute(sa.text("SELECT entity_key, reasons FROM scoring_quarantine WHERE job_id = :j AND "
                                    "partition_date = :d"), {"j": job.job_id, "d": DAY})
        return sorted((str(k), r) for k, r in rows)


def _stored_drift(job: JobConfig) -> list[tuple]:
    with engines.for_connection("scoring_db").connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT model_name, model_version, feature, kind, value, threshold, row_count, p_value, drifted FROM "
            "scoring_drift WHERE job_id = :j AND partition_date = :d"), {"j": job.job_id, "d": DAY})
        return sorted((*r[:8], bool(r[8])) for r in rows)


def _drift(result: Scored, row: dict[str, Any]) -> list[tuple]:
    return sorted((r.get("model_name", row["model_name"]), r.get("model_version", row["model_version"]),
                   r["feature"], r["kind"], r["value"], r["threshold"], r["row_count"], r["p_value"],
                   bool(r["drifted"])) for r in result.drift)


def _assert_equal(job: JobConfig, row: dict[str, Any], result: Scored, lineage: bool) -> None:
    stored = _stored(job, lineage)
    computed = _computed(result, lineage)
    assert len(computed) == result.predictions.num_rows, "one scored row per key"
    assert stored == computed
    quarantined = result.quarantine
    reasons = sorted(zip((str(k) for k in quarantined.column("customer_id").to_pylist()),
                         quarantined.column("reasons").to_pylist(), strict=True))
    assert _stored_quarantine(job) == reasons
    counts = {k: row[k] for k in ("rows_in", "rows_valid", "rows_quarantined", "rows_scored")}
    assert counts == {k: result.counts[k] for k in counts}
    assert _stored_drift(job) == _drift(result, row)


def _check(job: JobConfig, monkeypatch: pytest.MonkeyPatch, cascade: dict[str, Any] | None = None) -> Scored:
    kept = _kept_staging(monkeypatch)
    row = local.run_partition(job, DAY, run_id=f"k-{job.job_id}")
    assert row["status"] == "success"
    paths = _ingested(kept["dir"])
    assert len(paths) == job.source.shards, "one file of ingested rows per shard"
    result = _in_memory(job, row, paths, cascade)
    _assert_equal(job, row, result, lineage=cascade is not None)
    assert result.counts["rows_quarantined"] > 0 and result.counts["rows_scored"] > 100
    return result


def _with_duplicate_across_files(home: Path) -> None:
    folder = write_partition(home, n=2500, files=5, shift=0.3)
    files = sorted(folder.glob("*.parquet"))
    first, second = pq.read_table(files[0]), pq.read_table(files[1])
    ids = second["customer_id"].to_pylist()
    ids[7] = first["customer_id"][3].as_py()  # the same customer in file 0 and file 1
    pq.write_table(second.set_column(0, "customer_id", pa.array(ids, pa.int64())), files[1])


@pytest.mark.parametrize("any_db", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize("shards", [1, 3])
def test_kernels_in_memory_equal_the_staged_run(any_db: str, home: Path, shards: int,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _with_duplicate_across_files(home)
    job = load_job(write_job(home, job_id=f"kernels_{shards}", source={
        "path": str(home / "data" / "churn"), "batch_rows": 300, "shards": shards},
        validation={"max_quarantine_share": 0.2, "expectations": [FLAG_AGE, SHORT_CONTRACT, MANY_TICKETS]}))
    result = _check(job, monkeypatch)
    reasons = result.quarantine.column("reasons").to_pylist()
    assert any("duplicate_key:customer_id" in r for r in reasons)
    assert any(f is not None for f in result.predictions.column("flags").to_pylist())
    assert result.drift, "the churn card has training statistics"


@pytest.mark.parametrize("any_db", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize(("shape", "shards"), [("default_model_and_gate", 1), ("unrouted_quarantined", 1),
                                               ("default_model_and_gate", 3)])
def test_cascade_kernels_in_memory_equal_the_staged_run(any_db: str, cascade_home: Path, shape: str, shards: int,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    write_partition(cascade_home, n=1500, files=shards)
    cascade = CASCADES[shape]
    job = load_job(write_job(cascade_home, job_id=f"kcascade_{shape}", model={"name": "segments"}, cascade=cascade,
                             source={"path": str(cascade_home / "data" / "churn"), "batch_rows": 300,
                                     "shards": shards},
                             output={"table": f"kcascade_{shape}_predictions", "connection": "scoring_db"},
                             validation={"max_quarantine_share": 0.9, "expectations": [MANY_TICKETS]}))
    result = _check(job, monkeypatch, cascade)
    routes = result.counts["routes"]
    assert sum(r["rows"] for r in routes["routes"].values()) > 0
    if shape == "unrouted_quarantined":
        assert routes["unrouted"] > 0
    else:
        assert routes["kept"] > 0 and routes["routes"][DEFAULT]["scored"] > 0, routes


def test_a_rows_fate_does_not_depend_on_its_batches(home: Path) -> None:
    """The same rows in batches of 37, 150 and all at once: the same scores, flags and reasons."""
    write_partition(home, n=400)
    job = load_job(write_job(home, validation={"max_quarantine_share": 0.5,
                                               "expectations": [FLAG_AGE, SHORT_CONTRACT, MANY_TICKETS]}))
    results = []
    run_dir = _run_and_keep(job)
    paths = _ingested(run_dir)
    schema = staged_schema(paths[0])
    model = _model(job, "churn", 1, schema, [])
    for size in (37, 150, 100_000):
        r = score_rows(read_batches(paths, size), model, key=job.entity_key, schema=schema, batch_rows=size)
        results.append((_computed(r, False), sorted(zip(r.quarantine.column("customer_id").to_pylist(),
                                                        r.quarantine.column("reasons").to_pylist(), strict=True)),
                        sorted(map(repr, r.drift))))
    assert results[0] == results[1] == results[2]
    scored, quarantined, drift = results[0]
    assert quarantined and drift and any(flags for _, _, flags in scored.values())


def _run_and_keep(job: JobConfig) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        kept = _kept_staging(mp)
        local.run_partition(job, DAY, run_id="batches")
    return kept["dir"]

