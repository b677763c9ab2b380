"""Issue 25 (10c): a day a user gives is exactly YYYY-MM-DD, everywhere; the rest is refused, naming the parameter.

Python 3.11's ``date.fromisoformat`` reads ``20261120`` and ``2026-W47-5`` as 2026-11-20, and the old
parser stripped blanks: each of these would have scored a day without saying so.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from zoneinfo import ZoneInfo

import pytest

from pipeline.cli import build_parser
from pipeline.errors import ConfigError
from pipeline.partition import parse_date, resolve_partition_date
from tests.conftest import ROOT

UTC = ZoneInfo("UTC")
REFUSED = ["20261120", " 2026-11-20 ", "2026-11-20 ", "\t2026-11-20", "2026-W47-5", "2026W475", "2026-324",
           "2026-11-20T00:00", "26-11-20", "2026-1-20", "2026/11/20", "20/11/2026", "", "２０２６-11-20"]


@pytest.mark.parametrize("text", REFUSED)
def test_only_yyyy_mm_dd_is_a_partition_date(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_date(text)
    message = str(caught.value)
    assert message.startswith(f"partition_date {text!r} is not a date in the form YYYY-MM-DD"), message
    assert "e.g. 2026-11-20" in message


def test_the_message_names_the_usual_slip() -> None:
    with pytest.raises(ConfigError, match=r"remove the blanks around it \('2026-11-20'\)"):
        parse_date(" 2026-11-20 ")
    with pytest.raises(ConfigError, match=r"add the dashes \(2026-11-20\)"):
        parse_date("20261120")
    with pytest.raises(ConfigError, match="week dates are not accepted"):
        parse_date("2026-W47-5")
    with pytest.raises(ConfigError, match="'2026-02-30' is not a day of the calendar"):
        parse_date("2026-02-30")


def test_a_good_day_and_date_objects_pass() -> None:
    assert parse_date("2026-11-20") == dt.date(2026, 11, 20)
    assert parse_date(dt.date(2026, 11, 20)) == dt.date(2026, 11, 20)
    assert parse_date(dt.datetime(2026, 11, 20, 5, tzinfo=dt.UTC)) == dt.date(2026, 11, 20)


@pytest.mark.parametrize("text", ["20261120", " 2026-11-20 ", "2026-W47-5"])
def test_the_trigger_param_and_a_run_conf_are_refused_alike(text: str) -> None:
    """The DAG's partition_date param (form, REST conf, a plain trigger's conf) goes through resolve_partition_date."""
    with pytest.raises(ConfigError, match=rf"^partition_date {text!r} is not a date in the form YYYY-MM-DD"):
        resolve_partition_date(tz=UTC, param=text, run_after=dt.datetime(2026, 11, 25, tzinfo=dt.UTC))


def test_a_backfill_conf_with_a_partition_date_is_refused_before_its_form_matters() -> None:
    with pytest.raises(ConfigError, match="was given to a backfill"):
        resolve_partition_date(tz=UTC, param="2026-W47-5", run_type="backfill")


@pytest.mark.parametrize("key", ["20261120", "2026-W47-5", " 2026-11-20", "2026-11-20x"])
def test_an_asset_partition_key_must_start_with_the_day(key: str) -> None:
    with pytest.raises(ConfigError, match="partition key .* is not a date"):
        resolve_partition_date(tz=UTC, partition_key=key, run_after=dt.datetime(2026, 11, 25, tzinfo=dt.UTC))
    assert resolve_partition_date(tz=UTC, partition_key="2026-11-20T02:00:00+00:00") == dt.date(2026, 11, 20)


@pytest.mark.parametrize("command", [["run", "churn_daily"], ["redrive", "churn_daily"], ["deliveries", "churn_daily"],
                                     ["runs", "churn_daily"], ["outcomes", "churn_daily"], ["models", "compare", "m"]])
def test_every_cli_date_is_checked_by_the_parser(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*command, "--date", "20261120"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --date: --date '20261120' is not a date in the form YYYY-MM-DD" in err, err
    assert build_parser().parse_args([*command, "--date", "2026-11-20"]).date == "2026-11-20"


def test_scoring_run_with_a_week_date_exits_with_the_message_and_no_traceback() -> None:
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "churn_daily", "--date", "2026-W47-5"],
                         cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "--date '2026-W47-5' is not a date in the form YYYY-MM-DD" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
