"""Files sink: Parquet or CSV files in a directory or any fsspec URI, written atomically."""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from typing import Any

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from pipeline import settings
from pipeline.connections import Conn
from pipeline.errors import ConfigError
from pipeline.redact import redact, redact_url
from pipeline.sinks.base import Batch, DeliveryFailed, Sink

PART_RE = re.compile(r"^part-(\d{5})\.(parquet|csv)$")


class FilesSink(Sink):
    """``<uri>/<job_id>/date=<partition>/part-00000.parquet`` (per batch) or ``predictions.parquet``.

    Each file is written under a temporary name and renamed, so readers never see half a
    file; names depend only on the partition and batch number, so a re-run overwrites.
    """

    def __init__(self, cfg: Any, conn: Conn | None, job_id: str) -> None:
        uri = cfg.uri
        if "://" not in uri and not os.path.isabs(uri):
            uri = str(settings.home() / uri)
        options = dict(conn.extra) if conn else {}
        try:
            self.fs, self.root = url_to_fs(uri, **options)
        except (ValueError, ImportError) as exc:  # unknown protocol, missing driver; may quote the URI
            raise ConfigError(f"the files sink cannot open {redact_url(uri)}: {redact(str(exc))}") from None
        self.uri = uri
        self.job_id = job_id
        self.format = cfg.format
        self.per = cfg.per
        self._partition: str | None = None

    @property
    def target(self) -> str:
        return f"files:{redact_url(self.uri)}"

    def folder(self, partition_date: str) -> str:
        return f"{self.root.rstrip('/')}/{self.job_id}/date={partition_date}"

    def name(self, batch_no: int) -> str:
        return f"part-{batch_no:05d}.{self.format}" if self.per == "batch" else f"predictions.{self.format}"

    def send(self, batch: Batch) -> None:
        folder = self.folder(batch.partition_date)
        self._partition = batch.partition_date
        final = f"{folder}/{self.name(batch.batch_no)}"
        tmp = f"{folder}/.{self.name(batch.batch_no)}.{uuid.uuid4().hex}.tmp"
        try:
            self.fs.makedirs(folder, exist_ok=True)
            with self.fs.open(tmp, "wb") as fh:
                writer = None
                for table in batch.read():
                    if writer is None:
                        writer = (pq.ParquetWriter(fh, table.schema, compression="zstd") if self.format == "parquet"
                                  else pacsv.CSVWriter(fh, table.schema))
                    writer.write_table(table)
                if writer is not None:
                    writer.close()
            if isinstance(self.fs, LocalFileSystem):
                os.replace(tmp, final)  # atomic on one file system
            else:
                self.fs.mv(tmp, final)  # object stores: the object appears whole on upload
        except OSError as exc:
            with contextlib.suppress(OSError):
                self.fs.rm(tmp)
            raise DeliveryFailed(f"writing {final} failed: {exc}", retryable=True) from exc

    def finish(self, batch_count: int) -> None:
        """Remove files of an earlier run that this run's batches did not overwrite."""
        if self._partition is None:
            return
        keep = {self.name(i) for i in range(batch_count)} if self.per == "batch" else {self.name(0)}
        folder = self.folder(self._partition)
        for path in self.fs.ls(folder, detail=False):
            base = path.rstrip("/").rsplit("/", 1)[-1]
            if base in keep:
                continue
            if PART_RE.match(base) or base in ("predictions.parquet", "predictions.csv"):
                self.fs.rm(path)
