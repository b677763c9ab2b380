"""Ingest: read a partition's files batch by batch into the contract's schema.

Partition-level problems (an unreadable file, a missing column, a type that cannot be read
as the contract's type, a column whose type differs between the partition's files) raise
InputError naming the partition, file and column. Rows are never dropped here: row-level
problems are validation's job. A numeric value that is not a usable number (a blank or
unparseable string, NaN, an infinity) becomes null and its original text is kept in a
``__raw__<column>`` column, which validation's suite expects to be null: the row is then
quarantined with the reason ``invalid_number:<column>`` and its original value.

Column names are the user's: the job file's ``source.rename`` maps an export's names onto the
job's (the entity key) and the contract's before any check, and an error about a missing
column says whether the job file's ``entity_key`` or the model's input contract asked for it.
CSV files: every column read (the key, the contract's) is read as text and a text that means a
missing value (``missing_markers``: by default pandas' ``read_csv`` list, ``""``, ``NA``, ``null``,
``NaN``...; the job file's ``source.null_values`` / ``null_values_by_column`` and the card's
per-input ``missing_values`` change it) becomes null, its text kept in ``__blank__<column>`` for
the quarantine, so a notebook's ``pd.read_csv`` and the run read one file alike. Whitespace-only
text in a numeric column is an invalid number, unless the column is in the blank policy
(``blank_policy``: the card's ``blank_is_missing`` or the job file's
``validation.blank_is_missing``): then it is missing too, its text in ``__blank__<column>``.

The entity key is read as the job file's or the card's ``entity_key_type`` says (``string``:
``00123`` stays ``00123``; ``integer``), else as a Parquet file or a query declares it, else
(CSV) as text: never a guess from the values.

Text whose bytes are not valid UTF-8 (CSV, Parquet) does not fail the file: the column holds the
text with the bad bytes replaced (U+FFFD) and ``__badtext__<column>`` the original bytes
(validation quarantines the row). A file that is UTF-16 or UTF-32 fails naming its encoding; a
row with the wrong number of fields fails naming its line.
"""

from __future__ import annotations

import datetime as dt
import difflib
import itertools
import logging
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipeline import steps
from pipeline.config import RESERVED_INPUT_NAMES, check_column_name
from pipeline.context import counted
from pipeline.errors import ConfigError, InputError
from pipeline.kernels.columns import (
    ARROW_TYPES,
    BADTEXT_PREFIX,
    BLANK_PREFIX,
    RAW_PREFIX,
    numeric_columns,
)
from pipeline.keys import KEY_TYPES, entity_key_type
from pipeline.keys import duplicates as _duplicates
from pipeline.partition import (
    compression,
    files_of_shard,
    parse_date,
    partition_dir,
    partition_files,
)
from pipeline.routes import ingest_inputs
from pipeline.staging import StagedWriter

if TYPE_CHECKING:
    from pipeline.context import RunContext

log = logging.getLogger(__name__)

# CSV: the texts that mean a missing value by default: pandas' read_csv default na_values
# (pandas._libs.parsers.STR_NA_VALUES; tests/unit/test_ingest_text.py keeps them equal), so that
# the notebook that trained a model and the nightly run read a file the same way. The columns
# read are text, parsed here, so a value far into a file never breaks Arrow's type guess from
# the first block.
DEFAULT_NULL_VALUES = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                       "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")
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


NUMBER_RE = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


def contract_schema(inputs: list[dict[str, Any]], key: str, key_type: pa.DataType,
                    blank_is_missing: Collection[str] = (), *, missing: Collection[str] = (),
                    badtext: Collection[str] = ()) -> pa.Schema:
    """Arrow schema of ingested rows: the key, the contract's columns, then ``__raw__``, ``__blank__`` and
    ``__badtext__`` columns.

    Args:
        blank_is_missing: numeric columns where whitespace-only text is missing (``blank_policy``).
        missing: columns where a marker text may be read as missing (``marked_columns``).
        badtext: columns that may hold text that is not valid UTF-8 (``text_columns``).
    """
    fields = [pa.field(key, key_type)] + [pa.field(c["name"], ARROW_TYPES[c["type"]]) for c in inputs]
    numeric = numeric_columns(inputs)
    names = [key] + [c["name"] for c in inputs]
    raw = [pa.field(RAW_PREFIX + n, pa.string()) for n in numeric]
    blank = [pa.field(BLANK_PREFIX + n, pa.string()) for n in names
             if n in missing or (n in numeric and n in blank_is_missing)]
    bad = [pa.field(BADTEXT_PREFIX + n, pa.binary()) for n in names if n in badtext]
    return pa.schema(fields + raw + blank + bad)


def missing_markers(inputs: list[dict[str, Any]], key: str, null_values: Collection[str] | None = None,
                    by_column: Mapping[str, Collection[str]] | None = None) -> dict[str, tuple[str, ...]]:
    """The texts that mean a missing value in each column read from a CSV file (the key, the contract's).

    For each column, the first that says: the job file's ``source.null_values_by_column`` (an empty
    list: every text is a value), the card input's ``missing_values`` (recorded at registration when
    the training frame holds a default marker as a real value), the job file's ``source.null_values``,
    else pandas' ``read_csv`` default (``DEFAULT_NULL_VALUES``).

    Raises:
        ConfigError: ``by_column`` names a column the job does not read.
    """
    names = [key] + [c["name"] for c in inputs]
    by_column = dict(by_column or {})
    unknown = [c for c in by_column if c not in names]
    if unknown:
        hints = {c: h for c in unknown if (h := _close_to(c, names))}
        did_you_mean = "".join(f" (did you mean {h!r} for {c!r}?)" for c, h in hints.items())
        raise ConfigError(
            f"the job file's source.null_values_by_column names column(s) {', '.join(map(repr, unknown))} that the "
            f"job does not read{did_you_mean}: its keys are the entity key or columns of the model's input "
            f"contract, by the job's names ({', '.join(names)}). Fix or remove the entries."
        )
    default = tuple(DEFAULT_NULL_VALUES if null_values is None else null_values)
    card = {c["name"]: c.get("missing_values") for c in inputs}
    out = {}
    for name in names:
        texts = by_column[name] if name in by_column else card[name] if card.get(name) is not None else default
        out[name] = tuple(dict.fromkeys(texts))
    return out


def marked_columns(markers: Mapping[str, Collection[str]]) -> list[str]:
    """The columns whose markers hold a text other than the empty one: they keep a marker's text (``__blank__``)."""
    return [name for name, texts in markers.items() if any(texts)]


def text_columns(fmt: str, inputs: list[dict[str, Any]], key: str, key_type: pa.DataType) -> list[str]:
    """The columns that may hold text that is not valid UTF-8, with a ``__badtext__`` column: every column of a CSV
    file (all are read as text), the key (when text) and the category columns of a Parquet file; none of a query."""
    if fmt == "csv":
        return [key] + [c["name"] for c in inputs]
    if fmt == "parquet":
        return ([key] if key_type == pa.string() else []) + [c["name"] for c in inputs
                                                             if ARROW_TYPES[c["type"]] == pa.string()]
    return []


def ingested_schema(fmt: str, inputs: list[dict[str, Any]], key: str, key_type: pa.DataType,
                    blank_is_missing: Collection[str] = (),
                    markers: Mapping[str, Collection[str]] | None = None) -> pa.Schema:
    """The schema ingest stages for a source of ``fmt`` (``csv``, ``parquet``, or ``sql`` for a query): the
    contract's, with the ``__blank__`` columns its markers (CSV; default ``missing_markers``) and blank policy
    need and the ``__badtext__`` columns of its text columns."""
    if fmt == "csv" and markers is None:
        markers = missing_markers(inputs, key)
    return contract_schema(inputs, key, key_type, blank_is_missing,
                           missing=marked_columns(markers or {}) if fmt == "csv" else (),
                           badtext=text_columns(fmt, inputs, key, key_type))


def check_contract_names(inputs: list[dict[str, Any]]) -> None:
    """Every column name of the model's input contract can be read, staged and quoted (``check_column_name``)."""
    for column in inputs:
        check_column_name(column["name"], "the model's input contract column",
                          "Register the model with another name for that column; the export's column can "
                          "keep its name (source.rename in the job file maps it)", reserved=RESERVED_INPUT_NAMES)


def blank_policy(inputs: list[dict[str, Any]], configured: bool | Collection[str] = False) -> list[str]:
    """The numeric columns in which blank text (empty or whitespace only) is a missing value.

    A column is in it when its contract entry says ``"blank_is_missing": true`` or the job file's
    ``validation.blank_is_missing`` lists it (``true``: every numeric column of the contract).

    Raises:
        ConfigError: the job file lists a column that is not a numeric column of the contract.
    """
    numeric = numeric_columns(inputs)
    chosen = {c["name"] for c in inputs if c.get("blank_is_missing") and c["name"] in numeric}
    if configured is True:
        chosen.update(numeric)
    elif configured and not isinstance(configured, bool):
        types = {c["name"]: c["type"] for c in inputs}
        wrong = [n for n in configured if n not in numeric]
        if wrong:
            detail = ", ".join(f"{n!r} ({types[n]})" if n in types else f"{n!r} (not in the contract)" for n in wrong)
            raise ConfigError(
                f"the job file's validation.blank_is_missing names column(s) that are not numeric in the model's "
                f"input contract: {detail}. Only float and int columns can read blank text as missing "
                f"(numeric columns: {', '.join(numeric) or 'none'}); remove them from the list, or use true "
                "for every numeric column."
            )
        chosen.update(configured)
    return [n for n in numeric if n in chosen]


def _family(t: pa.DataType) -> str:
    if pa.types.is_null(t):
        return "null"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_dictionary(t):
        return _family(t.value_type)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "text"
    return str(t)


@dataclass
class _TextNumbers:
    """One file's evidence that a numeric column turned into text: values that parse, text that does not.

    Judged once the whole file is read, so that the verdict never depends on how its rows were
    batched; blank or whitespace text counts as an invalid number (quarantined), not as evidence.
    """

    parsed: dict[str, int]
    unparsed: dict[str, int]
    samples: dict[str, list[Any]]
    rows: int = 0

    def add(self, name: str, parsed: int, unparsed: int, sample: list[Any]) -> None:
        self.parsed[name] = self.parsed.get(name, 0) + parsed
        self.unparsed[name] = self.unparsed.get(name, 0) + unparsed
        self.samples[name] = (self.samples.get(name, []) + [v for v in sample if v not in self.samples.get(name, [])])[:3]

    def check(self, where: str, partition_date: dt.date) -> None:
        """Fail when a numeric column holds text and not one value of the whole file (or query) parses."""
        for name, unparsed in self.unparsed.items():
            if unparsed and not self.parsed.get(name):
                raise InputError(
                    f"partition {partition_date}: {where}, column {name!r} holds text that cannot be read as "
                    f"numbers (e.g. {', '.join(repr(v) for v in self.samples[name])}): not one value of its "
                    f"{self.rows} rows parses. The column's content or type changed upstream; fix the export."
                )


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

    A CSV file's wanted columns are all read as text, nothing null (the key too: ``_conform`` applies the
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


def printable(text: str) -> str:
    """``text`` for a message: a character that is not printable (NUL, a control character, a lone surrogate)
    written as its escape (``\\x00``, ``\\udce9``), so a file's bytes never reach a log or the ledger raw."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


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


@dataclass
class IngestResult:
    rows: int
    files: list[str]
    duplicate_keys: list[Any]
    ignored_columns: list[str]
    schema: pa.Schema


def ingest(
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
        _same_types_in_every_file(schemas, wanted, partition_date)
    if fmt != "csv":
        markers = {}
    elif markers is None:
        markers = missing_markers(inputs, key)
    arrow_key = _key_type(schemas.values(), key, partition_date, key_type, text_source=fmt == "csv")
    reading = _Reading(ingested_schema(fmt, inputs, key, arrow_key, blank_is_missing, markers), set(blank_is_missing), {n: pa.array(t, pa.string()) for n, t in markers.items() if t}, key_type)
    ignored = sorted({n for s in schemas.values() for n in s.names} - set(wanted))
    if ignored:
        log.info("partition %s: ignoring columns not in the contract: %s", partition_date, ignored)
    rows = 0
    keys: list[pa.ChunkedArray] = []
    for path, file_columns in columns.items():
        try:
            rows += _conform_all(_file_batches(path, fmt, batch_rows, file_columns, wanted), reading,
                                 f"file {path}", partition_date, write, keys)
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:  # undecodable bytes in Arrow's message
            raise _unreadable(path, fmt, partition_date, exc) from None
    duplicates = _duplicates(keys)
    log.info("partition %s: ingested %d rows from %d files", partition_date, rows, len(files))
    return IngestResult(rows, [str(f) for f in files], duplicates, ignored, reading.target)


@dataclass(frozen=True)
class _Reading:
    """How one ingest turns read tables into the contract's schema."""

    target: pa.Schema
    blank: set[str]  # blank_policy: whitespace-only text is missing in these numeric columns
    markers: dict[str, pa.Array]  # CSV: column -> the texts that mean missing in it
    key_type: str | None  # entity_key_type, for the messages


def _conform_all(tables: Iterator[pa.Table], reading: _Reading, where: str, partition_date: dt.date, write: Any,
                 keys: list[pa.ChunkedArray]) -> int:
    """Every table of one file (or query) in the contract schema to ``write``; its key column to ``keys``."""
    evidence, rows = _TextNumbers({}, {}, {}), 0
    for table in tables:
        table = _conform(table, reading, where, partition_date, evidence)
        write(table)
        rows += table.num_rows
        evidence.rows += table.num_rows
        keys.append(table.column(reading.target.names[0]))
    evidence.check(where, partition_date)
    return rows


def ingest_query(
    tables: Iterator[pa.Table],
    where: str,
    *,
    inputs: list[dict[str, Any]],
    key: str,
    partition_date: dt.date,
    write: Any,
    rename: Mapping[str, str] | None = None,
    blank_is_missing: Collection[str] = (),
    key_type: str | None = None,
) -> IngestResult:
    """A query's rows (``tables``, see ``pipeline.sqlsource.batches``) into ``write`` in the contract schema.

    The same checks and conversions as a file's, naming the query (``where``) where a file's name
    would be; the key column's type is ``key_type`` (``entity_key_type``), else the first batch's.
    """
    check_contract_names(inputs)
    rename = dict(rename or {})
    wanted = [key] + [c["name"] for c in inputs]
    first = next(tables)
    repeated = sorted({n for n in first.schema.names if first.schema.names.count(n) > 1})
    if repeated:
        raise InputError(f"partition {partition_date}: {where} returns column(s) {', '.join(repeated)} more than "
                         "once; give every column of the query a name of its own (AS ...).")
    renamed = _renamed(first.schema, rename, where, partition_date)
    _check_wanted(renamed, first.schema.names, rename, key, wanted, where, partition_date)
    target = ingested_schema("sql", inputs, key, _key_type([renamed], key, partition_date, key_type), blank_is_missing)
    reading = _Reading(target, set(blank_is_missing), {}, key_type)
    ignored = sorted(set(renamed.names) - set(wanted))
    if ignored:
        log.info("partition %s: ignoring columns not in the contract: %s", partition_date, ignored)

    def renamed_tables() -> Iterator[pa.Table]:
        for table in itertools.chain([first], tables):
            yield table.rename_columns(renamed.names).select(wanted)

    keys: list[pa.ChunkedArray] = []
    try:
        rows = _conform_all(renamed_tables(), reading, where, partition_date, write, keys)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:  # a batch of other types
        raise InputError(f"partition {partition_date}: {where} returned a batch that does not convert to the "
                         f"contract's types ({str(exc).splitlines()[0]}): cast its columns to one type in the "
                         "query, then re-run the partition.") from None
    log.info("partition %s: ingested %d rows from %s", partition_date, rows, where)
    return IngestResult(rows, [], _duplicates(keys), ignored, target)


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
        renamed = _renamed(schema, rename, f"file {path}", partition_date)
        _check_wanted(renamed, schema.names, rename, key, wanted, f"file {path}", partition_date)
        source = {new: old for old, new in zip(schema.names, renamed.names, strict=True)}
        out[path] = _FileColumns(renamed, [source[name] for name in wanted])
    return out


def _renamed(schema: pa.Schema, rename: dict[str, str], where: Any, partition_date: dt.date) -> pa.Schema:
    """The file's schema under the job's names; a rename onto a name the file already has fails."""
    if not rename:
        return schema
    names = [rename.get(n, n) for n in schema.names]
    for name in sorted({n for n in names if names.count(n) > 1}):
        clash = [old for old, new in zip(schema.names, names, strict=True) if new == name]
        raise InputError(
            f"partition {partition_date}: {where}: source.rename maps column(s) "
            f"{', '.join(repr(c) for c in clash if c != name)} onto {name!r}, a name the file already has "
            f"(columns {', '.join(repr(c) for c in clash)} would all be {name!r}). Remove the entry from "
            "source.rename in the job file, or drop one of the columns from the export."
        )
    return pa.schema([field.with_name(new) for field, new in zip(schema, names, strict=True)],
                     metadata=schema.metadata)


def _check_wanted(renamed: pa.Schema, original: list[str], rename: dict[str, str], key: str, wanted: list[str],
                  where: str, partition_date: dt.date) -> None:
    """The entity key (a job-file name) and the contract's columns are in the file, each error naming its source."""
    present = set(renamed.names)
    found = printable(", ".join(f"{old} (renamed {new})" if old != new else old
                                for old, new in zip(original, renamed.names, strict=True)))
    problems = []
    if key not in present:
        hint = _close_to(key, original)
        problems.append(
            f"{where} has no column {key!r} named by the job file's entity_key {key!r}"
            f"{f' (did you mean {hint!r}?)' if hint else ''} (found: {found}). Set entity_key to the "
            f"export's column name (any spelling, e.g. {hint or 'customerID'!r}), or map it with source.rename: "
            f"{{{hint or '<export name>'!r}: {key!r}}} in the job file."
        )
    missing = [c for c in wanted[1:] if c not in present]
    if missing:
        hints = {c: h for c in missing if (h := _close_to(c, original))}
        did_you_mean = (" Similar names in the file: " + ", ".join(f"{h!r} for {c!r}" for c, h in hints.items())
                        + "; source.rename in the job file can map them.") if hints else ""
        problems.append(
            f"{where} has no column(s) {', '.join(missing)} required by the model's input contract "
            f"(found: {found}). Fix the export, map its names with source.rename in the job file, or register "
            f"a model whose contract matches.{did_you_mean}"
        )
    if problems:
        raise InputError(f"partition {partition_date}: " + " Also, ".join(problems))


def _close_to(name: str, names: list[str]) -> str | None:
    """The file column that ``name`` most likely means: the same letters and digits, else a close spelling."""
    def squash(s: str) -> str:
        return "".join(ch for ch in s.casefold() if ch.isalnum())

    same = [n for n in names if squash(n) == squash(name)]
    if same:
        return same[0]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
    return close[0] if close else None


def _same_types_in_every_file(schemas: dict[Path, pa.Schema], wanted: list[str], partition_date: dt.date) -> None:
    """A contract column must have one kind of type (number, text, ...) in all of a partition's files."""
    for name in wanted:
        seen: dict[str, Path] = {}
        for path, schema in schemas.items():
            family = _family(schema.field(name).type)
            if family != "null":
                seen.setdefault(family, path)
        if len(seen) > 1:
            detail = "; ".join(f"{fam} in {path}" for fam, path in seen.items())
            raise InputError(
                f"partition {partition_date}: column {name!r} has a different type in different files of the "
                f"partition ({detail}). The files were exported with different schemas; re-export them "
                "with one schema, then re-run the partition."
            )


def _key_type(schemas: Iterable[pa.Schema], key: str, partition_date: dt.date, declared: str | None = None, *,
              text_source: bool = False) -> pa.DataType:
    """The entity key's type: ``declared`` (``entity_key_type``), else text for a CSV file (``text_source``: its
    types would be a guess), else the type every file or batch declares (integers or text)."""
    if declared:
        return KEY_TYPES[declared]
    if text_source:
        return pa.string()
    types = {s.field(key).type for s in schemas} - {pa.null()}  # all-null keys: validation's job
    if not types:
        return pa.int64()
    if all(pa.types.is_integer(t) for t in types):
        return pa.int64()
    if all(pa.types.is_string(t) or pa.types.is_large_string(t) for t in types):
        return pa.string()
    raise InputError(
        f"partition {partition_date}: entity key {key!r} must be an integer or a string in every "
        f"file (or every row of the query); found {', '.join(sorted(map(str, types)))}. Cast it to one type "
        "upstream, or set entity_key_type (string or integer) in the job file."
    )


def _conform(table: pa.Table, reading: _Reading, where: str, partition_date: dt.date,
             evidence: _TextNumbers) -> pa.Table:
    target, key = reading.target, reading.target.names[0]
    names = set(target.names)
    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    for field in target:
        name = field.name
        if name.startswith((RAW_PREFIX, BLANK_PREFIX, BADTEXT_PREFIX)):
            continue
        column = table.column(name)
        marked = None
        if name in reading.markers and _family(column.type) == "text":
            column, marked = _missing(column, reading.markers[name])
        if BADTEXT_PREFIX + name in names:
            columns[BADTEXT_PREFIX + name] = (table.column(BADTEXT_PREFIX + name) if BADTEXT_PREFIX + name
                                              in table.column_names else pa.nulls(table.num_rows, pa.binary()))
        if field.type == pa.float64():
            values, raw, blank_text = _number(column, name, where, partition_date, name in reading.blank, evidence)
            columns[name], columns[RAW_PREFIX + name] = values, raw
            if name in reading.blank:
                marked = blank_text if marked is None else pc.coalesce(marked, blank_text)
        else:
            if column.type != field.type:
                column = _cast(column, field.type, name, where, partition_date, evidence.rows,
                               key_type=reading.key_type if name == key else "")
            columns[name] = column
        if BLANK_PREFIX + name in names:
            columns[BLANK_PREFIX + name] = pa.nulls(table.num_rows, pa.string()) if marked is None else marked
    return pa.Table.from_arrays([columns[f.name] for f in target], schema=target)


def _missing(column: pa.ChunkedArray | pa.Array, texts: pa.Array) -> tuple[Any, Any]:
    """(``column`` with its missing-value markers null, their original text or None when there is none).

    An empty field's text is not kept: it reads back as null, as it always did."""
    hit = pc.fill_null(pc.is_in(column, value_set=texts), False)
    if not pc.any(hit).as_py():
        return column, None
    kept = pc.and_(hit, pc.not_equal(column, ""))
    values = pc.if_else(hit, pa.scalar(None, column.type), column)
    if not pc.any(kept).as_py():  # only empty fields (the usual gaps): nothing to keep, no column to build
        return values, None
    return values, pc.cast(pc.if_else(kept, column, pa.scalar(None, column.type)), pa.string())


def _cast(column: pa.ChunkedArray, to: pa.DataType, name: str, where: str, partition_date: dt.date,
          offset: int, *, key_type: str | None = "") -> pa.ChunkedArray:
    """A column as the schema's type; a value that cannot be converted fails naming its file, column, row and text.

    Text is trimmed before it becomes an integer, as Arrow's CSV reader does when it guesses one.
    ``key_type``: "" for a contract column; for the entity key, its ``entity_key_type`` (None: not set).
    """
    is_key = key_type != ""
    text = _family(column.type) == "text"
    source = pc.utf8_trim_whitespace(column) if text and pa.types.is_integer(to) else column
    try:
        return pc.cast(source, to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        if not text:
            raise InputError(
                f"partition {partition_date}: {where}, column {name!r} has type {column.type} that cannot be "
                f"read as {to} ({exc}). Fix the export's column type, then re-run the partition."
            ) from None
    row = _first_uncastable(source, to)
    value = repr(column[row].as_py())
    value = value if len(value) <= 80 else value[:77] + "..."
    role, kind = ("the entity key", "an integer") if is_key else ("of the model's input contract", f"a {to} value")
    why = (f" (entity_key_type: {key_type}, from the job file or the model card; set entity_key_type: string in the "
           "job file if the keys are text)") if key_type else " (as the other files or batches declare it)" if is_key \
        else ""
    raise InputError(
        f"partition {partition_date}: {where}, column {name!r} ({role}) holds {value} in data row "
        f"{offset + row + 1}, which cannot be read as {kind} like the column's other values{why}. Fix the "
        "value in the export, or re-export the column with one type in every row, then re-run the partition."
    )


def _first_uncastable(column: pa.ChunkedArray | pa.Array, to: pa.DataType) -> int:
    """Index of the first value of ``column`` that does not cast to ``to`` (a binary search of casts)."""
    lo, hi = 0, len(column)  # column[lo:hi] holds a value that fails
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            pc.cast(column.slice(lo, mid - lo), to)
            lo = mid
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            hi = mid
    return lo


def _number(column: pa.ChunkedArray, name: str, where: str, partition_date: dt.date,
            blank_is_missing: bool = False, evidence: _TextNumbers | None = None) -> tuple[Any, Any, Any]:
    """(float64 values, original text of the values that are not usable numbers, original text of blanks).

    Blank text (empty or whitespace only) is not a usable number unless ``blank_is_missing``:
    then it is a missing value (null, no ``__raw__`` text) and its text is the third array.
    """
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    nulls = pa.nulls(len(column), pa.string())
    if _family(column.type) == "text":
        original = pc.cast(column, pa.string())
        text = pc.utf8_trim_whitespace(original)
        ok = pc.match_substring_regex(text, NUMBER_RE)
        bad = pc.and_(pc.is_valid(column), pc.invert(pc.fill_null(ok, False)))
        blank = None
        if blank_is_missing:
            blank = pc.fill_null(pc.equal(text, ""), False)
            bad = pc.and_(bad, pc.invert(blank))
        if evidence is not None:  # text that is not blank and does not parse: the file decides at its end
            words = pc.and_(bad, pc.invert(pc.fill_null(pc.equal(text, ""), False)))
            evidence.add(name, int(pc.sum(pc.fill_null(ok, False)).as_py() or 0), int(pc.sum(words).as_py() or 0),
                         pc.unique(pc.filter(column, words))[:3].to_pylist())
        values = pc.cast(pc.if_else(ok, text, pa.scalar(None, pa.string())), pa.float64())
        huge = pc.fill_null(pc.is_inf(values), False)  # '1e400' parses to infinity: not a usable number
        if pc.any(huge).as_py():
            bad = pc.or_(bad, huge)
            values = pc.if_else(huge, pa.scalar(None, pa.float64()), values)
        blank_text = nulls if blank is None else pc.if_else(blank, original, nulls)
        return values, pc.if_else(bad, original, nulls), blank_text
    try:
        # integers beyond 2**53 lose precision as float64 (the contract's type): accepted, as
        # float64 features always are
        values = pc.cast(column, pa.float64(), safe=False) if pa.types.is_integer(column.type) else pc.cast(
            column, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InputError(
            f"partition {partition_date}: {where}, column {name!r} has type {column.type} that cannot be "
            f"read as float64 ({exc}). Fix the export's column type."
        ) from None
    bad = pc.fill_null(pc.or_(pc.is_nan(values), pc.is_inf(values)), False)
    if not pc.any(bad).as_py():
        return values, nulls, nulls
    return (pc.if_else(bad, pa.scalar(None, pa.float64()), values), pc.if_else(bad, pc.cast(values, pa.string()), nulls),
            nulls)


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
                values = _missing(values.column(column), texts)[0]
            if key_type:
                values = pc.cast(pc.utf8_trim_whitespace(values) if _family(values.type) == "text"
                                 and key_type == "integer" else values, KEY_TYPES[key_type])
        except (pa.ArrowException, OSError, KeyError, UnicodeDecodeError):
            continue
        columns.append(values)
    return _duplicates(columns)


# -- the stage ---------------------------------------------------------------------------
def ingest_partition(ctx: RunContext, counts: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ingest stage: the run's files (a shard's share of them) into ``ingested.arrow``; rows_in."""
    job, spec = ctx.job, ctx.spec
    day = parse_date(spec.partition_date)
    inputs = ctx.card["inputs"]
    if spec.cascade:  # every column a model of the cascade needs (each model's validation checks its own)
        inputs = ingest_inputs(ctx)
    blank = blank_policy(inputs, job.validation.blank_is_missing)
    key_type = entity_key_type(job, ctx.card)
    files: list[Path] = []
    with StagedWriter(ctx.path(steps.INGESTED)) as writer:
        if job.source.kind == "sql":
            from pipeline import sqlsource

            result = ingest_query(sqlsource.read(ctx), sqlsource.describe(job), inputs=inputs, key=job.entity_key,
                                  partition_date=day, write=writer.write, rename=job.source.rename,
                                  blank_is_missing=blank, key_type=key_type)
        else:
            markers = missing_markers(inputs, job.entity_key, job.source.null_values, job.source.null_values_by_column)
            # a shard reads the files the plan saw, so a retried shard reads the same ones
            files = files_of_shard(spec) if spec.shard is not None else partition_files(
                job.source_root(), job.source.layout, job.source.format, day, job.source.ignore)
            result = ingest(files, fmt=job.source.format, inputs=inputs, key=job.entity_key, partition_date=day,
                            batch_rows=ctx.batch_rows, write=writer.write, rename=job.source.rename,
                            blank_is_missing=blank, key_type=key_type, markers=markers)
        writer.schema = writer.schema or result.schema  # an empty partition still has its schema
    spec.write_json(steps.INGEST_STATE, {"files": result.files, "duplicate_keys": result.duplicate_keys,
                                         "ignored_columns": result.ignored_columns})
    if spec.shard is None:  # a sharded run checks the whole partition in combine
        counts = counted(counts, rows_in=result.rows)
        check_not_empty(ctx, result.rows, len(files), counts)
    return counted(counts, rows_in=result.rows)


def check_not_empty(ctx: RunContext, rows: int, files: int, counts: dict[str, Any] | None = None) -> None:
    """An empty partition fails (``validation.on_empty: fail``, the default) or goes on with a warning."""
    if rows:
        return
    job, day = ctx.job, parse_date(ctx.spec.partition_date)
    if job.source.kind == "sql":
        from pipeline.sqlsource import describe

        holds = f"{describe(job)} returned no rows"
    else:
        holds = f"the {files} file(s) in {partition_dir(job.source_root(), job.source.layout, day)} hold no rows"
    if job.validation.on_empty == "fail":
        raise InputError(
            f"partition {day}: {holds}. Nothing was published. "
            "If the upstream export is incomplete, re-export it and re-run the partition; if an empty "
            "day is normal for this job, set validation.on_empty: succeed in the job file.",
            counts=counts or {"rows_in": 0},
        )
    ctx.log.warning("partition %s is empty (%s): continuing with zero rows (validation.on_empty: succeed)", day,
                    holds)


def original_values(row: dict[str, Any]) -> dict[str, Any]:
    """A staged row as it arrived: invalid numbers' text (``__raw__``), the text of values read as missing
    (``__blank__``) and text that was not valid UTF-8 (``__badtext__``: its bytes, decoded with
    ``errors="surrogateescape"`` so that ``.encode("utf-8", "surrogateescape")`` gives them back exactly) in
    their columns; the pipeline's own ``__`` columns dropped."""
    out = {k: v for k, v in row.items() if not k.startswith("__")}
    for prefix in (RAW_PREFIX, BLANK_PREFIX, BADTEXT_PREFIX):  # the original bytes win over a replaced text
        for name, text in row.items():
            if name.startswith(prefix) and text is not None:
                out[name[len(prefix):]] = text.decode("utf-8", "surrogateescape") if isinstance(text, bytes) else text
    return out

