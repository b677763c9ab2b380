"""Validate: a Great Expectations 1.x suite derived from the model card's input contract.

The suite decides both the report and the row-level split: every row flagged by a
row-level expectation (its ``unexpected_index_list``) goes to the quarantine with the
names of the expectations it failed, so the report and the quarantine always agree.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


def load_gx() -> Any:
    """Import Great Expectations (seconds: done once, on first use), quiet and without analytics."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.WARNING)

    return gx


def expectation(type_: str, reason: str, on_fail: str = "quarantine", **kwargs: Any) -> dict[str, Any]:
    """One check: a GX expectation, the reason code its failing rows get, and what happens to them."""
    return {"type": type_, "kwargs": kwargs, "reason": reason, "on_fail": on_fail}


def contract_expectations(
    inputs: list[dict[str, Any]], key: str, *, unknown_categories: str = "quarantine"
) -> list[dict[str, Any]]:
    """The expectations implied by an input contract (nulls, ranges, categories, usable numbers)."""
    from pipeline.ingest import RAW_PREFIX, numeric_columns

    out = [expectation("expect_column_values_to_not_be_null", f"not_null:{key}", column=key)]
    for column in inputs:
        name = column["name"]
        if not column.get("nullable", True):
            out.append(expectation("expect_column_values_to_not_be_null", f"not_null:{name}", column=name))
        if column["type"] in ("float", "int") and ("min" in column or "max" in column):
            out.append(expectation("expect_column_values_to_be_between", f"be_between:{name}", column=name,
                                   min_value=column.get("min"), max_value=column.get("max")))
        if column["type"] == "category" and column.get("categories"):
            out.append(expectation("expect_column_values_to_be_in_set", f"unknown_category:{name}",
                                   unknown_categories, column=name, value_set=list(column["categories"])))
    for name in numeric_columns(inputs):  # blank or unparseable text, NaN, infinities (see ingest)
        out.append(expectation("expect_column_values_to_be_null", f"invalid_number:{name}",
                               column=RAW_PREFIX + name))
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


FLAGS = "__flags"


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
        self.suite = self._suite(name, expectations)
        self._subsuites: dict[tuple[str, ...], tuple[Any, list[str]]] = {}
        self.totals: dict[str, int] = {}
        self.samples: dict[str, list[Any]] = {}
        self.evaluated_rows = 0

    def _suite(self, name: str, expectations: list[dict[str, Any]]) -> Any:
        gx = load_gx()
        from great_expectations.expectations.registry import get_expectation_impl

        from pipeline.errors import ConfigError

        suite = gx.ExpectationSuite(name=f"{name}_suite")
        for exp in expectations:
            try:
                impl = get_expectation_impl(exp["type"])
                suite.add_expectation(impl(**exp["kwargs"], meta={"reason": reason_of(exp),
                                                                  "on_fail": exp.get("on_fail", "quarantine")}))
            except Exception as exc:  # GX raises its own types for unknown names and bad arguments
                raise ConfigError(f"expectation {exp['type']} {exp['kwargs']} is not valid: "
                                  f"{type(exc).__name__}: {exc}") from None
        return suite

    def check(self, frame: pd.DataFrame) -> BatchOutcome:
        """Validate one batch: which rows to quarantine (and why) and which to flag.

        Text columns are best passed as pandas categoricals (``to_pandas(strings_to_categorical=True)``):
        Great Expectations filters the whole frame once per expectation, and taking rows of a
        categorical moves small integer codes instead of strings.

        Two passes, both Great Expectations: the whole suite with ``BOOLEAN_ONLY`` (cheap: no
        row lists), then only the failed expectations with ``COMPLETE`` on just their columns,
        for the failing rows' indices. On mostly clean data this is about twice as fast as
        one ``COMPLETE`` pass over every column.
        """
        frame = frame.reset_index(drop=True)
        batch = self.batch_definition.get_batch(batch_parameters={"dataframe": frame})
        first = batch.validate(self.suite, result_format={"result_format": "BOOLEAN_ONLY"})
        self._raise_on_exceptions(first)
        failed = [reason_of({"type": r.expectation_config.type, "kwargs": dict(r.expectation_config.kwargs),
                             "reason": (r.expectation_config.meta or {}).get("reason")})
                  for r in first.results if not r.success]
        reasons: dict[int, list[str]] = {}
        flags: dict[int, list[str]] = {}
        failures: dict[str, int] = {}
        if failed:
            suite, columns = self._suite_of(tuple(failed))
            narrow = frame[columns] if columns else frame
            second = self.batch_definition.get_batch(batch_parameters={"dataframe": narrow}).validate(
                suite, result_format={"result_format": "COMPLETE"})
            self._raise_on_exceptions(second)
            for res in second.results:
                config = res.expectation_config
                meta = config.meta or {}
                if res.success:
                    continue
                code = meta.get("reason") or reason_of({"type": config.type, "kwargs": dict(config.kwargs)})
                if "unexpected_index_list" not in res.result:
                    from pipeline.errors import ConfigError

                    raise ConfigError(f"expectation {config.type} {dict(config.kwargs)} failed without naming "
                                      "rows: only row-level expectations can split a partition")
                idx = res.result.get("unexpected_index_list") or []
                failures[code] = failures.get(code, 0) + len(idx)
                sample = self.samples.setdefault(code, [])
                for value in (res.result.get("partial_unexpected_list") or [])[: 5 - len(sample)]:
                    sample.append(value)
                target = flags if meta.get("on_fail") == "flag" else reasons
                for i in idx:
                    target.setdefault(int(i), []).append(code)
        for code, n in failures.items():
            self.totals[code] = self.totals.get(code, 0) + n
        self.evaluated_rows += len(frame)
        bad = sorted(reasons)
        flag_values = None
        if flags:
            flag_values = np.full(len(frame), None, dtype=object)
            for i, codes in flags.items():
                flag_values[i] = "; ".join(codes)
        return BatchOutcome(len(frame), np.asarray(bad, dtype=np.int64),
                            ["; ".join(reasons[i] + flags.get(i, [])) for i in bad], flag_values, failures)

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
        from pipeline.errors import ConfigError

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
