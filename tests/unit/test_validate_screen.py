"""The Arrow screen (issue 15) never changes what Great Expectations decides: it only skips checks no row fails."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.kernels.validate import RowValidator, _frame, candidates, expectation, unique_reasons

CHECKS = unique_reasons([
    expectation("expect_column_values_to_not_be_null", "", column="f"),
    expectation("expect_column_values_to_not_be_null", "", column="s"),
    expectation("expect_column_values_to_be_between", "", column="f", min_value=-1, max_value=5, strict_max=True),
    expectation("expect_column_values_to_be_between", "", column="f", min_value=0, max_value=10.5),
    expectation("expect_column_values_to_be_between", "", column="i", min_value=-5, max_value=None),
    expectation("expect_column_values_to_be_in_set", "", column="s", value_set=["a", "b", ""]),
    expectation("expect_column_values_to_not_be_in_set", "", column="i", value_set=[3, 7]),
    expectation("expect_column_values_to_be_null", "", column="s"),
    expectation("expect_column_values_to_be_between", "", "flag", column="i", min_value=0, max_value=100, mostly=0.5),
])
floats = st.one_of(st.none(), st.just(math.nan), st.just(math.inf), st.just(-math.inf), st.just(0.0), st.just(10.5),
                   st.floats(-20, 20))
ints = st.one_of(st.none(), st.integers(-8, 120))
texts = st.one_of(st.none(), st.sampled_from(["a", "b", "", " a", "A", "c"]))
rows = st.lists(st.tuples(floats, ints, texts), min_size=1, max_size=12)


def screen(exp: dict, batch: pa.Table) -> bool | None:
    """Whether some row may fail the check (``None``: Arrow leaves it to GX)."""
    mask = candidates(exp, batch)
    return None if mask is None else bool(mask.any())


@pytest.fixture(scope="module")
def validators() -> tuple[RowValidator, RowValidator]:
    return RowValidator(CHECKS, "screened"), RowValidator(CHECKS, "reference")


def _gx_alone(reference: RowValidator, batch: pa.Table) -> tuple[dict[int, str], dict[int, str]]:
    """Every check run by GX over the whole batch, as before the screen: the quarantined rows' reasons and
    the flagged rows' flags, each row's codes in the suite's order (quarantine codes, then flags).

    (GX lists its results grouped by column, in the order the columns first appear among the checks it
    ran: before the screen a row's codes came in that order, which depended on what else failed in its
    batch. They are now in the suite's order, whatever the batch.)"""
    result = reference.batch_definition.get_batch(batch_parameters={"dataframe": _frame(batch, [])}).validate(
        reference.suite, result_format={"result_format": "COMPLETE"})
    quarantine: dict[int, list[str]] = {}
    flag: dict[int, list[str]] = {}
    for res in result.results:  # in the suite's order
        target = flag if res.expectation_config.meta["on_fail"] == "flag" else quarantine
        for i in ([] if res.success else res.result.get("unexpected_index_list") or []):  # 'mostly' may pass
            target.setdefault(int(i), []).append(res.expectation_config.meta["reason"])
    for codes in [*quarantine.values(), *flag.values()]:
        codes.sort(key=reference.order.__getitem__)
    return ({i: "; ".join(c + flag.get(i, [])) for i, c in quarantine.items()},
            {i: "; ".join(c) for i, c in flag.items()})


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows)
def test_the_screen_leaves_every_row_to_the_same_fate_as_gx_alone(validators, data) -> None:
    screened, reference = validators
    batch = pa.table({"f": pa.array([r[0] for r in data], pa.float64()), "i": pa.array([r[1] for r in data], pa.int64()),
                      "s": pa.array([r[2] for r in data], pa.string())})
    outcome = screened.check(batch)
    reasons, flags = _gx_alone(reference, batch)
    assert dict(zip((int(i) for i in outcome.bad), outcome.reasons, strict=True)) == reasons
    got_flags = {i: v for i, v in enumerate(outcome.flags if outcome.flags is not None else []) if v}
    assert got_flags == flags


def test_what_the_screen_decides_and_what_it_leaves_to_gx() -> None:
    batch = pa.table({"f": pa.array([1.0, math.nan]), "i": pa.array([4, None]), "s": pa.array(["a", None])})
    verdicts = {e["reason"]: screen(e, batch) for e in CHECKS}
    assert verdicts == {"not_be_null:f": True, "not_be_null:s": True, "be_between:f": None, "be_between:f#2": False,
                        "be_between:i": False, "be_in_set:s": False, "not_be_in_set:i": False, "be_null:s": True,
                        "be_between:i#2": None}  # strict_max, 'mostly': GX's alone
    assert screen(expectation("expect_column_values_to_be_between", "", column="s", min_value=0), batch) is None
    unsigned = pa.table({"u": pa.array([1, 2], pa.uint8())})  # a value set Arrow cannot cast: GX decides
    assert screen(expectation("expect_column_values_to_be_in_set", "", column="u", value_set=[-1, 300]), unsigned) is None
