from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from pipeline.errors import ConfigError, InputError, PartitionNotFoundError
from pipeline.partition import (
    compression,
    data_files,
    is_data_name,
    partition_files,
    resolve_partition_date,
    run_partition,
)

UTC = ZoneInfo("UTC")
PARIS = ZoneInfo("Europe/Paris")


def test_param_wins() -> None:
    got = resolve_partition_date(tz=UTC, param="2026-01-05", logical_date=dt.datetime(2026, 11, 20, tzinfo=dt.UTC))
    assert got == dt.date(2026, 1, 5)


def test_scheduled_run_scores_its_interval_start() -> None:
    # CronDataIntervalTimetable: the 02:00 run on 21 Nov has logical date 20 Nov 02:00
    logical = dt.datetime(2026, 11, 20, 2, 0, tzinfo=dt.UTC)
    assert resolve_partition_date(tz=UTC, logical_date=logical, schedule="0 2 * * *") == dt.date(2026, 11, 20)


def test_logical_date_is_read_in_job_timezone() -> None:
    logical = dt.datetime(2026, 11, 19, 23, 30, tzinfo=dt.UTC)  # 00:30 on the 20th in Paris
    assert resolve_partition_date(tz=PARIS, logical_date=logical) == dt.date(2026, 11, 20)
    assert resolve_partition_date(tz=UTC, logical_date=logical) == dt.date(2026, 11, 19)


@pytest.mark.parametrize(
    ("run_after", "expected"),
    [
        (dt.datetime(2026, 11, 21, 14, 0, tzinfo=dt.UTC), dt.date(2026, 11, 20)),  # after 02:00
        (dt.datetime(2026, 11, 21, 1, 0, tzinfo=dt.UTC), dt.date(2026, 11, 19)),  # before 02:00
        (dt.datetime(2026, 11, 21, 2, 0, tzinfo=dt.UTC), dt.date(2026, 11, 20)),  # on the tick
    ],
)
def test_manual_run_without_logical_date_scores_last_complete_interval(run_after, expected) -> None:
    assert resolve_partition_date(tz=UTC, run_after=run_after, schedule="0 2 * * *") == expected


def test_manual_only_job_scores_yesterday() -> None:
    run_after = dt.datetime(2026, 11, 21, 9, 0, tzinfo=dt.UTC)
    assert resolve_partition_date(tz=UTC, run_after=run_after, schedule=None) == dt.date(2026, 11, 20)


def test_bad_param_says_what_is_expected() -> None:
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        resolve_partition_date(tz=UTC, param="20/11/2026")


def test_nothing_to_go_on() -> None:
    with pytest.raises(ConfigError, match="cannot tell the partition"):
        resolve_partition_date(tz=UTC)


def test_a_ui_trigger_whose_logical_date_is_now_scores_the_last_complete_day() -> None:
    # the trigger form fills the logical date with the trigger time: that day is not over
    now = dt.datetime(2026, 12, 1, 10, 37, tzinfo=dt.UTC)
    got = resolve_partition_date(tz=UTC, logical_date=now, run_after=now, schedule="0 2 * * *")
    assert got == dt.date(2026, 11, 30)
    before_the_tick = dt.datetime(2026, 12, 1, 1, 0, tzinfo=dt.UTC)
    assert resolve_partition_date(tz=UTC, logical_date=before_the_tick, run_after=before_the_tick,
                                  schedule="0 2 * * *") == dt.date(2026, 11, 29)
    assert resolve_partition_date(tz=UTC, logical_date=now, run_after=now) == dt.date(2026, 11, 30)  # manual-only


def test_a_past_logical_date_scores_its_day_and_a_scheduled_run_its_interval() -> None:
    later = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
    dags_test = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)  # `airflow dags test JOB 2026-11-20` today
    assert resolve_partition_date(tz=UTC, logical_date=dags_test, run_after=later, schedule="0 2 * * *") == \
        dt.date(2026, 11, 20)
    start, end = dt.datetime(2026, 11, 20, 2, tzinfo=dt.UTC), dt.datetime(2026, 11, 21, 2, tzinfo=dt.UTC)
    assert resolve_partition_date(tz=UTC, logical_date=start, run_after=end, schedule="0 2 * * *") == \
        dt.date(2026, 11, 20)


def test_a_partition_date_in_a_backfill_is_refused() -> None:
    with pytest.raises(ConfigError, match="given to a backfill: every run of the backfill would score that one day"):
        resolve_partition_date(tz=UTC, param="2026-11-20", run_type="backfill",
                               logical_date=dt.datetime(2026, 11, 2, 2, tzinfo=dt.UTC))
    assert resolve_partition_date(tz=UTC, param="2026-11-20", run_type="manual") == dt.date(2026, 11, 20)


def test_a_schedule_ticking_more_than_daily_never_scores_today() -> None:
    noon = dt.datetime(2026, 12, 1, 12, 5, tzinfo=dt.UTC)
    six_am = dt.datetime(2026, 12, 1, 6, tzinfo=dt.UTC)
    assert resolve_partition_date(tz=UTC, logical_date=six_am, run_after=noon, schedule="0 */6 * * *") == \
        dt.date(2026, 11, 30)
    assert resolve_partition_date(tz=UTC, run_after=noon, schedule="0 */6 * * *") == dt.date(2026, 11, 30)


# -- which files of a partition folder are read -----------------------------------------------
@pytest.mark.parametrize(("name", "fmt", "expected"), [
    ("part-0.csv", "csv", True), ("part-0.CSV", "csv", True), ("part-0.csv.gz", "csv", True),
    ("part-0.Csv.GZ", "csv", True), ("part-0.csv.bz2", "csv", True), ("part-0.csv.zst", "csv", True),
    ("part-0.csv.lz4", "csv", True), ("part-0.parquet", "parquet", True), ("part-0.Parquet", "parquet", True),
    ("part-0.snappy.parquet", "parquet", True), ("part-0.gz", "csv", False), ("part-0.csv.tmp", "csv", False),
    ("part-0.parquet", "csv", False), ("part-0.csv", "parquet", False), ("part-0.parquet.gz", "parquet", False),
])
def test_data_file_names_any_case_and_codec(name: str, fmt: str, expected: bool) -> None:
    assert is_data_name(name, fmt) is expected


def test_compression_comes_from_the_name_in_any_case() -> None:
    assert [compression(Path(n)) for n in ("a.csv", "a.csv.gz", "a.CSV.GZ", "a.csv.bz2", "a.csv.zst")] == [
        None, "gzip", "gzip", "bz2", "zstd"]


def _partition(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "root" / "date=2026-11-20"
    folder.mkdir(parents=True)
    for name in names:
        (folder / name).write_text("x\n")
    return folder


def test_markers_hidden_and_ignored_files_are_left_out(tmp_path: Path) -> None:
    folder = _partition(tmp_path, "b.csv", "a.CSV.gz", "_SUCCESS", ".a.csv.crc", "manifest.json")
    files = partition_files(tmp_path / "root", "date={date}", "csv", dt.date(2026, 11, 20), ["MANIFEST.*"])
    assert files == [folder / "a.CSV.gz", folder / "b.csv"]
    assert data_files(folder, "csv") == [folder / "a.CSV.gz", folder / "b.csv"]


@pytest.mark.parametrize("stray", ["notes.txt", "part-1.parquet", "part-1.csv.tmp"])
def test_an_unexpected_file_fails_naming_it_the_partition_and_the_next_step(tmp_path: Path, stray: str) -> None:
    folder = _partition(tmp_path, "part-0.csv", stray)
    with pytest.raises(InputError) as err:
        partition_files(tmp_path / "root", "date={date}", "csv", dt.date(2026, 11, 20))
    text = str(err.value)
    assert text.startswith(f"partition 2026-11-20: {folder} holds {stray!r}: neither *.csv")
    assert "nothing was read" in text and "source.ignore" in text and "re-run the partition" in text


def test_a_sub_folder_and_a_broken_link_are_unexpected_too(tmp_path: Path) -> None:
    folder = _partition(tmp_path, "part-0.csv")
    (folder / "region=eu").mkdir()
    (folder / "part-1.csv").symlink_to(folder / "gone.csv")
    with pytest.raises(InputError, match=r"holds 2 entries, 'part-1.csv' \(a broken symlink\), 'region=eu' "
                                         r"\(a directory\)"):
        partition_files(tmp_path / "root", "date={date}", "csv", dt.date(2026, 11, 20))


def test_symlinks_inside_the_root_are_read_and_those_leading_out_are_refused(tmp_path: Path) -> None:
    folder = _partition(tmp_path, "part-0.csv")
    (tmp_path / "root" / "shared.csv").write_text("x\n")
    (folder / "part-1.csv").symlink_to(tmp_path / "root" / "shared.csv")
    day = dt.date(2026, 11, 20)
    assert partition_files(tmp_path / "root", "date={date}", "csv", day) == [folder / "part-0.csv",
                                                                            folder / "part-1.csv"]
    (tmp_path / "outside.csv").write_text("secret\n")
    (folder / "part-2.csv").symlink_to(tmp_path / "outside.csv")
    with pytest.raises(InputError, match=r"holds 'part-2.csv': a symlink leading out of the job's source root") as err:
        partition_files(tmp_path / "root", "date={date}", "csv", day)
    assert "secret" not in str(err.value)


def test_only_markers_is_a_partition_not_found(tmp_path: Path) -> None:
    _partition(tmp_path, "_SUCCESS")
    with pytest.raises(PartitionNotFoundError, match=r"holds no \*\.csv .*\(only '_SUCCESS', not read\)"):
        partition_files(tmp_path / "root", "date={date}", "csv", dt.date(2026, 11, 20))


def test_an_asset_triggered_run_scores_its_partition_key_unless_the_form_says_otherwise() -> None:
    now = dt.datetime(2026, 11, 25, 8, tzinfo=dt.UTC)
    assert resolve_partition_date(tz=UTC, partition_key="2026-11-20", run_after=now) == dt.date(2026, 11, 20)
    assert resolve_partition_date(tz=UTC, partition_key="2026-11-20T00:00:00", run_after=now) == dt.date(2026, 11, 20)
    assert resolve_partition_date(tz=UTC, partition_key="2026-11-20", param="2026-11-18") == dt.date(2026, 11, 18)
    with pytest.raises(ConfigError, match="partition key 'eu' is not a date"):
        resolve_partition_date(tz=UTC, partition_key="eu", run_after=now)


def test_a_job_on_an_upstream_asset_has_no_cron_schedule(tmp_path: Path) -> None:
    import yaml

    from pipeline.config import load_job

    doc = {"job_id": "fed", "start_date": "2026-11-01", "entity_key": "k", "model": {"name": "m"},
           "source": {"path": "data", "asset": "warehouse.inputs"}, "output": {"table": "fed_predictions"}}
    path = tmp_path / "fed.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="set schedule: null"):
        load_job(path)
    path.write_text(yaml.safe_dump({**doc, "schedule": None}))
    assert load_job(path).source.asset == "warehouse.inputs"


@pytest.mark.parametrize(("schedule", "deadline", "expected"), [
    ("0 2 * * *", {"publish_by": "06:00"}, dt.timedelta(hours=28)),
    ("30 23 * * *", {"publish_by": "07:15", "days_after": 2}, dt.timedelta(hours=31, minutes=45)),
    ("0 2 * * 1-5", {"publish_by": "06:00"}, "runs every day at a fixed time"),
    ("0 */6 * * *", {"publish_by": "06:00"}, "runs every day at a fixed time"),
    ("0 7 * * *", {"publish_by": "06:00"}, "comes before the run of that partition starts"),
    ("0 2 * * *", {"publish_by": "6 am"}, "is not a time of day"),
])
def test_a_deadline_counts_from_each_scheduled_run(tmp_path: Path, schedule: str, deadline: dict, expected) -> None:
    import yaml

    from pipeline.config import load_job

    doc = {"job_id": "late", "start_date": "2026-11-01", "entity_key": "k", "model": {"name": "m"}, "schedule": schedule,
           "source": {"path": "data"}, "output": {"table": "late_predictions"}, "deadline": deadline}
    path = tmp_path / "late.yaml"
    path.write_text(yaml.safe_dump(doc))
    if isinstance(expected, str):
        with pytest.raises(ConfigError, match=expected):
            load_job(path)
    else:
        assert load_job(path).deadline_interval() == expected


def test_a_dag_run_becomes_the_rules_arguments_in_one_place_and_an_asset_run_scores_its_key() -> None:
    """run_partition (factory.partition_of and the notes listener both call it): an asset-triggered run's
    logical date and trigger time name another day than its partition key; the key decides, and says so."""
    asset = SimpleNamespace(run_type=SimpleNamespace(value="asset_triggered"), partition_key="2026-11-18",
                            logical_date=dt.datetime(2026, 11, 25, 9, tzinfo=dt.UTC),
                            run_after=dt.datetime(2026, 11, 25, 9, tzinfo=dt.UTC))
    chosen = run_partition(asset, tz=PARIS, schedule=None)
    assert chosen.day == dt.date(2026, 11, 18)
    assert chosen.how == "the asset event's partition key '2026-11-18'"
    assert run_partition(asset, tz=PARIS, schedule=None, param="2026-11-02").day == dt.date(2026, 11, 2)
    assert run_partition(asset, tz=PARIS, schedule=None, param="2026-11-02").how == "partition_date in the conf"
    scheduled = SimpleNamespace(run_type="scheduled", logical_date=dt.datetime(2026, 11, 20, 1, tzinfo=dt.UTC),
                                run_after=dt.datetime(2026, 11, 21, 1, tzinfo=dt.UTC))  # no partition_key at all
    chosen = run_partition(scheduled, tz=PARIS, schedule="0 2 * * *")
    assert (chosen.day, chosen.how) == (dt.date(2026, 11, 20), "the run's logical date and trigger time")
    backfill = SimpleNamespace(run_type=SimpleNamespace(value="backfill"), logical_date=scheduled.logical_date,
                               run_after=scheduled.run_after, partition_key=None)
    with pytest.raises(ConfigError, match="was given to a backfill"):
        run_partition(backfill, tz=PARIS, schedule="0 2 * * *", param="2026-11-02")
