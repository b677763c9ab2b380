"""The shape of a run, declared once: its steps in order and the staged datasets each reads and writes.

The DAG factory, the sharded path and the local runner (``scoring run``) all follow this
table; the function that does a step's work is named in ``pipeline.run.stages()``. Nothing
heavy is imported here, so the DAG file can read the table while it parses.

Staged datasets are files in the run's staging area (``RunSpec.path(name)``): Arrow IPC
(``<name>.arrow``) between stages, Parquet for the push outbox. Small JSON state files
(``<name>.json``) carry counts and facts a later step needs.
"""

from __future__ import annotations

from dataclasses import dataclass

# -- staged datasets (Arrow IPC files in the run's staging area) --------------------------
INGESTED = "ingested"  # the partition's rows in the contract's schema (+ __raw__ text of bad numbers)
VALID = "valid"  # rows that passed validation (+ __flags)
QUARANTINE = "quarantine"  # rows that failed, with their reasons
FEATURES = "features"  # the valid rows after the model's preprocessing
SCORED = "scored"  # entity key, prediction, score, flags
OUTBOX = "outbox"  # push mode: the rows to send, one Parquet row group per batch
DATASETS = (INGESTED, VALID, QUARANTINE, FEATURES, SCORED)  # the Arrow IPC hand-overs

# columns the stages add to the rows
FLAGS = "__flags"  # validation's 'flag' reasons ("; "-joined), carried to the predictions' flags column

# -- JSON state files --------------------------------------------------------------------
INGEST_STATE = "ingest"  # files read, duplicate keys, ignored columns
SCORE_STATE = "score"  # scored_at
DRIFT_STATE = "drift"  # PSI results, one per feature
PLAN_STATE = "keys"  # sharded runs: the partition's files and its duplicate keys (run root)
SHARD_STATE = "shard"  # sharded runs: one shard's counts and stage timings


@dataclass(frozen=True)
class Step:
    """One step of a run: its task / stage name and the datasets it reads and writes."""

    name: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    doc: str


INGEST = Step("ingest", (), (INGESTED, INGEST_STATE), "read the partition's files into the contract's schema")
VALIDATE = Step("validate", (INGESTED,), (VALID, QUARANTINE),
                "Great Expectations suite; split valid / quarantined rows; threshold")
PREPROCESS = Step("preprocess", (VALID,), (FEATURES,), "the model's registered transformation")
SCORE = Step("score", (FEATURES,), (SCORED, SCORE_STATE, DRIFT_STATE),
             "verified model, predictions in batches; drift check")
PERSIST = Step("persist", (SCORED, QUARANTINE), (), "replace the partition in the predictions table")
PUSH = Step("push", (SCORED, QUARANTINE), (OUTBOX,), "deliver the predictions to the job's sink")
FINALIZE = Step("finalize", (DRIFT_STATE,), (), "reconcile the ledger, record drift, mark the run done")

# The scoring steps, in order: one task each, or all of them inside one mapped task per shard.
SCORING = (INGEST, VALIDATE, PREPROCESS, SCORE)
# One of these publishes, by the run's output mode.
OUTPUTS = {"persist": PERSIST, "push": PUSH}
# Sharded runs: plan before the shards, combine after them (both in pipeline.sharding).
PLAN = Step("plan", (), (PLAN_STATE,), "split the partition's files into shards; duplicate keys across them")
SCORE_SHARD = Step("score_shard", (), (SCORED,), "one shard: " + " -> ".join(s.name for s in SCORING))
COMBINE = Step("combine", (SHARD_STATE,), (SCORE_STATE, DRIFT_STATE),
               "add up the shards' counts; threshold and drift over the whole partition")


def plan(mode: str, sharded: bool) -> list[Step]:
    """The steps of one run in order, as the local runner executes them."""
    front = [PLAN, SCORE_SHARD, COMBINE] if sharded else list(SCORING)
    return [*front, OUTPUTS[mode], FINALIZE]


def writer_of(dataset: str) -> str:
    """The step that writes a staged dataset (for error messages)."""
    return next(s.name for s in (*SCORING, *OUTPUTS.values(), PLAN, COMBINE) if dataset in s.writes)
