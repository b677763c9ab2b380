"""Run-scoped staging area: files passed between stages, never through XCom.

Stages hand data to each other as Arrow IPC files (``<name>.arrow``, LZ4-compressed
buffers): written and read batch by batch, about four times faster than Parquet with zstd
for the same data, and the files live only as long as the run. Push mode's outbox is
Parquet (``outbox.parquet``), because its row groups are the delivery batches.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from pipeline.settings import safe_name
from pipeline.steps import route_models


@dataclass(frozen=True)
class RunSpec:
    """Everything a stage needs to know about its run; small, JSON-serialisable."""

    job_id: str
    run_id: str
    attempt: int
    partition_date: str
    model_name: str
    model_version: int
    dry_run: bool
    staging_dir: str
    mode: str = "persist"
    resend: bool = False
    shards: int = 1
    shard: int | None = None
    holder_kind: str = "task"  # "process": the whole attempt runs in one process (scoring run), see pipeline.lease
    # model.challengers pinned at start: {"ref", "version" (None if it did not resolve), "error"} (pipeline.shadow)
    challengers: list[dict[str, Any]] = field(default_factory=list)
    # model.split's arms pinned at start: ab.Arm.as_dict()s, and the assignment's salt (pipeline.ab)
    arms: list[dict[str, Any]] = field(default_factory=list)
    ab_salt: str | None = None
    # cascade pinned at start (pipeline.cascade.pin); route: the route a stage-2 spec scores (None: the run's own)
    cascade: dict[str, Any] | None = None
    route: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        return cls(**data)

    @property
    def run_dir(self) -> Path:
        """The run's staging area, for all its tasks (a sharded run's shards have a folder each below it)."""
        return Path(self.staging_dir)

    @property
    def work_dir(self) -> Path:
        """This spec's own folder: its shard's (or the run's for an unsharded run or a sharded run's root), and
        below it a cascade route's ``route-<name>``."""
        task = self.run_dir if self.shard is None else self.run_dir / f"shard-{self.shard:03d}"
        return task if self.route is None else task / f"route-{safe_name(self.route)}"

    def for_shard(self, shard: int) -> RunSpec:
        return replace(self, shard=shard)

    # -- what this task is: sharding and cascade as properties of the plan ------------------
    @property
    def is_shard(self) -> bool:
        """One shard of a sharded run (or a route below it): its counts and timings go to its shard's state file,
        and combine adds them up."""
        return self.shard is not None

    @property
    def sees_partition(self) -> bool:
        """The task holds the whole partition (not a shard, not a cascade's route): it applies the partition-wide
        policies itself (an empty partition, the quarantine threshold)."""
        return self.shard is None and self.route is None

    @property
    def checks_drift(self) -> bool:
        """Drift of what this task scored is computed here: a shard's is computed by combine over every shard."""
        return self.shard is None

    @property
    def reads_plan(self) -> bool:
        """The task's rows come from the sharded plan: its files or share of the source, the partition's duplicate
        keys from the plan state (a cascade route's rows come from its router)."""
        return self.shard is not None and self.route is None

    @property
    def shard_index(self) -> int:
        """The shard's number (0 for a task of an unsharded run)."""
        return self.shard or 0

    def shard_specs(self) -> list[RunSpec]:
        """Every shard's spec of the run's plan (for a sharded run's root: combine, its merged report)."""
        return [self.for_shard(i) for i in range(self.shards)]

    def part_specs(self) -> list[RunSpec]:
        """The specs whose staged files together hold this task's datasets: every shard's for a sharded run's root
        (of more than one shard), else ``[self]``."""
        return self.shard_specs() if self.shard is None and self.route is None and self.shards > 1 else [self]

    def label(self, name: str) -> str:
        """A stage's label in the logs and the ledger's failed_stage: ``validate``, ``validate[shard 2]``,
        ``validate[route frequent]``."""
        route = "" if self.route is None else f"[route {self.route}]"
        return f"{name}{route}" if self.shard is None else f"{name}{route}[shard {self.shard}]"

    @property
    def report_suffix(self) -> str:
        """This task's validation report name after the run id: ``.shard-003``, ``.route-frequent``,
        ``.route-frequent.shard-003`` or nothing (a whole partition's)."""
        shard = "" if self.shard is None else f".shard-{self.shard:03d}"
        return shard if self.route is None else f".route-{safe_name(self.route + shard)}"

    @property
    def routes_after_score(self) -> bool:
        """A cascade's router: its routes' models score after its own score."""
        return bool(self.cascade) and self.route is None

    @property
    def route_models(self) -> dict[str, dict[str, Any]]:
        """A cascade router's pinned route models by route name, the default's under ``ROUTE_DEFAULT`` (``{}`` for
        a run without a cascade, or a route)."""
        return route_models(self.cascade) if self.cascade and self.route is None else {}

    def for_route(self, name: str, model: dict[str, Any]) -> RunSpec:
        """A cascade route's spec: the route's model over the rows the router sent it, in ``route-<name>/``."""
        return replace(self, model_name=model["name"], model_version=model["version"], route=name, challengers=[],
                       cascade=None, arms=[], ab_salt=None)

    def path(self, name: str) -> Path:
        """Path of a staged dataset, e.g. ``spec.path('scored')`` (an Arrow IPC file)."""
        return self.work_dir / f"{name}.arrow"

    def parts(self, name: str) -> list[Path]:
        """Every file of a staged dataset: one per shard for a sharded run's root spec, else one."""
        return [one.path(name) for one in self.part_specs()]

    def json_path(self, name: str, run_level: bool = False) -> Path:
        """A JSON state file of this spec's folder (or, ``run_level``, of the run's folder above its shards)."""
        return (self.run_dir if run_level else self.work_dir) / f"{name}.json"

    def write_json(self, name: str, data: Any) -> Path:
        path = self.json_path(name)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str))
        tmp.replace(path)
        return path

    def read_json(self, name: str, default: Any = None, run_level: bool = False) -> Any:
        """A JSON state file's content; ``default`` when it does not exist (if given)."""
        path = self.json_path(name, run_level)
        if default is not None and not path.exists():
            return default
        return json.loads(path.read_text())

    def cleanup(self) -> None:
        shutil.rmtree(self.run_dir, ignore_errors=True)


IPC_OPTIONS = ipc.IpcWriteOptions(compression="lz4")


class StagedWriter:
    """Write record batches to a staged file atomically (temp name, then rename).

    The file's suffix picks the format: ``.arrow`` is an Arrow IPC file (the stages'
    hand-over), ``.parquet`` a Parquet file (zstd).
    """

    def __init__(self, path: Path, schema: pa.Schema | None = None, row_group_rows: int | None = None) -> None:
        """``row_group_rows`` (Parquet only): make every row group exactly that many rows (the last may be
        shorter), so that row group *i* is batch *i* whatever sizes the writes had."""
        self.path = path
        self.tmp = path.with_name(f".{path.name}.tmp")
        self.schema = schema
        self.rows = 0
        self.parquet = path.suffix == ".parquet"
        self.row_group_rows = row_group_rows if self.parquet else None
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._writer: Any = None
        self._sink: Any = None

    def _open(self, schema: pa.Schema) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.parquet:
            self._writer = pq.ParquetWriter(self.tmp, schema, compression="zstd")
        else:
            self._sink = pa.OSFile(str(self.tmp), "wb")
            self._writer = ipc.new_file(self._sink, schema, options=IPC_OPTIONS)

    def write(self, table: pa.Table | pa.RecordBatch) -> None:
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        if self._writer is None:
            self.schema = self.schema or table.schema
            self._open(self.schema)
        table = table.cast(self.schema) if table.schema != self.schema else table
        self.rows += table.num_rows
        if not self.row_group_rows:
            self._writer.write_table(table)
            return
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= self.row_group_rows:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        size = self.row_group_rows or 1
        if not self._pending or self._writer is None:
            return
        whole = pa.concat_tables(self._pending)
        cut = whole.num_rows if final else whole.num_rows // size * size
        if cut:
            self._writer.write_table(whole.slice(0, cut), row_group_size=size)
        rest = whole.slice(cut)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._sink is not None:
            self._sink.close()

    def close(self) -> int:
        self._flush(final=True)
        if self._writer is None:  # nothing written: still leave an (empty) file with the schema
            if self.schema is None:
                raise ValueError(f"cannot stage {self.path}: no rows and no schema")
            self._open(self.schema)
        self._close_writer()
        os.replace(self.tmp, self.path)
        return self.rows

    def __enter__(self) -> StagedWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self._close_writer()
            self.tmp.unlink(missing_ok=True)


def read_batches(path: Path | list[Path], batch_rows: int, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """Stream a staged file (or the files of every shard, in order) in batches of at most ``batch_rows``."""
    for one in path if isinstance(path, list) else [path]:
        if one.suffix == ".parquet":
            yield from pq.ParquetFile(one).iter_batches(batch_size=batch_rows, columns=columns)
            continue
        options = None
        if columns is not None:  # decompress only the columns asked for
            names = staged_schema(one).names
            options = ipc.IpcReadOptions(included_fields=sorted(names.index(c) for c in columns))
        with pa.OSFile(str(one)) as source:  # read, not memory-mapped: only the current batch is resident
            reader = ipc.open_file(source, options=options)
            for i in range(reader.num_record_batches):
                batch = reader.get_batch(i)
                if columns is not None:
                    batch = batch.select(columns)  # the caller's order
                for start in range(0, batch.num_rows, batch_rows):
                    yield batch.slice(start, batch_rows)


def staged_schema(path: Path) -> pa.Schema:
    """The schema of a staged file."""
    if path.suffix == ".parquet":
        return pq.read_schema(path)
    with pa.OSFile(str(path)) as source:
        return ipc.open_file(source).schema


def staged_rows(path: Path | list[Path]) -> int:
    total = 0
    for one in path if isinstance(path, list) else [path]:
        if one.suffix == ".parquet":
            total += pq.ParquetFile(one).metadata.num_rows
            continue
        with pa.OSFile(str(one)) as source:
            total += ipc.open_file(source).count_rows()
    return total
