"""The shape of a run, declared once: its steps in order, the staged datasets each reads and writes, and the
function that does each step's work.

The DAG factory, the sharded path and the local runner (``scoring run``) all follow this
table. A step names its function by import path (``"pipeline.validate:validate_file"``),
imported when the step runs (``Step.function``): nothing heavy is imported here, so the DAG
file can read the table while it parses.

Staged datasets are files in the run's staging area (``RunSpec.path(name)``): Arrow IPC
(``<name>.arrow``) between stages, Parquet for the push outbox. Small JSON state files
(``<name>.json``) carry counts and facts a later step needs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# -- staged datasets (Arrow IPC files in the run's staging area) --------------------------
INGESTED = "ingested"  # the partition's rows in the contract's schema (+ __raw__ text of bad numbers)
VALID = "valid"  # rows that passed validation (+ __flags)
QUARANTINE = "quarantine"  # rows that failed, with their reasons
FEATURES = "features"  # the valid rows after the model's preprocessing
SCORED = "scored"  # entity key, prediction, score, flags (+ model_name, model_version, arm: a job with model.split)
CHAMPION_SCORED = "champion-scored"  # model.split: the champion's scores of every row, beside the arms' (ARMS)
OUTBOX = "outbox"  # push mode: the rows to send, one Parquet row group per batch
DATASETS = (INGESTED, VALID, QUARANTINE, FEATURES, SCORED, CHAMPION_SCORED)  # the Arrow IPC hand-overs

# columns the stages add to the rows
FLAGS = "__flags"  # validation's 'flag' reasons ("; "-joined), carried to the predictions' flags column
ROUTE_DEFAULT = "__default__"  # a cascade's route name of the rows its default model scores (RunSpec.route_models)


def route_models(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A pinned cascade plan's models by route name, the default model's under ``ROUTE_DEFAULT`` (the run spec
    and the routing kernel both read a plan through this)."""
    out = dict(plan["routes"])
    if isinstance(plan["default"], dict):
        out[ROUTE_DEFAULT] = plan["default"]
    return out

# -- JSON state files --------------------------------------------------------------------
INGEST_STATE = "ingest"  # files read, duplicate keys, ignored columns
SCORE_STATE = "score"  # scored_at
DRIFT_STATE = "drift"  # PSI results, one per feature
PLAN_STATE = "keys"  # sharded runs: the partition's files and its duplicate keys (run root)
SHARD_STATE = "shard"  # sharded runs: one shard's counts and stage timings


@dataclass(frozen=True)
class Step:
    """One step of a run: its task / stage name, the datasets it reads and writes, and its function."""

    name: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    doc: str
    work: str  # "module:function" doing the step's work; a stage's takes (ctx, counts) and fills counts

    def function(self) -> Callable[..., Any]:
        """The function that does the step's work (its module imported now, on first use)."""
        module, _, name = self.work.partition(":")
        return getattr(importlib.import_module(module), name)


INGEST = Step("ingest", (), (INGESTED, INGEST_STATE), "read the partition's files into the contract's schema",
              "pipeline.ingest:ingest_partition")
VALIDATE = Step("validate", (INGESTED,), (VALID, QUARANTINE),
                "Great Expectations suite; split valid / quarantined rows; threshold", "pipeline.validate:validate_file")
PREPROCESS = Step("preprocess", (VALID,), (FEATURES,), "the model's registered transformation",
                  "pipeline.preprocess:transform_file")
SCORE = Step("score", (FEATURES,), (SCORED, SCORE_STATE, DRIFT_STATE),
             "verified model, predictions in batches; drift check; then the challengers and arms, a cascade's routes",
             "pipeline.score_step:score_step")
PERSIST = Step("persist", (SCORED, QUARANTINE), (), "replace the partition in the predictions table",
               "pipeline.persist:persist_file")
PUSH = Step("push", (SCORED, QUARANTINE), (OUTBOX,), "deliver the predictions to the job's sink", "pipeline.push:push_file")
FINALIZE = Step("finalize", (DRIFT_STATE,), (), "reconcile the ledger, record drift, mark the run done",
                "pipeline.run:finalize")

# The scoring steps, in order: one task each, or all of them inside one mapped task per shard.
SCORING = (INGEST, VALIDATE, PREPROCESS, SCORE)
# One of these publishes, by the run's output mode.
OUTPUTS = {"persist": PERSIST, "push": PUSH}
# Sharded runs: plan before the shards, combine after them (both in pipeline.sharding).
PLAN = Step("plan", (), (PLAN_STATE,), "split the partition's files into shards; duplicate keys across them",
            "pipeline.sharding:plan")
SCORE_SHARD = Step("score_shard", (), (SCORED,), "one shard: " + " -> ".join(s.name for s in SCORING),
                   "pipeline.run:score_shard")
COMBINE = Step("combine", (SHARD_STATE,), (SCORE_STATE, DRIFT_STATE),
               "add up the shards' counts; threshold and drift over the whole partition", "pipeline.sharding:combine")

# -- parts of the score step (pipeline.score_step): each with its own bookkeeping, inside the step's task --------
SHADOW = Step("shadow", (VALID,), (), "the challengers over the champion's valid rows (a failure is recorded, "
              "never raised)", "pipeline.shadow:score_challengers")
ARMS = Step("arms", (SCORED,), (SCORED, CHAMPION_SCORED), "model.split: each valid row's arm by its key's hash; "
            "an arm's rows take its version's scores (from the shadow), every row its version and arm; the "
            "champion's scores kept as champion-scored", "pipeline.ab:assign_arms")
ROUTE = Step("route", (VALID, SCORED), (), "a cascade router's valid rows split by its prediction, into each "
             "route's ingested rows", "pipeline.cascade:split")
ROUTER_FLAGS = Step("router_flags", (VALID,), (VALID,), "the router's flags of a route's rows joined to the route "
                    "model's", "pipeline.cascade:join_router_flags")
# one route's model over the rows the router sent it, in the route's folder (RunSpec.for_route)
ROUTE_STEPS = (VALIDATE, ROUTER_FLAGS, PREPROCESS, SCORE)
MERGE_ROUTES = Step("merge_routes", (SCORED, QUARANTINE), (SCORED, QUARANTINE, DRIFT_STATE),
                    "the routes' scores and quarantine with their lineage; drift and the threshold",
                    "pipeline.cascade:merge")
TABLE = (*SCORING, *OUTPUTS.values(), FINALIZE, PLAN, SCORE_SHARD, COMBINE, SHADOW, ARMS, ROUTE, ROUTER_FLAGS, MERGE_ROUTES)


def plan(mode: str, sharded: bool) -> list[Step]:
    """The steps of one run in order, as the local runner executes them."""
    front = [PLAN, SCORE_SHARD, COMBINE] if sharded else list(SCORING)
    return [*front, OUTPUTS[mode], FINALIZE]


def writer_of(dataset: str) -> str:
    """The step that writes a staged dataset (for error messages)."""
    return next(s.name for s in (*SCORING, *OUTPUTS.values(), PLAN, COMBINE, ARMS) if dataset in s.writes)
