"""A files source (``source.kind: files``): a directory of CSV or Parquet files per partition, laid out by date.

Readiness: the partition's folder holds at least one data file (``pipeline.partition.data_files``);
a run reads ``partition_files``, which refuses what the sensor lets through (a stray file, a link
leading out of the source root). A sharded run's plan splits the partition by file and finds the
duplicate keys across all of them, reading only the key column (``partition_keys``).

Reading: every file's wanted columns, batch by batch, converted into the contract's schema by
``pipeline.kernels.conform``. An unreadable file fails naming the partition and the file. CSV: every
column read (the key, the contract's) is read as text, so a notebook's ``pd.read_csv`` and the run
read one file alike. Text whose bytes are not valid UTF-8 (CSV, Parquet) does not fail the file: the
column holds the text with the bad bytes replaced (U+FFFD) and ``__badtext__<column>`` the original
bytes (validation quarantines the row). A file that is UTF-16 or UTF-32 fails naming its encoding; a
row with the wrong number of fields fails naming its line.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipeline import steps
from pipeline.errors import InputError
from pipeline.kernels.columns import BADTEXT_PREFIX, DEFAULT_NULL_VALUES
from pipeline.kernels.conform import (
    IngestResult,
    Reading,
    Wanted,
    check_contract_names,
    check_wanted,
    conform_all,
    ingested_schema,
    key_type_of,
    missing_markers,
    null_markers,
    printable,
    renamed_schema,
    same_types_in_every_file,
    type_family,
)
from pipeline.keys import KEY_TYPES, entity_key_type
from pipeline.keys import duplicates as _duplicates
from pipeline.partition import (
    compression,
    data_files,
    files_of_shard,
    parse_date,
    partition_dir,
    partition_files,
)

if TYPE_CHECKING:
    from pipeline.config import JobConfig
    from pipeline.connections import Resolver
    from pipeline.staging import RunSpec


class FilesSource:
    """A job's partitions as folders of files (``source.path``, ``source.layout``, ``source.format``)."""

    def __init__(self, job: JobConfig) -> None:
        self.job = job
        self.format = job.source.format

    def folder(self, day: dt.date) -> Path:
        """The partition's folder."""
        return partition_dir(self.job.source_root(), self.job.source.layout, day)

    def files(self, day: dt.date) -> list[Path]:
        """The partition's data files, sorted (``partition_files``: what is not there or should not be raises)."""
        src = self.job.source
        return partition_files(self.job.source_root(), src.layout, src.format, day, ignore=src.ignore)

    def ready(self, day: dt.date, resolver: Resolver | None = None) -> bool:
        """True when the partition's folder holds at least one data file."""
        return bool(data_files(self.folder(day), self.format, self.job.source.ignore))

    def require(self, day: dt.date, resolver: Resolver | None = None) -> None:
        """A partition that is not there raises PartitionNotFoundError (no attempt opens, as the DAG's sensor waits);
        one that holds what it should not (a stray file, an escaping link) is an attempt: ingest records why."""
        with contextlib.suppress(InputError):
            self.files(day)

    def describe(self) -> str:
        """How messages name the source: its partitions' folders and format."""
        return f"{self.job.source_root()}/{self.job.source.layout} ({self.format})"

    def where(self, day: dt.date, ready: bool) -> str:
        """Where the partition is looked for and what was seen, for wait_for_partition's log lines."""
        folder = self.folder(day)
        return f"at {folder}: ready" if ready else f"at {folder}: not there yet (no *.{self.format} files)"

    def missing(self, day: dt.date) -> tuple[str, str]:
        """A partition that never came: what was not seen, and what to check."""
        return f"no *.{self.format} files at {self.folder(day)}", "Check the upstream export"

    def timeout_message(self, day: dt.date) -> str:
        """wait_for_partition's message when it gives up: what it looked for, where, for how long."""
        return (f"partition {day} of job {self.job.job_id} did not appear at {self.folder(day)} within "
                f"{self.job.source.wait_timeout_minutes:g} minutes (no *.{self.format} files). Check the upstream "
                "export; once the files are there, clear this task to retry.")

    def empty(self, day: dt.date, files: int) -> str:
        """What held no rows, for an empty partition's message."""
        return f"the {files} file(s) in {self.folder(day)} hold no rows"

    def plan(self, ctx: Any) -> tuple[RunSpec, list[RunSpec]]:
        """Split the partition into shards by file (never more shards than files); find duplicate keys across
        all of them first, into the plan state, so each shard's validation sees duplicates that span shards."""
        job, spec = self.job, ctx.spec
        files = self.files(parse_date(spec.partition_date))
        shards = max(1, min(job.source.shards, len(files)))
        root = replace(spec, shards=shards, shard=None)
        markers = (missing_markers(ctx.card["inputs"], job.entity_key, job.source.null_values,
                                   job.source.null_values_by_column)[job.entity_key]
                   if self.format == "csv" else None)  # the key read as each shard's ingest reads it
        duplicates = partition_keys(files, self.format, job.entity_key, job.source.rename,
                                    key_type=entity_key_type(job, ctx.card), markers=markers)
        root.run_dir.mkdir(parents=True, exist_ok=True)
        root.write_json(steps.PLAN_STATE, {"duplicate_keys": duplicates, "files": [str(f) for f in files]})
        ctx.log.info("planned %d shard(s) over %d file(s); %d duplicate key(s) across the partition", shards,
                     len(files), len(duplicates))
        return root, [root.for_shard(i) for i in range(shards)]

    def read(self, ctx: Any, wanted: Wanted, write: Any) -> IngestResult:
        """The run's files (a shard's: those the plan gave it, so a retried shard reads the same ones) into
        ``write`` in the contract's schema."""
        src, spec = self.job.source, ctx.spec
        markers = missing_markers(wanted.inputs, wanted.key, src.null_values, src.null_values_by_column)
        files = files_of_shard(spec) if spec.reads_plan else self.files(wanted.partition_date)
        return ingest_files(files, fmt=self.format, inputs=wanted.inputs, key=wanted.key,
                            partition_date=wanted.partition_date, batch_rows=ctx.batch_rows, write=write,
                            rename=src.rename, blank_is_missing=wanted.blank_is_missing, key_type=wanted.key_type,
                            markers=markers)


log = logging.getLogger(__name__)


CSV_BLOCK = 1 << 24  # bytes of a CSV file parsed at once (a record batch of it)


# a byte string that is valid UTF-8 (RE2 reads a binary column byte by byte, as Latin-1): the
# same sequences Python's strict decoder accepts (no overlong forms, no surrogates, <= U+10FFFF)
VALID_UTF8 = (r"^(?:[\x00-\x7F]|[\xC2-\xDF][\x80-\xBF]|\xE0[\xA0-\xBF][\x80-\xBF]|[\xE1-\xEC\xEE\xEF][\x80-\xBF]{2}"
              r"|\xED[\x80-\x9F][\x80-\xBF]|\xF0[\x90-\xBF][\x80-\xBF]{2}|[\xF1-\xF3][\x80-\xBF]{3}"
              r"|\xF4[\x80-\x8F][\x80-\xBF]{2})*$")


def csv_convert(inputs: list[dict[str, Any]] | None = None,
                rename: Mapping[str, str] | None = None) -> pacsv.ConvertOptions:
    """CSV options of a file's first look (its column names): the contract's columns (under their own name or the
    export's, see ``rename``) as bytes, neither guessed nor checked for UTF-8 (``_file_batches`` reads the rows)."""
    names = {c["name"] for c in inputs or []}
    raw = {name: pa.binary() for name in names}
    raw.update({original: pa.binary() for original, new in (rename or {}).items() if new in names})
    return pacsv.ConvertOptions(column_types=raw, null_values=[""], strings_can_be_null=True)


@dataclass(frozen=True)
class _FileColumns:
    """One file's schema under the job's names (``source.rename`` applied) and the export's names it reads."""

    schema: pa.Schema  # every column, renamed
    source: list[str]  # the export's names of the wanted columns, in their order


def csv_stream(path: Path) -> pa.NativeFile:
    """A CSV file's bytes, decompressed when its name says so (``.gz``, ``.bz2``, ``.lz4``, ``.zst``, any case)."""
    return pa.input_stream(str(path), compression=compression(path))


def _csv_is_empty(path: Path) -> bool:
    """A file with no bytes once decompressed: no rows, not a broken file."""
    if compression(path) is None:
        return path.stat().st_size == 0
    with csv_stream(path) as stream:
        return not stream.read(1)


def _file_batches(path: Path, fmt: str, batch_rows: int, columns: _FileColumns, wanted: list[str]) -> Iterator[pa.Table]:
    """The file's wanted columns, batch by batch, under the job's names.

    A CSV file's wanted columns are all read as text, nothing null (the key too: ``conform`` applies the
    missing-value markers and converts), so a value far into the file that does not match the type Arrow
    guessed from the first block is an error naming the column and the value, never a failed read;
    other columns are not parsed. Text that is not valid UTF-8 comes with its ``__badtext__`` column
    (``_repaired``): only a batch that holds such text pays for it.
    """
    source = dict(zip(columns.source, wanted, strict=True))
    if fmt == "parquet":
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=columns.source):
            yield _repaired(pa.Table.from_batches([batch]).select(columns.source).rename_columns(wanted))
        return
    done = 0
    try:  # the usual case: every value is UTF-8, checked by Arrow's own conversion
        for batch in _csv_batches(path, columns.source, pa.string()):
            yield pa.Table.from_batches([batch]).select(columns.source).rename_columns(wanted)
            done += batch.num_rows
        return
    except pa.ArrowInvalid as exc:
        if "invalid UTF8" not in str(exc):
            raise
    log.warning("%s holds text that is not valid UTF-8: reading it as bytes from data row %d on (such rows are "
                "quarantined as invalid_utf8)", path, done + 1)
    for batch in _csv_batches(path, columns.source, pa.binary()):  # the same rows again, as bytes
        if done >= batch.num_rows:
            done -= batch.num_rows
            continue
        table = pa.Table.from_batches([batch.slice(done)]).select(columns.source)
        done = 0
        yield _repaired(table.rename_columns([source[n] for n in table.column_names]))


def _csv_batches(path: Path, names: list[str], as_type: pa.DataType) -> pacsv.CSVStreamingReader:
    """A CSV file's columns ``names`` as ``as_type`` (text or bytes), nothing read as null."""
    options = pacsv.ConvertOptions(column_types=dict.fromkeys(names, as_type), include_columns=names, null_values=[],
                                   strings_can_be_null=False, quoted_strings_can_be_null=False)
    return pacsv.open_csv(csv_stream(path), read_options=pacsv.ReadOptions(block_size=CSV_BLOCK),
                          convert_options=options)


def _repaired(table: pa.Table) -> pa.Table:
    """``table`` with every text column valid UTF-8: a value whose bytes are not is replaced by its text with
    U+FFFD for the bad bytes, and a ``__badtext__<column>`` column (binary) holds its original bytes.

    A text column is checked by Arrow's validation (about 5 ms per million values); only a column that
    fails it is searched row by row (an RE2 match of valid UTF-8 over its bytes) and only its bad values
    are decoded in Python.
    """
    for name in table.column_names:
        column = table.column(name)
        kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            pass  # a CSV column read as bytes
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            try:
                column.validate(full=True)
                continue
            except pa.ArrowInvalid:
                pass
        else:
            continue
        if pa.types.is_dictionary(column.type):
            column = pc.cast(column, kind)
        raw = pc.cast(column, pa.large_binary() if pa.types.is_large_string(kind) or pa.types.is_large_binary(kind)
                      else pa.binary()).combine_chunks()
        bad = pc.invert(pc.fill_null(pc.match_substring_regex(raw, VALID_UTF8), True))
        if not pc.any(bad).as_py():
            table = table.set_column(table.schema.get_field_index(name), name, pc.cast(raw, pa.string()))
            continue
        originals = pc.filter(raw, bad)
        fixed = pa.array([b.decode("utf-8", "replace") for b in originals.to_pylist()], pa.string())
        text = pc.replace_with_mask(pc.cast(pc.if_else(bad, pa.scalar(None, raw.type), raw), pa.string()), bad, fixed)
        table = table.set_column(table.schema.get_field_index(name), name, text)
        table = table.append_column(BADTEXT_PREFIX + name, pc.cast(pc.if_else(bad, raw, pa.scalar(None, raw.type)),
                                                                   pa.binary()))
    return table


def _file_schema(path: Path, fmt: str, convert: pacsv.ConvertOptions, partition_date: dt.date) -> pa.Schema | None:
    """The file's schema; None for an empty CSV (a file with no rows, not a broken one).

    Raises:
        InputError: a CSV file whose first bytes say it is UTF-16 or UTF-32 text, naming the encoding.
    """
    if fmt == "parquet":
        return pq.read_schema(path)
    if _csv_is_empty(path):
        return None
    with csv_stream(path) as stream:
        encoding = text_encoding(stream.read(4096))
    if encoding:
        raise InputError(
            f"partition {partition_date}: file {path} is not UTF-8 text: it looks like {encoding}. Re-export it as "
            f"UTF-8 (or convert it, e.g. iconv -f {encoding.split()[0]} -t UTF-8), then re-run the partition."
        )
    return pacsv.open_csv(csv_stream(path), convert_options=convert).schema


BOMS = ((b"\x00\x00\xfe\xff", "UTF-32BE"), (b"\xff\xfe\x00\x00", "UTF-32LE"), (b"\xfe\xff", "UTF-16BE"),
        (b"\xff\xfe", "UTF-16LE"))


def text_encoding(head: bytes) -> str | None:
    """The encoding the first bytes of a text file look like when a UTF-8 reader cannot read it (UTF-16 or
    UTF-32, by its byte-order mark or its NUL bytes: the high byte of every ASCII character), else None."""
    for bom, name in BOMS:
        if head.startswith(bom):
            return f"{name} (its first bytes are the byte-order mark {bom.hex(' ').upper()})"
    if len(head) < 8 or head.count(0) < len(head) // 4:
        return None
    even, odd = head[0::2].count(0) / len(head[0::2]), head[1::2].count(0) / len(head[1::2])
    if even > 0.9 and odd > 0.9:
        return None  # NUL bytes throughout: not text of any encoding (validation reports NULs in values)
    if odd > 0.3 and even < 0.1:
        return "UTF-16LE (no byte-order mark; every other byte is NUL)"
    if even > 0.3 and odd < 0.1:
        return "UTF-16BE (no byte-order mark; every other byte is NUL)"
    if even > 0.3 and odd > 0.3:
        return "UTF-32 (no byte-order mark; three bytes of four are NUL)"
    return None


RAGGED_RE = re.compile(r"Expected (\d+) columns, got (\d+)")


def _ragged_line(path: Path) -> int | None:
    """The row number (the header is row 1; a quoted value over several lines is one row) of a CSV file's first
    row with a wrong number of fields (Arrow knows it only when reading on one thread: the file is read again
    that way, on this error path only)."""
    found: list[int | None] = []

    def first(row: Any) -> str:
        found.append(row.number)
        return "error"

    try:
        for _ in pacsv.open_csv(csv_stream(path), read_options=pacsv.ReadOptions(use_threads=False, block_size=CSV_BLOCK),
                                parse_options=pacsv.ParseOptions(invalid_row_handler=first),
                                convert_options=pacsv.ConvertOptions(column_types={}, include_columns=[])):
            pass
    except (pa.ArrowException, OSError):
        pass
    return found[0] if found else None


def _unreadable(path: Path, fmt: str, partition_date: dt.date, exc: Exception) -> InputError:
    """The error for a file Arrow cannot read: a ragged row, text that is not UTF-8, or truncated / not valid
    ``fmt``. Arrow's message is shown without the file's bytes (no NUL, nothing of a row's values)."""
    detail = str(exc) if not isinstance(exc, UnicodeError) else type(exc).__name__
    ragged = RAGGED_RE.search(detail) if fmt == "csv" else None
    if ragged:
        expected, got = ragged.groups()
        line = _ragged_line(path)
        where = f"data row {line - 1} (row {line} of the file, counting the header)" if line else "a row"
        return InputError(
            f"partition {partition_date}: file {path}: {where} has {got} field(s) where the header has {expected}: "
            "a separator too many or too few (an unquoted comma or quote inside a value, or a line cut short). Fix "
            "that row, or re-export the file with its text values quoted, then re-run the partition."
        )
    detail = printable(detail)[:300]
    if "invalid UTF8" in detail:
        return InputError(
            f"partition {partition_date}: file {path} is not UTF-8 text ({detail}). Re-export it as UTF-8 "
            "(or convert it, e.g. iconv -f latin1 -t utf-8), then re-run the partition."
        )
    return InputError(
        f"partition {partition_date}: cannot read file {path}: {detail}. The file is truncated or not valid "
        f"{fmt}{' (or not compressed as its name says)' if compression(path) else ''}; re-export it upstream, "
        "then re-run the partition."
    )


def ingest_files(
    files: list[Path],
    *,
    fmt: str,
    inputs: list[dict[str, Any]],
    key: str,
    partition_date: dt.date,
    batch_rows: int,
    write: Any,
    rename: Mapping[str, str] | None = None,
    blank_is_missing: Collection[str] = (),
    key_type: str | None = None,
    markers: Mapping[str, Collection[str]] | None = None,
) -> IngestResult:
    """Stream ``files`` into ``write(table)`` in the contract schema; return counts.

    Args:
        write: called with each pyarrow Table in contract schema (e.g. StagedWriter.write).
        rename: the job file's ``source.rename``: {export's column name: name used by the job and
            the contract}, applied to every file's columns before any check.
        blank_is_missing: numeric columns in which blank text is a missing value, not an invalid
            number (``blank_policy``).
        key_type: ``string`` or ``integer`` (``entity_key_type``); None: as a Parquet file declares it, text for CSV.
        markers: CSV: the texts that mean missing in each column (``missing_markers``; default: every column
            pandas' defaults and the card's ``missing_values``).
    """
    check_contract_names(inputs)
    rename = dict(rename or {})
    wanted = [key] + [c["name"] for c in inputs]
    convert = csv_convert(inputs, rename)
    columns = _file_schemas(files, fmt, convert, key, wanted, rename, partition_date)
    schemas = {path: c.schema for path, c in columns.items()}
    if fmt == "parquet":  # CSV has no schema: its per-file type inference is not a schema change
        same_types_in_every_file(schemas, wanted, partition_date)
    if fmt != "csv":
        markers = {}
    elif markers is None:
        markers = missing_markers(inputs, key)
    arrow_key = key_type_of(schemas.values(), key, partition_date, key_type, text_source=fmt == "csv")
    reading = Reading(ingested_schema(fmt, inputs, key, arrow_key, blank_is_missing, markers), set(blank_is_missing), {n: pa.array(t, pa.string()) for n, t in markers.items() if t}, key_type)
    ignored = sorted({n for s in schemas.values() for n in s.names} - set(wanted))
    if ignored:
        log.info("partition %s: ignoring columns not in the contract: %s", partition_date, ignored)
    rows = 0
    keys: list[pa.ChunkedArray] = []
    for path, file_columns in columns.items():
        try:
            rows += conform_all(_file_batches(path, fmt, batch_rows, file_columns, wanted), reading,
                                 f"file {path}", partition_date, write, keys)
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:  # undecodable bytes in Arrow's message
            raise _unreadable(path, fmt, partition_date, exc) from None
    duplicates = _duplicates(keys)
    log.info("partition %s: ingested %d rows from %d files", partition_date, rows, len(files))
    return IngestResult(rows, [str(f) for f in files], duplicates, ignored, reading.target)


def _file_schemas(files: list[Path], fmt: str, convert: pacsv.ConvertOptions, key: str, wanted: list[str],
                  rename: dict[str, str], partition_date: dt.date) -> dict[Path, _FileColumns]:
    """Each readable file's columns; an unreadable file, a repeated or a missing column fails the partition."""
    out: dict[Path, _FileColumns] = {}
    for path in files:
        try:
            schema = _file_schema(path, fmt, convert, partition_date)
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
            raise _unreadable(path, fmt, partition_date, exc) from None
        if schema is None:
            log.warning("partition %s: %s is empty (no bytes): no rows from it", partition_date, path)
            continue
        try:
            schema.names  # noqa: B018 - decoded here: a header that is not UTF-8 fails naming the file
        except UnicodeDecodeError:
            raise InputError(
                f"partition {partition_date}: file {path}: its header row (the column names) is not UTF-8 text. "
                "Re-export the file as UTF-8 (or convert it, e.g. iconv -f latin1 -t utf-8), then re-run the "
                "partition."
            ) from None
        repeated = sorted({n for n in schema.names if schema.names.count(n) > 1})
        if repeated:
            raise InputError(
                f"partition {partition_date}: file {path} has column(s) {', '.join(repeated)} more than once; "
                "fix the export so that every column name is unique."
            )
        renamed = renamed_schema(schema, rename, f"file {path}", partition_date)
        check_wanted(renamed, schema.names, rename, key, wanted, f"file {path}", partition_date)
        source = {new: old for old, new in zip(schema.names, renamed.names, strict=True)}
        out[path] = _FileColumns(renamed, [source[name] for name in wanted])
    return out


def partition_keys(files: list[Path], fmt: str, key: str, rename: Mapping[str, str] | None = None,
                   key_type: str | None = None, markers: Collection[str] | None = None) -> list[Any]:
    """Duplicate entity keys across a partition's files, reading only the key column.

    ``rename`` is the job file's ``source.rename``: a file's key column may have the export's
    name. The key is read as ingest reads it: ``key_type`` (``entity_key_type``), else as a Parquet
    file declares it, else (CSV) as text, the CSV ``markers`` of missing keys (default: pandas')
    null. Files that cannot be read here are skipped: the shard that reads them reports why.
    """
    names = [original for original, new in (rename or {}).items() if new == key] + [key]
    texts = pa.array(DEFAULT_NULL_VALUES if markers is None else list(markers), pa.string())
    columns = []
    for path in files:
        try:
            if fmt == "parquet":
                have = pq.read_schema(path).names
            elif not _csv_is_empty(path):
                have = pacsv.open_csv(csv_stream(path)).schema.names
            else:
                continue
            column = next((n for n in names if n in have), None)
            if column is None:
                continue
            if fmt == "parquet":
                values = _repaired(pq.read_table(path, columns=[column])).column(column)
            else:
                try:
                    values = pa.concat_tables(pa.Table.from_batches([b]) for b in _csv_batches(path, [column],
                                                                                                 pa.string()))
                except pa.ArrowInvalid as exc:
                    if "invalid UTF8" not in str(exc):
                        raise
                    values = _repaired(pa.concat_tables(pa.Table.from_batches([b]) for b in _csv_batches(
                        path, [column], pa.binary())))
                values = null_markers(values.column(column), texts)[0]
            if key_type:
                values = pc.cast(pc.utf8_trim_whitespace(values) if type_family(values.type) == "text"
                                 and key_type == "integer" else values, KEY_TYPES[key_type])
        except (pa.ArrowException, OSError, KeyError, UnicodeDecodeError):
            continue
        columns.append(values)
    return _duplicates(columns)
