"""Read JSON records (an online request's rows, as ``json.loads`` gives them) into the ingested schema a job's
batch source stages, so that the same suite, transformation and estimator see the same values.

A record is read as the job's source reads a row of its export: ``source.rename`` maps the export's names
onto the job's (a record may use either; both at once is refused, as a file would be), every value becomes
the text a CSV cell would hold (a JSON string as it is; a number, ``true``/``false``, a list or an object as
its JSON text), and ``pipeline.kernels.conform`` converts that text exactly as ingest does: a CSV job's
missing-value markers, the blank policy, a text that is not a usable number kept in ``__raw__<column>``
(``invalid_number:<column>``), text that cannot be UTF-8 (a lone surrogate) replaced and its bytes kept in
``__badtext__<column>`` (``invalid_utf8:<column>``), a NUL left for ``nul_in_text:<column>``. A JSON ``null``
and a column the record does not have are both a missing value. Fields the contract does not read are
ignored, as a file's other columns are.

The entity key is read as ``entity_key_type`` says; else as the source reads it (a CSV job: text); else (a
Parquet or SQL job, whose type a file declares) as the JSON gives it: integers as integers, any other key
(or a mix) as text. A request that cannot be read as rows (not a list of objects, a key or a ``bool`` value
that cannot be read as its type, where a batch run would fail the whole partition) raises RequestError naming
the row and the column, never a value.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.errors import InputError, RequestError
from pipeline.kernels.columns import BADTEXT_PREFIX, BLANK_PREFIX, RAW_PREFIX
from pipeline.kernels.conform import (
    Reading,
    blank_policy,
    conform,
    contract_schema,
    ingested_schema,
    missing_markers,
    text_columns,
)
from pipeline.keys import KEY_TYPES, entity_key_type

if TYPE_CHECKING:
    from pipeline.config import JobConfig

WHERE = "the online request"
NO_DATE = dt.date(1970, 1, 1)  # conform names a partition in its messages; a request has none (never shown)
PREFIXES = ("", RAW_PREFIX, BLANK_PREFIX, BADTEXT_PREFIX)  # a column's own fields in the ingested schema


@dataclass(frozen=True)
class RecordReading:
    """How a job reads records: its contract, key, source format and the source's reading rules.

    Args:
        inputs: the model's input contract (its card's ``inputs``).
        fmt: ``csv``, ``parquet`` or ``sql``: the job's source (a query for a sql source).
        rename: the job file's ``source.rename`` {export's name: job's name}.
        markers: a CSV job's missing-value markers by column (``conform.missing_markers``); ignored otherwise.
        blank: the numeric columns in which blank text is missing (``conform.blank_policy``).
        key_type: ``entity_key_type`` (``string``, ``integer``) or None.
    """

    inputs: list[dict[str, Any]]
    key: str
    fmt: str
    rename: Mapping[str, str] = field(default_factory=dict)
    markers: Mapping[str, Collection[str]] = field(default_factory=dict)
    blank: Collection[str] = ()
    key_type: str | None = None
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # per key type: schema, reading

    @property
    def columns(self) -> list[str]:
        """The columns read: the entity key, then the contract's."""
        return [self.key] + [c["name"] for c in self.inputs]

    def arrow_key_type(self, keys: list[Any]) -> pa.DataType:
        """The key's Arrow type: declared, else text for a CSV job, else integers if every key given is one."""
        if self.key_type:
            return KEY_TYPES[self.key_type]
        if self.fmt == "csv":
            return pa.string()
        given = [k for k in keys if k is not None]
        if given and all(isinstance(k, int) and not isinstance(k, bool) for k in given):
            return pa.int64()
        return pa.string()

    def schema(self, key_type: pa.DataType) -> pa.Schema:
        """The ingested schema for this key type (built once per key type, see ``_schema``)."""
        return self._memo("schema", key_type, self._schema)

    def _memo(self, what: str, key_type: pa.DataType, build: Any) -> Any:
        memo = (what, str(key_type))
        if memo not in self.memo:
            self.memo[memo] = build(key_type)
        return self.memo[memo]

    def _schema(self, key_type: pa.DataType) -> pa.Schema:
        """The ingested schema of the job's source for this key type (a sql job: with the ``__badtext__`` columns
        a Parquet file would have, since a request's text, unlike a query's, may not be UTF-8)."""
        if self.fmt == "sql":
            return contract_schema(self.inputs, self.key, key_type, self.blank,
                                   badtext=text_columns("parquet", self.inputs, self.key, key_type))
        markers = {n: tuple(t) for n, t in self.markers.items()} if self.fmt == "csv" else {}
        return ingested_schema(self.fmt, self.inputs, self.key, key_type, self.blank, markers)

    def reading(self, key_type: pa.DataType) -> Reading:
        """conform's Reading for this key type (built once per key type)."""
        return self._memo("reading", key_type, self._reading)

    def _reading(self, key_type: pa.DataType) -> Reading:
        markers = self.markers if self.fmt == "csv" else {}
        return Reading(self.schema(key_type), set(self.blank),
                       {n: pa.array(list(t), pa.string()) for n, t in markers.items() if t},
                       self.key_type)

    def read(self, records: Any) -> pa.Table:
        """The records as ingested rows, in their order (see the module's docstring).

        Raises:
            RequestError: not a list of objects, a rename clash, a key or bool value that its type cannot read.
        """
        rows = [self.renamed(i, r) for i, r in enumerate(check_records(records))]
        key_type = self.arrow_key_type([r.get(self.key) for r in rows])
        target = self.schema(key_type)
        arrays: dict[str, pa.Array] = {}
        for name in self.columns:
            text, bad = text_column([text_of(r.get(name)) for r in rows])
            arrays[name] = text
            if BADTEXT_PREFIX + name in target.names and bad is not None:
                arrays[BADTEXT_PREFIX + name] = bad
            to = target.field(name).type
            if to in (pa.int64(), pa.bool_()):
                self._check_cast(name, text, to)
        table = pa.table(arrays)
        try:
            return self._conformed(table, key_type)
        except InputError:
            raise RequestError(f"the request's rows cannot be read as the contract's columns "
                               f"({', '.join(self.columns)}); check their types") from None

    def _conformed(self, table: pa.Table, key_type: pa.DataType) -> pa.Table:
        """``conform`` of the table, the columns that ingest reads alike conformed at once: each group's columns
        stacked into one column, conformed, and cut back (conform reads every value on its own, so each one
        comes out as it would alone; a few rows cost a few compute calls, not a few per column)."""
        reading, rows = self.reading(key_type), table.num_rows
        target = reading.target
        out: dict[str, Any] = {}
        for names in self._memo("groups", key_type, self._groups):
            own = [p + names[0] for p in PREFIXES if p + names[0] in target.names]
            part = Reading(pa.schema([target.field(n) for n in own]), reading.blank, reading.markers,
                           reading.key_type)
            done = conform(_stacked(table, names), part, WHERE, NO_DATE, None)
            for j, name in enumerate(names):
                for prefix in PREFIXES:
                    if prefix + names[0] in done.column_names:
                        out[prefix + name] = done.column(prefix + names[0]).slice(j * rows, rows)
        return pa.Table.from_arrays([out[f.name] for f in target], schema=target)

    def _groups(self, key_type: pa.DataType) -> list[list[str]]:
        """The columns conform reads alike (the same type, markers, blank policy and fields), the key alone."""
        target = self.schema(key_type)
        groups: dict[Any, list[str]] = {}
        for name in self.columns:
            alike = (name == self.key and name, str(target.field(name).type),
                     tuple(p for p in PREFIXES if p + name in target.names),
                     tuple(self.markers.get(name) or ()) if self.fmt == "csv" else (), name in self.blank)
            groups.setdefault(alike, []).append(name)
        return list(groups.values())

    def renamed(self, index: int, record: dict[str, Any]) -> dict[str, Any]:
        """A record under the job's names (``source.rename``); an export's name and its new name both given: refused."""
        if not self.rename:
            return record
        out: dict[str, Any] = {}
        for name, value in record.items():
            new = self.rename.get(name, name)
            if new in out:
                old = [n for n in record if self.rename.get(n, n) == new]
                raise RequestError(
                    f"row {index}: fields {', '.join(map(repr, old))} are both read as column {new!r} (the job "
                    f"file's source.rename maps {', '.join(repr(o) for o in old if o != new)} onto it): send one of them")
            out[new] = value
        return out

    def _check_cast(self, name: str, text: pa.Array, to: pa.DataType) -> None:
        """A key read as an integer, or a bool column: the first row whose text its type cannot read (once a CSV
        job's markers are missing values, as conform reads them) is refused."""
        markers = list(self.markers.get(name) or ()) if self.fmt == "csv" else []
        if markers:
            text = pc.if_else(pc.fill_null(pc.is_in(text, value_set=pa.array(markers, pa.string())), False),
                              pa.scalar(None, pa.string()), text)
        source = pc.utf8_trim_whitespace(text) if to == pa.int64() else text
        try:
            pc.cast(source, to)
            return
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        for i in range(len(source)):
            try:
                pc.cast(source.slice(i, 1), to)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                what = (f"the entity key {name!r}, read as an integer (entity_key_type: {self.key_type})"
                        if name == self.key else f"column {name!r}, a bool in the model's input contract "
                        "(true/false, 1/0)")
                raise RequestError(f"row {i}: the value of {what} cannot be read as one. Send it in that "
                                   "form.") from None


def _stacked(table: pa.Table, names: list[str]) -> pa.Table:
    """The columns ``names`` (and their ``__badtext__`` bytes) one under the other, as the first's."""
    if len(names) == 1:
        return table
    rows = table.num_rows
    columns = {names[0]: pa.concat_arrays([table.column(n).combine_chunks() for n in names])}
    bad = [BADTEXT_PREFIX + n for n in names]
    if any(b in table.column_names for b in bad):
        columns[bad[0]] = pa.concat_arrays([table.column(b).combine_chunks() if b in table.column_names
                                            else pa.nulls(rows, pa.binary()) for b in bad])
    return pa.table(columns)


def check_records(records: Any) -> list[dict[str, Any]]:
    """The request's rows: a list of JSON objects, else RequestError naming what was sent instead."""
    if not isinstance(records, list):
        raise RequestError(f"the rows must be a list of JSON objects (one per row); got {kind_of(records)}")
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise RequestError(f"row {i} must be a JSON object (the row's columns by name); got {kind_of(record)}")
        if not all(isinstance(k, str) for k in record):
            raise RequestError(f"row {i} has a field name that is not text")
    return records


def kind_of(value: Any) -> str:
    """A JSON value's kind for a message, never the value itself."""
    kinds = {dict: "an object", list: "a list", str: "text", bool: "true/false", int: "a number",
             float: "a number", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def text_of(value: Any) -> str | None:
    """A JSON value as a CSV cell would hold it: text as it is, anything else as its JSON text; null stays null."""
    if value is None or isinstance(value, str):
        return value
    kind = type(value)
    if kind is int or (kind is float and math.isfinite(value)):  # json.dumps' own text of them, without its cost
        return kind.__repr__(value)
    return json.dumps(value, ensure_ascii=False, allow_nan=True)


def text_column(texts: list[str | None]) -> tuple[pa.Array, pa.Array | None]:
    """(the texts as an Arrow string column, the bytes of those that are not valid UTF-8 or None when all are).

    A text that cannot be UTF-8 (a lone surrogate, as JSON's ``\\udXXX`` escapes allow) is kept as its bytes
    (``raw_bytes``) and replaced in the column by their decoding with U+FFFD, as ingest does with a
    file's bytes."""
    bad: list[bytes | None] = [None] * len(texts)
    clean = list(texts)
    for i, text in enumerate(texts):
        if text is None:
            continue
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raw = raw_bytes(text)
            bad[i], clean[i] = raw, raw.decode("utf-8", "replace")
    column = pa.array(clean, pa.string())
    if all(b is None for b in bad):
        return column, None
    return column, pa.array(bad, pa.binary())



def raw_bytes(text: str) -> bytes:
    """The bytes a text with lone surrogates stands for: ``\\udc80``-``\\udcff`` are the bytes Python's
    ``surrogateescape`` read (as ingest's ``original_values`` gives a file's back); any other, its UTF-8 form."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def reading_for(job: JobConfig, inputs: list[dict[str, Any]], card: Mapping[str, Any]) -> RecordReading:
    """How ``job``'s source reads rows of the contract ``inputs`` (the card's, for its ``entity_key_type``)."""
    src = job.source
    fmt = src.format if src.kind == "files" else "sql"
    markers = (missing_markers(inputs, job.entity_key, src.null_values, src.null_values_by_column)
               if fmt == "csv" else {})
    return RecordReading(inputs, job.entity_key, fmt, dict(src.rename), markers,
                         blank_policy(inputs, job.validation.blank_is_missing), entity_key_type(job, card))
