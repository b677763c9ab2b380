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

import pandas as pd

log = logging.getLogger(__name__)


def _gx() -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.WARNING)

    return gx


def contract_expectations(inputs: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The expectations implied by an input contract, as ``{type, kwargs}`` dicts."""
    out: list[dict[str, Any]] = [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": key}}]
    for column in inputs:
        name = column["name"]
        if not column.get("nullable", True):
            out.append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": name}})
        if column["type"] in ("float", "int") and ("min" in column or "max" in column):
            out.append(
                {
                    "type": "expect_column_values_to_be_between",
                    "kwargs": {"column": name, "min_value": column.get("min"), "max_value": column.get("max")},
                }
            )
        if column["type"] == "category" and column.get("categories"):
            out.append(
                {
                    "type": "expect_column_values_to_be_in_set",
                    "kwargs": {"column": name, "value_set": list(column["categories"])},
                }
            )
    return out


def reason_of(expectation: dict[str, Any]) -> str:
    """Short, stable reason code of a row-level expectation, e.g. ``not_null:age``."""
    kind = expectation["type"].removeprefix("expect_column_values_to_")
    return f"{kind}:{expectation['kwargs'].get('column')}"


@dataclass
class BatchOutcome:
    valid: pd.DataFrame
    quarantined: pd.DataFrame  # original values plus a ``reasons`` column
    failures: dict[str, int] = field(default_factory=dict)


class RowValidator:
    """Runs one expectation suite over successive batches of a partition."""

    def __init__(self, expectations: list[dict[str, Any]], name: str = "scoring") -> None:
        gx = _gx()
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.expectations = expectations
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        asset = self.context.data_sources.add_pandas(f"{name}_source").add_dataframe_asset(f"{name}_rows")
        self.batch_definition = asset.add_batch_definition_whole_dataframe("batch")
        self.suite = self._suite(name, expectations)
        self.totals: dict[str, int] = {}
        self.evaluated_rows = 0

    def _suite(self, name: str, expectations: list[dict[str, Any]]) -> Any:
        gx = _gx()
        from great_expectations.expectations.registry import get_expectation_impl

        suite = gx.ExpectationSuite(name=f"{name}_suite")
        for exp in expectations:
            suite.add_expectation(get_expectation_impl(exp["type"])(**exp["kwargs"]))
        return suite

    def check(self, frame: pd.DataFrame) -> BatchOutcome:
        """Validate one batch; split it into valid and quarantined rows."""
        frame = frame.reset_index(drop=True)
        batch = self.batch_definition.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(self.suite, result_format={"result_format": "COMPLETE"})
        reasons: dict[int, list[str]] = {}
        failures: dict[str, int] = {}
        for res in result.results:
            config = res.expectation_config
            exp = {"type": config.type, "kwargs": dict(config.kwargs)}
            if res.exception_info and res.exception_info.get("raised_exception"):
                raise RuntimeError(
                    f"expectation {exp['type']} on {exp['kwargs'].get('column')} could not run: "
                    f"{res.exception_info.get('exception_message')}"
                )
            if res.success:
                continue
            code = reason_of(exp)
            idx = res.result.get("unexpected_index_list") or []
            failures[code] = failures.get(code, 0) + len(idx)
            for i in idx:
                reasons.setdefault(int(i), []).append(code)
        for code, n in failures.items():
            self.totals[code] = self.totals.get(code, 0) + n
        self.evaluated_rows += len(frame)
        bad = sorted(reasons)
        quarantined = frame.iloc[bad].copy()
        quarantined["reasons"] = ["; ".join(reasons[i]) for i in bad]
        valid = frame.drop(index=bad)
        return BatchOutcome(valid, quarantined, failures)

    def report(self) -> dict[str, Any]:
        """Summary of the whole partition: rows evaluated and failures per expectation."""
        return {
            "rows_evaluated": self.evaluated_rows,
            "expectations": self.expectations,
            "unexpected_counts": dict(sorted(self.totals.items())),
        }
