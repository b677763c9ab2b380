"""Cascade inference: a first model (the router) sorts rows into routes; each route's model scores them.

A job with a ``cascade`` section runs the usual steps with its ``model`` as the router: ingest
reads the columns every model of the cascade needs (``ingest_inputs``), validation checks the
router's contract, preprocess and score run the router. Then, still in the score step, its parts
(``pipeline.score_step`` composes them, each with its bookkeeping: ``pipeline.steps``):

1. ``split`` (step ``route``) splits the router-valid rows by the router's prediction: each route
   (or the ``default`` model) gets its rows, with the router's ``router_prediction`` and
   ``router_score`` as columns a second-stage model may take as inputs; with a ``gate``, rows whose
   router score is below it keep the router's result; rows with no route are quarantined
   (``no_route:<value>``) or keep the router's result (``default: keep``);
2. each route with rows runs the steps of ``steps.ROUTE_STEPS`` with its own model, on its context
   (``route_contexts``: ``RunSpec.for_route``, a folder ``route-<value>/`` of the task's staging):
   the route model's contract validates the rows that reach it (its report beside the run's,
   ``<run>.route-<value>.html``), ``join_router_flags`` adds the router's flags to its own, its
   preprocessing and verified artifact score them, and drift is computed on the rows it saw;
3. ``merge`` (step ``merge_routes``) writes the run's ``scored`` rows with their lineage (``route``,
   ``model_name`` and ``model_version`` of the model that made the prediction, ``router_model``,
   ``router_version``) and its ``quarantine`` rows, each reason prefixed with the model that rejected
   the row (``<model>@v<N>:<reason>``), then applies the job's quarantine threshold to the partition.

The ledger's ``routes`` column holds the per-route counts, and finalize checks that
``rows_in = router quarantine + unrouted + sum over routes of (scored + quarantined) + kept``.
Every model's version is pinned when the run starts (``pin``). Two stages: a route model does
not route again. A sharded run routes in every shard, and ``combine`` adds the routes' counts
up and computes every model's drift over the partition. Cascades with challengers are refused
by the job check.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pipeline import drift, steps, validate
from pipeline.context import RunContext, counted
from pipeline.errors import StagingError
from pipeline.kernels.route import (
    ROUTER_FLAGS,
    Router,
    count_reasons,
    final_schema,
    merge_router_flags,
    prefixed,
    route_name,
    with_lineage,
)
from pipeline.ledger import as_json
from pipeline.resolve import Models
from pipeline.staging import StagedWriter, read_batches, staged_rows, staged_schema

if TYPE_CHECKING:
    from pipeline.config import JobConfig

ROUTER_SCORED = "router-scored"  # the router's own scores, once the run's scored rows are the routes'
KEPT = "cascade-kept"  # the rows whose router result stands (gate, default: keep), with their lineage
UNROUTED = "cascade-unrouted"  # the rows with no route (default: quarantine), with their reasons


def pin(job: JobConfig, models: Models) -> dict[str, Any]:
    """Every route model resolved to a version now (``models``: the run's resolver), for the whole run (a
    reference that does not resolve fails the run at start, like the router's)."""
    cfg = job.cascade
    assert cfg is not None

    def one(ref: Any) -> dict[str, Any]:
        mv = models.resolve(ref.name, ref.ref)
        return {"name": mv.name, "version": mv.version}

    default = cfg.default if isinstance(cfg.default, str) else one(cfg.default)
    return {"routes": {value: one(ref) for value, ref in cfg.routes.items()}, "default": default, "gate": cfg.gate}


def _aligned(valid: Iterator[pa.RecordBatch], scored: Iterator[pa.RecordBatch]
             ) -> Iterator[tuple[pa.RecordBatch, pa.RecordBatch]]:
    """The valid rows and the router's scores of them, in equal slices (the files hold the same rows in order)."""
    a = b = None
    while True:
        if a is None or a.num_rows == 0:
            a = next(valid, None)
        if b is None or b.num_rows == 0:
            b = next(scored, None)
        if a is None or b is None:
            if (a is None) != (b is None) and (a or b).num_rows:
                raise StagingError("cascade: the router's scores and the valid rows differ in length; "
                                   "clear the run from its first task")
            return
        n = min(a.num_rows, b.num_rows)
        if n:
            yield a.slice(0, n), b.slice(0, n)
        a, b = a.slice(n), b.slice(n)


def route_context(ctx: RunContext, name: str) -> RunContext:
    """The context of one route of a router's task: the route's model over its rows, in ``route-<name>/``."""
    spec = ctx.spec.for_route(name, ctx.spec.route_models[name])
    return RunContext(ctx.job, spec, None, ctx.engine, ctx.resolver, models=ctx.models)


def route_contexts(ctx: RunContext) -> list[RunContext]:
    """The contexts of the routes the router sent rows to (``split`` has run): each runs ``steps.ROUTE_STEPS``."""
    children = [route_context(ctx, name) for name in ctx.spec.route_models]
    return [child for child in children if staged_rows(child.path(steps.INGESTED))]


def split(ctx: RunContext, counts: dict[str, Any] | None = None) -> dict[str, Any]:
    """Step ``route``: the router-valid rows into each route's ``ingested``, the kept and the unrouted rows."""
    spec, key = ctx.spec, ctx.job.entity_key
    router = Router(spec.cascade or {}, _router(ctx), ctx.card, key, staged_schema(ctx.path(steps.INGESTED)))
    with ExitStack() as stack:
        routes = {name: stack.enter_context(_route_writer(ctx, name, router.child_schema)) for name in router.models}
        kept = stack.enter_context(StagedWriter(ctx.path(KEPT), router.final_schema))
        unrouted = stack.enter_context(StagedWriter(ctx.path(UNROUTED), router.unrouted_schema))
        for valid, scored in _aligned(iter(read_batches(ctx.path(steps.VALID), ctx.batch_rows)),
                                      iter(read_batches(ctx.path(steps.SCORED), ctx.batch_rows))):
            if not valid.column(key).equals(scored.column(key)):
                raise StagingError("cascade: the router's scores are not in the order of the valid rows; clear the "
                                   "run from its first task")
            rows = router.split(valid, scored)
            for name, table in rows.routed.items():
                routes[name].write(table)
            for writer, table in ((kept, rows.kept), (unrouted, rows.unrouted)):
                if table is not None:
                    writer.write(table)
    return counted(counts, kept=kept.rows, unrouted=unrouted.rows, routed={n: w.rows for n, w in routes.items()})


def _router(ctx: RunContext) -> dict[str, Any]:
    return {"model": ctx.spec.model_name, "version": ctx.spec.model_version}


def merge(ctx: RunContext, counts: dict[str, Any] | None = None) -> dict[str, Any]:
    """Step ``merge_routes``: the routes' rows into the run's ``scored`` and ``quarantine`` with their lineage
    (counted for the score step), then, for a task that holds the partition, drift and the threshold."""
    spec = ctx.spec
    models = spec.route_models
    routes = {name: spec.for_route(name, model) for name, model in models.items()}
    summary: dict[str, Any] = {"router": f"{spec.model_name} v{spec.model_version}",
                               "router_quarantined": staged_rows(ctx.path(steps.QUARANTINE)),
                               "kept": staged_rows(ctx.path(KEPT)), "unrouted": staged_rows(ctx.path(UNROUTED)),
                               "routes": {name: _route_counts(ctx, one, models[name]) for name, one in routes.items()}}
    router, key = _router(ctx), ctx.job.entity_key
    ingested = staged_schema(ctx.path(steps.INGESTED))
    ctx.path(steps.SCORED).replace(ctx.path(ROUTER_SCORED))  # kept for a sharded run's partition-wide drift
    scored = _write_scored(ctx, routes, models, final_schema(key, ingested.field(key).type), router)
    quarantined = _write_quarantine(ctx, routes, models, ingested, router)
    counts = counted(counts, rows_scored=scored, rows_valid=scored, rows_quarantined=quarantined,
                     routes=json.dumps(summary, sort_keys=True))
    rows_in = staged_rows(ctx.path(steps.INGESTED))
    if rows_in != scored + quarantined:
        raise StagingError(f"cascade: {rows_in} rows in but {scored} scored + {quarantined} quarantined after the "
                           f"routes ({json.dumps(summary)}); staging kept in {spec.staging_dir}. Re-run the partition.")
    if not spec.sees_partition:  # combine applies drift and the threshold to the whole partition
        return counts
    _write_drift(ctx, routes, models)
    report = validate.report_stem(spec)
    validate.check_threshold(ctx, rows_in, quarantined, _reason_counts(ctx), report.with_name(report.name + ".html"),
                             counts)
    return counts


def _route_counts(ctx: RunContext, route: Any, model: dict[str, Any]) -> dict[str, Any]:
    """One route's counts for the ledger's ``routes`` summary: rows routed, scored and quarantined."""
    scored, quarantined = (route.path(name) for name in (steps.SCORED, steps.QUARANTINE))
    out = {"model": f"{model['name']} v{model['version']}", "rows": staged_rows(route.path(steps.INGESTED)),
           "scored": staged_rows(scored) if scored.exists() else 0,
           "quarantined": staged_rows(quarantined) if quarantined.exists() else 0}
    ctx.log.info("route %s -> %s v%d: %d rows, %d scored, %d quarantined", route.route, model["name"],
                 model["version"], out["rows"], out["scored"], out["quarantined"])
    return out


def _route_writer(ctx: RunContext, name: str, schema: pa.Schema) -> StagedWriter:
    """A route's ``ingested`` rows, in a fresh folder (no file of an earlier try of the task is left in it), with
    no duplicate keys to check (the router's validation quarantined them)."""
    route = ctx.spec.for_route(name, ctx.spec.route_models[name])
    shutil.rmtree(route.work_dir, ignore_errors=True)
    route.work_dir.mkdir(parents=True)
    route.write_json(steps.INGEST_STATE, {"files": [], "duplicate_keys": [], "ignored_columns": []})
    return StagedWriter(route.path(steps.INGESTED), schema)


def join_router_flags(route: RunContext, counts: dict[str, Any] | None = None) -> dict[str, Any]:
    """Step ``router_flags`` of a route: the router's flags of each row joined to the route model's own, in the
    route's valid rows."""
    path = route.path(steps.VALID)
    schema = staged_schema(path)
    out = schema.remove(schema.get_field_index(ROUTER_FLAGS))
    tmp = path.with_name("valid-merged.arrow")
    with StagedWriter(tmp, out) as writer:
        for batch in read_batches(path, route.batch_rows):
            writer.write(merge_router_flags(batch).select(out.names))
    tmp.replace(path)
    return counted(counts, rows=writer.rows)


def _write_scored(ctx: RunContext, routes: dict[str, Any], models: dict[str, dict[str, Any]], schema: pa.Schema,
                  router: dict[str, Any]) -> int:
    """The run's ``scored`` rows: those the router kept, then each route's, with their lineage."""
    tmp = ctx.spec.work_dir / "scored-cascade.arrow"
    with StagedWriter(tmp, schema) as writer:
        for batch in read_batches(ctx.path(KEPT), ctx.batch_rows):
            writer.write(batch)
        for name, one in routes.items():
            path = one.path(steps.SCORED)
            for batch in read_batches(path, ctx.batch_rows) if path.exists() else ():
                writer.write(with_lineage(batch, route_name(name), models[name], router, schema))
    tmp.replace(ctx.path(steps.SCORED))
    return writer.rows


def _write_quarantine(ctx: RunContext, routes: dict[str, Any], models: dict[str, dict[str, Any]],
                      ingested: pa.Schema, router: dict[str, Any]) -> int:
    """The run's ``quarantine``: the router's rows, the unrouted ones, then each route's, every reason
    prefixed with the model that rejected the row."""
    schema = ingested.append(pa.field("reasons", pa.string()))
    tmp = ctx.spec.work_dir / "quarantine-cascade.arrow"
    with StagedWriter(tmp, schema) as writer:
        for batch in read_batches(ctx.path(steps.QUARANTINE), ctx.batch_rows):
            writer.write(prefixed(batch, {"name": router["model"], "version": router["version"]}).select(schema.names))
        for batch in read_batches(ctx.path(UNROUTED), ctx.batch_rows):
            writer.write(pa.Table.from_batches([batch]).select(schema.names))
        for name, one in routes.items():
            path = one.path(steps.QUARANTINE)
            for batch in read_batches(path, ctx.batch_rows) if path.exists() else ():
                writer.write(prefixed(batch, models[name]).select(schema.names).cast(schema))
    tmp.replace(ctx.path(steps.QUARANTINE))
    return writer.rows


def _write_drift(ctx: RunContext, routes: dict[str, Any], models: dict[str, dict[str, Any]]) -> None:
    """The run's drift results: the router's (computed at its score), then each route model's on its rows."""
    results = [dict(r, model_name=ctx.spec.model_name, model_version=ctx.spec.model_version)
               for r in ctx.spec.read_json(steps.DRIFT_STATE, default=[])]
    for name, one in routes.items():
        results += [dict(r, model_name=models[name]["name"], model_version=models[name]["version"])
                    for r in one.read_json(steps.DRIFT_STATE, default=[])]
    ctx.spec.write_json(steps.DRIFT_STATE, results)


def combine(ctx: RunContext, shard_specs: list[Any], counts: dict[str, Any]) -> None:
    """A sharded cascade, after its shards: the routes' counts added up, and drift over the whole partition,
    the router's on its own scores and each route model's on the rows it saw in every shard."""
    job, merged = ctx.job, None
    for one in shard_specs:
        part = json.loads(one.read_json(steps.SHARD_STATE)["counts"]["routes"])
        if merged is None:
            merged = part
            continue
        for field in ("router_quarantined", "kept", "unrouted"):
            merged[field] += part[field]
        for name, r in part["routes"].items():
            for field in ("rows", "scored", "quarantined"):
                merged["routes"][name][field] += r[field]
    counts["routes"] = json.dumps(merged, sort_keys=True)
    results = drift.check(ctx, counts["rows_scored"], counts, scored=ctx.parts(ROUTER_SCORED))
    results = [dict(r, model_name=ctx.spec.model_name, model_version=ctx.spec.model_version) for r in results]
    for name, model in ctx.spec.route_models.items():
        folders = [one.for_route(name, model).work_dir for one in shard_specs]
        valid = [f / f"{steps.VALID}.arrow" for f in folders if (f / f"{steps.SCORED}.arrow").exists()]
        card = ctx.models.card(model["name"], model["version"])
        rows = (merged or {}).get("routes", {}).get(name, {}).get("scored", 0)
        if not valid or rows < job.drift.min_rows or not drift.has_statistics(card):
            continue
        results += [dict(r, model_name=model["name"], model_version=model["version"]) for r in drift.compute(
            card, valid, [v.with_name(f"{steps.SCORED}.arrow") for v in valid], threshold=job.drift.psi_threshold,
            batch_rows=ctx.batch_rows)]
    ctx.spec.write_json(steps.DRIFT_STATE, results)


def _reason_counts(ctx: RunContext) -> dict[str, int]:
    counts: dict[str, int] = {}
    for batch in read_batches(ctx.path(steps.QUARANTINE), ctx.batch_rows):
        count_reasons(batch.column("reasons"), counts)
    return counts


def reconciliation_problems(row: dict[str, Any]) -> list[str]:
    """Where a cascade's per-route counts do not add up to the run's (nothing for a run without routes)."""
    if not row.get("routes"):
        return []
    summary = as_json(row["routes"])
    problems = []
    for name, r in summary["routes"].items():
        if r["rows"] != r["scored"] + r["quarantined"]:
            problems.append(f"route {name}: {r['rows']} rows routed != {r['scored']} scored + "
                            f"{r['quarantined']} quarantined")
    routed = sum(r["rows"] for r in summary["routes"].values())
    parts = summary["router_quarantined"] + summary["unrouted"] + summary["kept"] + routed
    if parts != row["rows_in"]:
        problems.append(f"rows_in {row['rows_in']} != {summary['router_quarantined']} quarantined by the router + "
                        f"{summary['unrouted']} unrouted + {summary['kept']} kept + {routed} routed")
    scored = summary["kept"] + sum(r["scored"] for r in summary["routes"].values())
    if scored != row["rows_scored"]:
        problems.append(f"rows_scored {row['rows_scored']} != {summary['kept']} kept by the router + the routes' "
                        f"{scored - summary['kept']} scored")
    return problems
