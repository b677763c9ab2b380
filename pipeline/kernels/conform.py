"""Read tables into the model's input contract, in memory: what ingest does to every batch a source returns.

Partition-level problems (a missing column, a type that cannot be read as the contract's type, a
column whose type differs between the partition's files) raise InputError naming the partition,
the file (or the query) and the column. Rows are never dropped here: row-level problems are
validation's job. A numeric value that is not a usable number (a blank or unparseable string, NaN,
an infinity) becomes null and its original text is kept in a ``__raw__<column>`` column, which
validation's suite expects to be null: the row is then quarantined with the reason
``invalid_number:<column>`` and its original value.

Column names are the user's: the job file's ``source.rename`` maps an export's names onto the
job's (the entity key) and the contract's before any check, and an error about a missing column
says whether the job file's ``entity_key`` or the model's input contract asked for it. CSV files:
every column read is text, and a text that means a missing value (``missing_markers``: by default
pandas' ``read_csv`` list; the job file's ``source.null_values`` / ``null_values_by_column`` and the
card's per-input ``missing_values`` change it) becomes null, its text kept in ``__blank__<column>``
for the quarantine. Whitespace-only text in a numeric column is an invalid number, unless the column
is in the blank policy (``blank_policy``): then it is missing too, its text in ``__blank__<column>``.

The entity key is read as the job file's or the card's ``entity_key_type`` says (``string``:
``00123`` stays ``00123``; ``integer``), else as a Parquet file or a query declares it, else (CSV)
as text: never a guess from the values.

No paths are opened here: the sources (``pipeline.sources``) read, this module converts.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config import RESERVED_INPUT_NAMES, check_column_name
from pipeline.errors import ConfigError, InputError
from pipeline.kernels.columns import (
    ARROW_TYPES,
    BADTEXT_PREFIX,
    BLANK_PREFIX,
    DEFAULT_NULL_VALUES,
    RAW_PREFIX,
    numeric_columns,
)
from pipeline.keys import KEY_TYPES


@dataclass(frozen=True)
class Wanted:
    """What ingest asks a source for: the contract's columns under the job's names, for one partition."""

    inputs: list[dict[str, Any]]  # the model's input contract (a cascade: every model's)
    key: str  # the job file's entity_key
    partition_date: dt.date
    blank_is_missing: Collection[str] = ()  # blank_policy
    key_type: str | None = None  # entity_key_type: string, integer or None


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
        hints = {c: h for c in unknown if (h := close_to(c, names))}
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


def type_family(t: pa.DataType) -> str:
    """The kind of an Arrow type a check compares: ``number``, ``text``, ``null``, else the type's name."""
    if pa.types.is_null(t):
        return "null"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_dictionary(t):
        return type_family(t.value_type)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "text"
    return str(t)


@dataclass
class TextNumbers:
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


def printable(text: str) -> str:
    """``text`` for a message: a character that is not printable (NUL, a control character, a lone surrogate)
    written as its escape (``\\x00``, ``\\udce9``), so a file's bytes never reach a log or the ledger raw."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


@dataclass
class IngestResult:
    """What a source's read staged: rows, files read, duplicate keys, columns left out, the staged schema."""

    rows: int
    files: list[str]
    duplicate_keys: list[Any]
    ignored_columns: list[str]
    schema: pa.Schema


@dataclass(frozen=True)
class Reading:
    """How one ingest turns read tables into the contract's schema."""

    target: pa.Schema
    blank: set[str]  # blank_policy: whitespace-only text is missing in these numeric columns
    markers: dict[str, pa.Array]  # CSV: column -> the texts that mean missing in it
    key_type: str | None  # entity_key_type, for the messages


def conform_all(tables: Iterator[pa.Table], reading: Reading, where: str, partition_date: dt.date, write: Any,
                 keys: list[pa.ChunkedArray]) -> int:
    """Every table of one file (or query) in the contract schema to ``write``; its key column to ``keys``."""
    evidence, rows = TextNumbers({}, {}, {}), 0
    for table in tables:
        table = conform(table, reading, where, partition_date, evidence)
        write(table)
        rows += table.num_rows
        evidence.rows += table.num_rows
        keys.append(table.column(reading.target.names[0]))
    evidence.check(where, partition_date)
    return rows


def renamed_schema(schema: pa.Schema, rename: dict[str, str], where: Any, partition_date: dt.date) -> pa.Schema:
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


def check_wanted(renamed: pa.Schema, original: list[str], rename: dict[str, str], key: str, wanted: list[str],
                  where: str, partition_date: dt.date) -> None:
    """The entity key (a job-file name) and the contract's columns are in the file, each error naming its source."""
    present = set(renamed.names)
    found = printable(", ".join(f"{old} (renamed {new})" if old != new else old
                                for old, new in zip(original, renamed.names, strict=True)))
    problems = []
    if key not in present:
        hint = close_to(key, original)
        problems.append(
            f"{where} has no column {key!r} named by the job file's entity_key {key!r}"
            f"{f' (did you mean {hint!r}?)' if hint else ''} (found: {found}). Set entity_key to the "
            f"export's column name (any spelling, e.g. {hint or 'customerID'!r}), or map it with source.rename: "
            f"{{{hint or '<export name>'!r}: {key!r}}} in the job file."
        )
    missing = [c for c in wanted[1:] if c not in present]
    if missing:
        hints = {c: h for c in missing if (h := close_to(c, original))}
        did_you_mean = (" Similar names in the file: " + ", ".join(f"{h!r} for {c!r}" for c, h in hints.items())
                        + "; source.rename in the job file can map them.") if hints else ""
        problems.append(
            f"{where} has no column(s) {', '.join(missing)} required by the model's input contract "
            f"(found: {found}). Fix the export, map its names with source.rename in the job file, or register "
            f"a model whose contract matches.{did_you_mean}"
        )
    if problems:
        raise InputError(f"partition {partition_date}: " + " Also, ".join(problems))


def close_to(name: str, names: list[str]) -> str | None:
    """The file column that ``name`` most likely means: the same letters and digits, else a close spelling."""
    def squash(s: str) -> str:
        return "".join(ch for ch in s.casefold() if ch.isalnum())

    same = [n for n in names if squash(n) == squash(name)]
    if same:
        return same[0]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
    return close[0] if close else None


def same_types_in_every_file(schemas: dict[Path, pa.Schema], wanted: list[str], partition_date: dt.date) -> None:
    """A contract column must have one kind of type (number, text, ...) in all of a partition's files."""
    for name in wanted:
        seen: dict[str, Path] = {}
        for path, schema in schemas.items():
            family = type_family(schema.field(name).type)
            if family != "null":
                seen.setdefault(family, path)
        if len(seen) > 1:
            detail = "; ".join(f"{fam} in {path}" for fam, path in seen.items())
            raise InputError(
                f"partition {partition_date}: column {name!r} has a different type in different files of the "
                f"partition ({detail}). The files were exported with different schemas; re-export them "
                "with one schema, then re-run the partition."
            )


def key_type_of(schemas: Iterable[pa.Schema], key: str, partition_date: dt.date, declared: str | None = None, *,
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


def conform(table: pa.Table, reading: Reading, where: str, partition_date: dt.date,
             evidence: TextNumbers | None) -> pa.Table:
    """One read table in the contract's schema (``reading.target``): markers null, numbers parsed, the key cast.

    ``evidence``: the file's ``TextNumbers`` (None: rows judged on their own, as an online request's are)."""
    target, key = reading.target, reading.target.names[0]
    names = set(target.names)
    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    for field in target:
        name = field.name
        if name.startswith((RAW_PREFIX, BLANK_PREFIX, BADTEXT_PREFIX)):
            continue
        column = table.column(name)
        marked = None
        if name in reading.markers and type_family(column.type) == "text":
            column, marked = null_markers(column, reading.markers[name])
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
                column = _cast(column, field.type, name, where, partition_date, evidence.rows if evidence else 0,
                               key_type=reading.key_type if name == key else "")
            columns[name] = column
        if BLANK_PREFIX + name in names:
            columns[BLANK_PREFIX + name] = pa.nulls(table.num_rows, pa.string()) if marked is None else marked
    return pa.Table.from_arrays([columns[f.name] for f in target], schema=target)


def null_markers(column: pa.ChunkedArray | pa.Array, texts: pa.Array) -> tuple[Any, Any]:
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
    text = type_family(column.type) == "text"
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
            blank_is_missing: bool = False, evidence: TextNumbers | None = None) -> tuple[Any, Any, Any]:
    """(float64 values, original text of the values that are not usable numbers, original text of blanks).

    Blank text (empty or whitespace only) is not a usable number unless ``blank_is_missing``:
    then it is a missing value (null, no ``__raw__`` text) and its text is the third array.
    """
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    nulls = pa.nulls(len(column), pa.string())
    if type_family(column.type) == "text":
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
