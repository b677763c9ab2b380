"""Validation on rows in memory: a Great Expectations 1.x suite derived from a model's input contract, the
Arrow screen that narrows what GX must look at, and the split of batches into valid rows (with their flags)
and quarantined rows (with their reasons).

The suite decides both the report and the row-level split: every row flagged by a
row-level expectation (its ``unexpected_index_list``) goes to the quarantine with the
names of the expectations it failed, so the report and the quarantine always agree. No
paths, engines or ledger here: the validate stage (``pipeline.validate``) reads and writes the
staged files around these functions.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.errors import ConfigError
from pipeline.kernels.columns import BADTEXT_PREFIX, FLAGS, RAW_PREFIX, REASONS, numeric_columns

log = logging.getLogger(__name__)
NUL_REGEX = r"\x00"  # a NUL character, as Python's re (GX) reads it; the Arrow screen matches it literally


def load_gx() -> Any:
    """Import Great Expectations (seconds: done once, on first use), quiet and without analytics."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    # before the import: importing GX logs ~200 INFO lines ("Skipping registering function ...")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx

    return gx


def expectation(type_: str, reason: str, on_fail: str = "quarantine", **kwargs: Any) -> dict[str, Any]:
    """One check: a GX expectation, the reason code its failing rows get, and what happens to them."""
    return {"type": type_, "kwargs": kwargs, "reason": reason, "on_fail": on_fail}


def contract_expectations(
    inputs: list[dict[str, Any]], key: str, *, unknown_categories: str = "quarantine"
) -> list[dict[str, Any]]:
    """The expectations implied by an input contract (nulls, ranges, categories, usable numbers).

    Declared bounds (``min``/``max``) quarantine; the training data's bounds (``observed_min``/
    ``observed_max``) flag (``out_of_training_range:<col>``). An unknown category quarantines, unless
    the job says ``unknown_categories: flag`` or the card says the estimator handles it
    (``handles_unknown``).
    """
    out = [expectation("expect_column_values_to_not_be_null", f"not_null:{key}", column=key)]
    for column in inputs:
        name = column["name"]
        if not column.get("nullable", True):
            out.append(expectation("expect_column_values_to_not_be_null", f"not_null:{name}", column=name))
        numeric = column["type"] in ("float", "int")
        if numeric and (column.get("min") is not None or column.get("max") is not None):
            out.append(expectation("expect_column_values_to_be_between", f"be_between:{name}", column=name,
                                   min_value=column.get("min"), max_value=column.get("max")))
        observed = training_range(column) if numeric else None
        if observed is not None:
            out.append(expectation("expect_column_values_to_be_between", f"out_of_training_range:{name}", "flag",
                                   column=name, min_value=observed[0], max_value=observed[1]))
        if column["type"] == "category" and column.get("categories"):
            policy = "flag" if unknown_categories == "flag" or column.get("handles_unknown") else "quarantine"
            out.append(expectation("expect_column_values_to_be_in_set", f"unknown_category:{name}",
                                   policy, column=name, value_set=list(column["categories"])))
    for name in numeric_columns(inputs):  # blank or unparseable text, NaN, infinities (see ingest)
        out.append(expectation("expect_column_values_to_be_null", f"invalid_number:{name}",
                               column=RAW_PREFIX + name))
    return out


def training_range(column: dict[str, Any]) -> tuple[float | None, float | None] | None:
    """The training data's range of a numeric input, as far as it says more than the declared bounds
    (a side the declared bound already covers is dropped: such rows are quarantined anyway); None: nothing."""
    low, high = column.get("observed_min"), column.get("observed_max")
    declared_low, declared_high = column.get("min"), column.get("max")
    if low is not None and declared_low is not None and declared_low >= low:
        low = None
    if high is not None and declared_high is not None and declared_high <= high:
        high = None
    return None if low is None and high is None else (low, high)


def text_expectations(schema: pa.Schema) -> list[dict[str, Any]]:
    """Every text column of the staged file (contract, entity key, passthrough): bytes that were not UTF-8
    (``invalid_utf8:<col>``: ingest kept the original in ``__badtext__<col>``) and NUL characters
    (``nul_in_text:<col>``), which no database text column stores."""
    out = []
    for f in schema:
        if f.name.startswith("__"):
            continue
        if BADTEXT_PREFIX + f.name in schema.names:
            out.append(expectation("expect_column_values_to_be_null", f"invalid_utf8:{f.name}",
                                   column=BADTEXT_PREFIX + f.name))
        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
            out.append(expectation("expect_column_values_to_not_match_regex", f"nul_in_text:{f.name}",
                                   column=f.name, regex=NUL_REGEX))
    return out


def job_expectations(configured: list[Any]) -> list[dict[str, Any]]:
    """The job file's extra expectations, with reason codes such as ``be_between:age``."""
    out = []
    for exp in configured:
        kwargs = dict(exp.kwargs)
        target = kwargs.get("column") or "+".join(
            str(kwargs.get(k)) for k in ("column_A", "column_B") if kwargs.get(k)) or "+".join(
            kwargs.get("column_list") or [])
        kind = exp.type.removeprefix("expect_").removeprefix("column_values_to_")
        out.append(expectation(exp.type, f"{kind}:{target}", exp.on_fail, **kwargs))
    return out


def unique_reasons(expectations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give every check its own reason code (``be_between:age``, then ``be_between:age#2``)."""
    seen: dict[str, int] = {}
    out = []
    for exp in expectations:
        code = reason_of(exp)
        seen[code] = seen.get(code, 0) + 1
        out.append({**exp, "reason": code if seen[code] == 1 else f"{code}#{seen[code]}"})
    return out


def columns_of(exp: dict[str, Any]) -> list[str]:
    """The columns an expectation reads."""
    kw = exp["kwargs"]
    cols = [kw[k] for k in ("column", "column_A", "column_B") if kw.get(k)]
    return cols + list(kw.get("column_list") or [])


def reason_of(exp: dict[str, Any]) -> str:
    """Reason code of a row-level expectation, e.g. ``not_null:age``."""
    if exp.get("reason"):
        return str(exp["reason"])
    kind = exp["type"].removeprefix("expect_column_values_to_")
    return f"{kind}:{exp['kwargs'].get('column')}"


@dataclass
class BatchOutcome:
    """Which rows of a batch failed: positions to quarantine (with reasons) and 'flag' reasons."""

    rows: int
    bad: np.ndarray  # sorted row positions to quarantine
    reasons: list[str]  # for each of ``bad``: its reason codes, "; "-joined
    flags: np.ndarray | None  # per row: the 'flag' reasons ("; "-joined) or None; None when no row has any
    failures: dict[str, int] = field(default_factory=dict)

    def keep_mask(self) -> np.ndarray:
        mask = np.ones(self.rows, dtype=bool)
        mask[self.bad] = False
        return mask




class RowValidator:
    """Runs one expectation suite over successive batches of a partition."""

    def __init__(self, expectations: list[dict[str, Any]], name: str = "scoring") -> None:
        gx = load_gx()
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.expectations = expectations
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        asset = self.context.data_sources.add_pandas(f"{name}_source").add_dataframe_asset(f"{name}_rows")
        self.batch_definition = asset.add_batch_definition_whole_dataframe("batch")
        self.name = name
        self.suite = self._suite(name, expectations)  # every check built once: a bad one fails here
        self.order = {reason_of(e): i for i, e in enumerate(expectations)}
        self._subsuites: dict[tuple[str, ...], tuple[Any, list[str]]] = {}
        self.totals: dict[str, int] = {}
        self.samples: dict[str, list[Any]] = {}
        self.evaluated_rows = 0

    def _suite(self, name: str, expectations: list[dict[str, Any]]) -> Any:
        gx = load_gx()
        from great_expectations.expectations.registry import get_expectation_impl

        built, seen = [], set()
        for exp in expectations:
            same = (exp["type"], json.dumps(exp["kwargs"], sort_keys=True, default=str))
            if same in seen:  # a check twice (the contract's and the job file's): the first one's reason
                continue
            seen.add(same)
            try:
                impl = get_expectation_impl(exp["type"])
                built.append(impl(**exp["kwargs"], meta={"reason": reason_of(exp),
                                                        "on_fail": exp.get("on_fail", "quarantine")}))
            except Exception as exc:  # GX raises its own types for unknown names and bad arguments
                raise ConfigError(f"expectation {exp['type']} {exp['kwargs']} is not valid: "
                                  f"{type(exc).__name__}: {exc}") from None
        # given whole: add_expectation compares each new one with every one before it (quadratic)
        return gx.ExpectationSuite(name=f"{name}_suite", expectations=built)

    def check(self, batch: pa.RecordBatch | pa.Table, masks: list[np.ndarray | None] | None = None) -> BatchOutcome:
        """Validate one batch: which rows to quarantine (and why) and which to flag.

        Great Expectations decides every row; Arrow only narrows what it must look at
        (``candidates``: one vectorised pass per contract check finds the rows that may fail
        it). A check with no candidate row is not run on the batch; the checks with some are
        run by GX on their candidate rows alone; the checks Arrow cannot screen are run on the
        whole batch, ``BOOLEAN_ONLY`` first (cheap: no row lists), then ``COMPLETE`` for the
        failed ones. Each pass converts just its checks' columns to pandas, text as
        categoricals (GX filters the frame once per expectation: taking rows of a categorical
        moves small integer codes). A row's reasons are in the suite's order. ``masks``: the
        checks' ``candidates`` on this batch, when the caller has them already.
        """
        screened, unscreened = self._failing(batch, masks or self.candidates(batch))
        reasons: dict[int, list[str]] = {}
        flags: dict[int, list[str]] = {}
        failures: dict[str, int] = {}
        passes: list[tuple[tuple[str, ...], pa.RecordBatch | pa.Table, np.ndarray | None]] = []
        if screened:
            rows = np.flatnonzero(np.logical_or.reduce(list(screened.values())))
            passes.append((tuple(screened), batch.take(pa.array(rows)), rows))
        if unscreened:
            passes.append((tuple(unscreened), batch, None))
        for failed, part, positions in passes:
            suite, columns = self._suite_of(failed)
            result = self.batch_definition.get_batch(batch_parameters={"dataframe": _frame(part, columns)}).validate(
                suite, result_format={"result_format": "COMPLETE"})
            self._raise_on_exceptions(result)
            self._collect(result, positions, reasons, flags, failures)
        for codes in [*reasons.values(), *flags.values()]:
            codes.sort(key=self.order.__getitem__)
        for code, n in failures.items():
            self.totals[code] = self.totals.get(code, 0) + n
        self.evaluated_rows += batch.num_rows
        bad = sorted(reasons)
        flag_values = None
        if flags:
            flag_values = np.full(batch.num_rows, None, dtype=object)
            for i, codes in flags.items():
                flag_values[i] = "; ".join(codes)
        return BatchOutcome(batch.num_rows, np.asarray(bad, dtype=np.int64),
                            ["; ".join(reasons[i] + flags.get(i, [])) for i in bad], flag_values, failures)

    def candidates(self, batch: pa.RecordBatch | pa.Table) -> list[np.ndarray | None]:
        """Each check's candidate rows in the batch (``candidates``), in suite order."""
        names = set(batch.schema.names)  # once a batch, not once a check
        return [candidates(exp, batch, names) for exp in self.expectations]

    def _collect(self, result: Any, positions: np.ndarray | None, reasons: dict[int, list[str]],
                 flags: dict[int, list[str]], failures: dict[str, int]) -> None:
        """A COMPLETE pass's failing rows (at ``positions`` of the batch when GX saw only those) and samples."""
        for res in result.results:
            config = res.expectation_config
            meta = config.meta or {}
            if res.success:
                continue
            code = meta.get("reason") or reason_of({"type": config.type, "kwargs": dict(config.kwargs)})
            if "unexpected_index_list" not in res.result:
                raise ConfigError(f"expectation {config.type} {dict(config.kwargs)} failed without naming "
                                  "rows: only row-level expectations can split a partition")
            idx = [int(i) for i in res.result.get("unexpected_index_list") or []]
            failures[code] = failures.get(code, 0) + len(idx)
            sample = self.samples.setdefault(code, [])
            for value in (res.result.get("partial_unexpected_list") or [])[: 5 - len(sample)]:
                sample.append(value)
            target = flags if meta.get("on_fail") == "flag" else reasons
            for i in idx:
                target.setdefault(i if positions is None else int(positions[i]), []).append(code)

    def _failing(self, batch: pa.RecordBatch | pa.Table, masks: list[np.ndarray | None]
                 ) -> tuple[dict[str, np.ndarray], list[str]]:
        """The screened checks with candidate rows (reason -> candidate mask), and the unscreened checks GX's
        ``BOOLEAN_ONLY`` pass found failing; both in suite order."""
        screened, unscreened = {}, []
        for exp, mask in zip(self.expectations, masks, strict=True):
            if mask is None:
                unscreened.append(reason_of(exp))
            elif mask.any():
                screened[reason_of(exp)] = mask
        if unscreened:
            suite, columns = self._suite_of(tuple(unscreened))
            first = self.batch_definition.get_batch(batch_parameters={"dataframe": _frame(batch, columns)}).validate(
                suite, result_format={"result_format": "BOOLEAN_ONLY"})
            self._raise_on_exceptions(first)
            failed = {reason_of({"type": r.expectation_config.type, "kwargs": dict(r.expectation_config.kwargs),
                                 "reason": (r.expectation_config.meta or {}).get("reason")})
                      for r in first.results if not r.success}
            unscreened = [r for r in unscreened if r in failed]
        return screened, unscreened

    def _suite_of(self, failed: tuple[str, ...]) -> tuple[Any, list[str]]:
        """The sub-suite of the failed expectations (cached) and the columns they read."""
        if failed not in self._subsuites:
            chosen = [e for e in self.expectations if reason_of(e) in failed]
            columns = sorted({c for e in chosen for c in columns_of(e)})
            self._subsuites[failed] = (self._suite(f"{self.name}_{len(self._subsuites)}", chosen), columns)
        return self._subsuites[failed]

    @staticmethod
    def _raise_on_exceptions(result: Any) -> None:
        """An expectation that could not run is a configuration error, never a silent pass or fail."""
        for res in result.results:
            info = res.exception_info or {}
            # GX 1.x keeps metric errors nested by metric id; older shapes keep them at the top
            errors = [info] if info.get("raised_exception") else [
                v for v in info.values() if isinstance(v, dict) and v.get("raised_exception")]
            if errors:
                config = res.expectation_config
                raise ConfigError(
                    f"expectation {config.type} {dict(config.kwargs)} could not run on the partition's rows: "
                    f"{errors[0].get('exception_message')}. Fix the expectation in the job file "
                    "(validation.expectations) or the model's input contract."
                )

    def report(self) -> dict[str, Any]:
        """Summary of the whole partition: rows evaluated, failures and samples per check."""
        checks = []
        for exp in self.expectations:
            code = reason_of(exp)
            checks.append({"expectation": exp["type"], "kwargs": exp["kwargs"], "reason": code,
                           "on_fail": exp.get("on_fail", "quarantine"), "unexpected": self.totals.get(code, 0),
                           "sample": [str(v) for v in self.samples.get(code, [])]})
        return {
            "rows_evaluated": self.evaluated_rows,
            "checks": checks,
            "unexpected_counts": dict(sorted(self.totals.items())),
        }


# -- the Arrow screen ----------------------------------------------------------------------
_SCREENED = {  # expectation type -> the exact kwargs Arrow screens (any other kwarg: GX alone decides)
    "expect_column_values_to_not_be_null": {"column"},
    "expect_column_values_to_be_null": {"column"},
    "expect_column_values_to_be_between": {"column", "min_value", "max_value"},
    "expect_column_values_to_be_in_set": {"column", "value_set"},
    "expect_column_values_to_not_be_in_set": {"column", "value_set"},
    "expect_column_values_to_not_match_regex": {"column", "regex"},  # NUL_REGEX only (regex dialects differ)
}


def candidates(exp: dict[str, Any], batch: pa.RecordBatch | pa.Table,
               names: Collection[str] | None = None) -> np.ndarray | None:
    """The rows of the batch that may fail a check (a boolean mask), or ``None`` for a check Arrow does not
    screen (another kwarg than the few it knows, a type it does not compare). ``names``: the batch's column
    names (given by a caller that screens a batch for many checks).

    Conservative by construction: a row GX would fail is always a candidate (nulls and NaN as
    pandas sees them; comparisons only between numbers, or between strings).
    """
    kw = exp["kwargs"]
    names = batch.schema.names if names is None else names
    if exp["type"] not in _SCREENED or set(kw) - _SCREENED[exp["type"]] or kw.get("column") not in names:
        return None
    try:
        mask = _candidates(exp["type"].removeprefix("expect_column_values_to_"), kw, batch.column(kw["column"]))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError, ValueError, OverflowError):
        return None  # a value Arrow cannot compare (-1 for an unsigned column): GX decides, and says if it cannot
    if mask is None:
        return None
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


def _candidates(kind: str, kw: dict[str, Any], col: pa.ChunkedArray | pa.Array) -> Any:
    if kind == "not_be_null":
        return pc.is_null(col, nan_is_null=pa.types.is_floating(col.type))
    if kind == "be_null":
        return pc.is_valid(col)
    if kind == "not_match_regex":
        if kw.get("regex") != NUL_REGEX or not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            return None
        return pc.match_substring(col, "\x00")
    if kind == "be_between":
        low, high = kw.get("min_value"), kw.get("max_value")
        bounds = [b for b in (low, high) if b is not None]
        if not bounds or not _numeric(col.type) or not all(_number(b) for b in bounds):
            return None
        outside = [pc.less(col, low)] if low is not None else []
        outside += [pc.greater(col, high)] if high is not None else []
        return pc.or_kleene(*outside) if len(outside) == 2 else outside[0]
    values = list(kw.get("value_set") or [])
    if pa.types.is_string(col.type) and all(isinstance(v, str) for v in values):
        value_set = pa.array(values, pa.string())
    elif pa.types.is_integer(col.type) and all(_number(v) and float(v).is_integer() for v in values):
        value_set = pa.array([int(v) for v in values], col.type)
    else:
        return None
    found = pc.is_in(col, value_set=value_set, skip_nulls=True)
    return found if kind == "not_be_in_set" else pc.and_(pc.invert(found), pc.is_valid(col))


def _numeric(arrow_type: pa.DataType) -> bool:
    return pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _frame(batch: pa.RecordBatch | pa.Table, columns: list[str]) -> pd.DataFrame:
    """The batch's ``columns`` (all when empty) as GX's pandas frame: exact integers, text as categoricals."""
    chosen = batch.select(columns) if columns else batch
    return chosen.to_pandas(types_mapper=_exact_integers, strings_to_categorical=True)




def _exact_integers(arrow_type: pa.DataType) -> Any:
    """to_pandas types: integers stay exact with nulls (pandas' Int64), not float64."""
    return pd.Int64Dtype() if pa.types.is_integer(arrow_type) else None


def suite(inputs: list[dict[str, Any]], key: str, schema: pa.Schema, *, duplicate_keys: list[Any],
          configured: list[Any], unknown_categories: str = "quarantine", job_id: str = "") -> list[dict[str, Any]]:
    """A model's checks on rows of ``schema``: its contract, duplicate keys, then the job file's own expectations.

    Args:
        inputs: the model card's input contract.
        duplicate_keys: keys seen more than once across the partition (known before its first batch).
        configured: the job file's ``validation.expectations``.
    """
    checks = contract_expectations(inputs, key, unknown_categories=unknown_categories)
    checks += text_expectations(schema)
    if duplicate_keys:  # keys seen more than once across the partition's files
        checks.append(expectation("expect_column_values_to_not_be_in_set", f"duplicate_key:{key}",
                                  column=key, value_set=duplicate_keys))
    extra = job_expectations(configured)
    for i, exp in enumerate(extra):
        unknown = [c for c in columns_of(exp) if c not in schema.names]
        if unknown:
            raise ConfigError(
                f"job {job_id}: validation.expectations[{i}] ({exp['type']}) names column(s) "
                f"{', '.join(unknown)} that the input does not have (columns: "
                f"{', '.join(n for n in schema.names if not n.startswith('__'))})"
            )
    return unique_reasons(checks + extra)


@dataclass
class Split:
    """Some rows decided: the valid ones with their flags (``__flags``), the quarantined ones with their
    reasons (``reasons``; None when none) and how many valid rows carry a flag."""

    valid: pa.Table
    quarantined: pa.Table | None
    flagged: int


def split_rows(validator: RowValidator, batches: Iterable[pa.RecordBatch | pa.Table], batch_rows: int
               ) -> Iterator[Split]:
    """Every batch's rows decided: valid (with their flags) or quarantined (with their reasons).

    A row that no check can fail (every check screened by Arrow, the row a candidate of none) is
    valid at once. The others wait, across batches, until about
    ``batch_rows`` of them are waiting, and GX decides them together: one GX pass for many
    batches instead of one each (GX costs about 0.1 s a pass whatever its rows). A batch with a
    check Arrow cannot screen is decided alone, whole. Each row's fate is its own: the same rows
    batched otherwise get the same flags and reasons (only their order in the output may differ).
    """
    waiting, waiting_rows = [], 0
    for batch in batches:
        masks = validator.candidates(batch)
        if any(m is None for m in masks):
            yield split_batch(validator, batch, masks)
            continue
        sure = ~np.logical_or.reduce(masks) if masks else np.ones(batch.num_rows, dtype=bool)
        validator.evaluated_rows += int(sure.sum())
        clean = _table(batch.filter(pa.array(sure)))
        yield Split(clean.append_column(FLAGS, pa.nulls(clean.num_rows, pa.string())), None, 0)
        if not sure.all():
            waiting.append(_table(batch.filter(pa.array(~sure))))
            waiting_rows += waiting[-1].num_rows
        if waiting_rows >= batch_rows:
            yield split_batch(validator, pa.concat_tables(waiting))
            waiting, waiting_rows = [], 0
    if waiting:
        yield split_batch(validator, pa.concat_tables(waiting))


def _table(rows: pa.RecordBatch | pa.Table) -> pa.Table:
    return pa.Table.from_batches([rows]) if isinstance(rows, pa.RecordBatch) else rows


def split_batch(validator: RowValidator, batch: pa.RecordBatch | pa.Table,
                masks: list[np.ndarray | None] | None = None) -> Split:
    """One batch decided by GX: its valid rows with their flags, its quarantined rows with their reasons."""
    outcome = validator.check(batch, masks)
    keep = outcome.keep_mask()
    valid = _table(batch.filter(pa.array(keep)))
    flags = (pa.array(outcome.flags[keep], pa.string()) if outcome.flags is not None
             else pa.nulls(valid.num_rows, pa.string()))
    rejected = None
    if len(outcome.bad):
        rejected = _table(batch.take(pa.array(outcome.bad))).append_column(REASONS, pa.array(outcome.reasons,
                                                                                            pa.string()))
    return Split(valid.append_column(FLAGS, flags), rejected, valid.num_rows - flags.null_count)


def valid_schema(schema: pa.Schema) -> pa.Schema:
    """The valid rows' schema: the input's, with the flags."""
    return schema.append(pa.field(FLAGS, pa.string()))


def quarantine_schema(schema: pa.Schema) -> pa.Schema:
    """The quarantined rows' schema: the input's, with the reasons."""
    return schema.append(pa.field(REASONS, pa.string()))
