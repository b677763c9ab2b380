"""One model's (or a cascade's) work on rows in memory: validate -> preprocess -> score -> drift, composed from
the kernels, for a shell that holds its rows (the online door, a test). The staged runner runs the same
kernels stage by stage over files; both give the same rows, reasons, counts and drift.

Rows are decided batch by batch and a row's fate never depends on the batching, so ``batch_rows`` changes
only how much GX sees at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pipeline.kernels.drift import DriftTracker, has_statistics
from pipeline.kernels.features import features
from pipeline.kernels.predict import Scorer, score_batch, scored_schema
from pipeline.kernels.route import (
    Router,
    merge_router_flags,
    prefixed,
    route_name,
    with_lineage,
)
from pipeline.kernels.validate import RowValidator, quarantine_schema, split_rows, valid_schema


@dataclass
class Model:
    """A model ready to score rows: its card, its loaded scorer, and its checks (``kernels.validate.suite``)."""

    card: dict[str, Any]
    scorer: Scorer
    expectations: list[dict[str, Any]]

    @property
    def ref(self) -> dict[str, Any]:
        """The model's name and version, as lineage and quarantine reasons name it."""
        return {"name": self.scorer.version.name, "version": int(self.scorer.version.version)}


@dataclass(frozen=True)
class DriftSettings:
    """A job's drift settings (``drift.psi_threshold``, ``alpha``, ``min_rows``)."""

    threshold: float = 0.2
    alpha: float = 0.01
    min_rows: int = 1


@dataclass
class Scored:
    """What rows became: scored rows, quarantined rows with their reasons, counts and drift results."""

    predictions: pa.Table
    quarantine: pa.Table
    counts: dict[str, Any]
    drift: list[dict[str, Any]] = field(default_factory=list)
    valid: pa.Table | None = None  # the valid rows with their flags (a cascade's router routes them)


def score_rows(batches: Iterable[pa.RecordBatch | pa.Table], model: Model, *, key: str, schema: pa.Schema,
               batch_rows: int, drift: DriftSettings | None = None, name: str = "scoring",
               validator: RowValidator | None = None) -> Scored:
    """One model over rows of ``schema``: its checks split them, its transformation and estimator score the
    valid ones, its training statistics judge their drift. ``validator``: the model's checks built already
    (``RowValidator(model.expectations)``, for a caller that scores again and again; one caller's at a time:
    it counts what it saw)."""
    validator = validator or RowValidator(model.expectations, name)
    valid, scored, quarantined = [], [], []
    out_schema = scored_schema(key, schema.field(key).type)
    for split, rows in _scored(validator, batches, model, key, batch_rows, out_schema):
        valid.append(split.valid)
        scored.append(rows)
        if split.quarantined is not None:
            quarantined.append(split.quarantined)
    valid_rows = _concat(valid, valid_schema(schema))
    predictions = _concat(scored, out_schema)
    quarantine = _concat(quarantined, quarantine_schema(schema))
    counts = {"rows_in": valid_rows.num_rows + quarantine.num_rows, "rows_valid": valid_rows.num_rows,
              "rows_quarantined": quarantine.num_rows, "rows_scored": predictions.num_rows}
    return Scored(predictions, quarantine, counts, _judged(model.card, valid_rows, predictions, drift), valid_rows)


def _judged(card: dict[str, Any], valid: pa.Table, scored: pa.Table, settings: DriftSettings | None
            ) -> list[dict[str, Any]]:
    """The drift of valid rows and their scores against the card's training statistics; none counted when too few
    rows were scored to be judged (``_drift``: an online request)."""
    if scored.num_rows < (settings or DriftSettings()).min_rows:
        return []
    tracker = DriftTracker(card, valid.schema.names)
    tracker.add_inputs(valid)
    tracker.add_scored(scored)
    return _drift(tracker, scored.num_rows, settings)


def _scored(validator: RowValidator, batches: Iterable[pa.RecordBatch | pa.Table], model: Model, key: str,
            batch_rows: int, out_schema: pa.Schema) -> Iterator[tuple[Any, pa.Table]]:
    inputs = [c["name"] for c in model.card["inputs"]]
    transform = model.scorer.transform
    for split in split_rows(validator, batches, batch_rows):
        valid = split.valid
        rows = (score_batch(model.scorer, features(transform, valid, inputs, key), key, out_schema)
                if valid.num_rows else out_schema.empty_table())
        yield split, rows


def _drift(tracker: DriftTracker, scored: int, settings: DriftSettings | None) -> list[dict[str, Any]]:
    """Drift results as the score stage checks them: none below ``min_rows`` or without training statistics."""
    settings = settings or DriftSettings()
    if scored < settings.min_rows or not has_statistics(tracker.card):
        return []
    return tracker.results(threshold=settings.threshold, alpha=settings.alpha, min_rows=settings.min_rows)


def score_cascade(batches: Iterable[pa.RecordBatch | pa.Table], router: Model, routes: dict[str, Model],
                  plan: dict[str, Any], *, key: str, schema: pa.Schema, batch_rows: int,
                  route_expectations: dict[str, list[dict[str, Any]]] | None = None,
                  drift: DriftSettings | None = None) -> Scored:
    """A cascade over rows of ``schema``: the router scores its valid rows, ``plan`` sends them to routes, each
    route's model validates, scores and judges the drift of the rows it got (``routes``: by route name, the
    default model's under ``kernels.route.DEFAULT``). Scored rows carry their lineage; every quarantine
    reason is prefixed with the model that rejected the row."""
    first = score_rows(batches, router, key=key, schema=schema, batch_rows=batch_rows, drift=drift)
    ref = {"model": router.ref["name"], "version": router.ref["version"]}
    splitter = Router(plan, ref, router.card, key, schema)
    split = splitter.split(first.valid, first.predictions)
    predictions = [split.kept] if split.kept is not None else []
    quarantine = [prefixed(first.quarantine, router.ref)] + ([split.unrouted] if split.unrouted is not None else [])
    results = [dict(r, model_name=ref["model"], model_version=ref["version"]) for r in first.drift]
    summary = {"router_quarantined": first.quarantine.num_rows, "kept": _rows(split.kept),
               "unrouted": _rows(split.unrouted), "routes": {}}
    for name, model in routes.items():
        rows = split.routed.get(name, splitter.child_schema.empty_table())
        one = _route(rows, model, splitter, key, batch_rows, drift)
        predictions.append(with_lineage(one.predictions, route_name(name), model.ref, ref, splitter.final_schema))
        quarantine.append(prefixed(one.quarantine, model.ref).select(splitter.unrouted_schema.names)
                          .cast(splitter.unrouted_schema))
        results += [dict(r, model_name=model.ref["name"], model_version=model.ref["version"]) for r in one.drift]
        summary["routes"][name] = {"rows": rows.num_rows, "scored": one.counts["rows_scored"],
                                   "quarantined": one.counts["rows_quarantined"]}
    scored = _concat(predictions, splitter.final_schema)
    quarantined = _concat([q.select(splitter.unrouted_schema.names).cast(splitter.unrouted_schema)
                           for q in quarantine], splitter.unrouted_schema)
    counts = {"rows_in": first.counts["rows_in"], "rows_valid": scored.num_rows,
              "rows_quarantined": quarantined.num_rows, "rows_scored": scored.num_rows, "routes": summary}
    return Scored(scored, quarantined, counts, results)


def _route(rows: pa.Table, model: Model, splitter: Router, key: str, batch_rows: int,
           drift: DriftSettings | None) -> Scored:
    """One route's rows through its model: validated with its checks, the router's flags joined to its own."""
    if not rows.num_rows:
        empty = scored_schema(key, splitter.child_schema.field(key).type)
        return Scored(empty.empty_table(), quarantine_schema(splitter.child_schema).empty_table(),
                      {"rows_in": 0, "rows_valid": 0, "rows_quarantined": 0, "rows_scored": 0})
    validator = RowValidator(model.expectations, "route")
    out_schema = scored_schema(key, rows.schema.field(key).type)
    inputs = [c["name"] for c in model.card["inputs"]]
    valid, quarantined = [], []
    for split in split_rows(validator, rows.to_batches(batch_rows), batch_rows):
        valid.append(merge_router_flags(split.valid))
        if split.quarantined is not None:
            quarantined.append(split.quarantined)
    valid_rows = pa.concat_tables(valid)
    scored = (score_batch(model.scorer, features(model.scorer.transform, valid_rows, inputs, key), key, out_schema)
              if valid_rows.num_rows else out_schema.empty_table())
    tracker = DriftTracker(model.card, valid_rows.schema.names)
    tracker.add_inputs(valid_rows)
    tracker.add_scored(scored)
    quarantine = _concat(quarantined, quarantine_schema(splitter.child_schema))
    counts = {"rows_in": rows.num_rows, "rows_valid": valid_rows.num_rows, "rows_quarantined": quarantine.num_rows,
              "rows_scored": scored.num_rows}
    return Scored(scored, quarantine, counts, _drift(tracker, scored.num_rows, drift))


def _concat(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    tables = [t for t in tables if t.num_rows]
    return pa.concat_tables([t.cast(schema) for t in tables]) if tables else schema.empty_table()


def _rows(table: pa.Table | None) -> int:
    return 0 if table is None else table.num_rows
