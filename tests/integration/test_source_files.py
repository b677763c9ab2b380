"""No row is ever skipped silently: what a partition folder may hold, through real runs.

Compressed and upper-case CSV files are read; markers (``_SUCCESS``, ``.crc``) are not; any
other file fails the run naming it; a symlink leading out of the source root is refused
without a word of its target's content; a text key far into a CSV names its column and value.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

from pipeline import ledger, local
from pipeline.config import load_job
from pipeline.demo import data as demo_data
from pipeline.errors import InputError, PartitionNotFoundError
from pipeline.partition import data_files
from pipeline.sources.files import FilesSource
from pipeline.store import engines
from tests.conftest import DAY, clean_customers, write_job

SECRET = "root:x:0:0:SECRET-LINE-7f3a:/root:/bin/bash"


def _engine() -> sa.Engine:
    return engines.for_connection("scoring_db")


def _frame(n: int = 300, seed: int = 3) -> pd.DataFrame:
    return clean_customers(n, seed)


def _folder(home: Path) -> Path:
    folder = home / "data" / "churn" / f"date={DAY}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _csv(path: Path, frame: pd.DataFrame, codec: str | None = None) -> Path:
    """Write ``frame`` as CSV at ``path``, compressed with one of pyarrow's codecs if given."""
    with pa.output_stream(str(path), compression=codec) as out:
        out.write(frame.to_csv(index=False).encode())
    return path


def _job(home: Path, fmt: str = "csv") -> Any:
    source = {"path": str(home / "data" / "churn"), "format": fmt, "batch_rows": 700}
    return load_job(write_job(home, source=source, validation={"max_quarantine_share": 0.5}))


def _rows_written() -> int:
    with _engine().connect() as conn:
        if not sa.inspect(conn).has_table("churn_test_predictions"):
            return 0
        return int(conn.execute(sa.text("SELECT COUNT(*) FROM churn_test_predictions")).scalar_one())


def _every_row_scored(summary: dict[str, Any], n: int) -> None:
    assert (summary["status"], summary["rows_in"], summary["rows_scored"], summary["rows_written"]) == (
        "success", n, n, n)
    assert _rows_written() == n


# -- what is read ---------------------------------------------------------------------------
@pytest.mark.parametrize(("suffix", "codec"), [(".csv.gz", "gzip"), (".csv.bz2", "bz2"), (".csv.zst", "zstd"),
                                               (".csv.lz4", "lz4")])
def test_a_partition_of_only_compressed_csv_is_read(home: Path, suffix: str, codec: str) -> None:
    frame = _frame()
    _csv(_folder(home) / f"part-0000{suffix}", frame, codec)
    _every_row_scored(local.run_partition(_job(home), DAY, run_id="gz"), len(frame))


def test_compressed_and_upper_case_csv_beside_plain_csv_are_all_read(any_db: str, home: Path) -> None:
    a, b, c = _frame(seed=1), _frame(seed=2), _frame(seed=3)
    b["customer_id"] += 10_000_000
    c["customer_id"] += 20_000_000
    folder = _folder(home)
    _csv(folder / "part-0000.csv", a)
    _csv(folder / "part-0001.csv.gz", b, "gzip")
    _csv(folder / "part-0002.CSV", c)
    summary = local.run_partition(_job(home), DAY, run_id="mixed")
    _every_row_scored(summary, len(a) + len(b) + len(c))


def test_an_upper_case_parquet_extension_is_read(home: Path) -> None:
    frame = _frame()
    frame.to_parquet(_folder(home) / "part-0000.Parquet", index=False)
    _every_row_scored(local.run_partition(_job(home, "parquet"), DAY, run_id="upper"), len(frame))


def test_markers_and_hidden_files_are_not_read_and_are_logged(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    frame = _frame()
    folder = _folder(home)
    _csv(folder / "part-0000.csv", frame)
    (folder / "_SUCCESS").write_text("")
    (folder / ".part-0000.csv.crc").write_bytes(b"\x00\x01crc")
    (folder / "_temporary").mkdir()
    (folder / "_temporary" / "part-9999.csv").write_text("customer_id\n1\n")
    with caplog.at_level(logging.INFO, logger="pipeline.partition"):
        summary = local.run_partition(_job(home), DAY, run_id="markers")
    _every_row_scored(summary, len(frame))
    assert any("_SUCCESS" in r.getMessage() and "not reading" in r.getMessage() for r in caplog.records)


def test_a_folder_with_only_a_success_marker_is_not_found(home: Path) -> None:
    (_folder(home) / "_SUCCESS").write_text("")
    with pytest.raises(PartitionNotFoundError, match=r"holds no \*\.csv .*only '_SUCCESS', not read"):
        local.run_partition(_job(home), DAY, run_id="only-marker")


# -- what fails -----------------------------------------------------------------------------
@pytest.mark.parametrize("stray", ["part-0001.json", "part-0001.csv.tmp", "part-0001.parquet", "region=eu"])
def test_any_other_file_beside_the_data_fails_naming_it(home: Path, stray: str) -> None:
    folder = _folder(home)
    _csv(folder / "part-0000.csv", _frame())
    if "." in stray:
        (folder / stray).write_text("customer_id\n1\n")
    else:  # a sub-folder (nested partitioning) would be skipped just the same
        (folder / stray).mkdir()
        _csv(folder / stray / "part-0000.csv", _frame(seed=5))
    with pytest.raises(InputError) as err:
        local.run_partition(_job(home), DAY, run_id="stray")
    text = str(err.value)
    for fragment in (f"partition {DAY}", str(folder), repr(stray), "nothing was read", "source.ignore",
                     "re-run the partition"):
        assert fragment in text, text
    assert _rows_written() == 0


def test_the_sensor_sees_data_files_of_any_case_and_codec_but_no_markers(home: Path) -> None:
    folder = _folder(home)
    for name in ("part-0.CSV", "part-1.csv.GZ", "_SUCCESS", ".part-0.csv.crc", "notes.txt"):
        (folder / name).write_text("")
    assert [p.name for p in data_files(folder, "csv")] == ["part-0.CSV", "part-1.csv.GZ"]


# -- symlinks -------------------------------------------------------------------------------
def _secret(home: Path) -> Path:
    outside = home / "elsewhere"  # beside the source root (data/churn), not below it
    outside.mkdir(exist_ok=True)
    path = outside / "passwd"
    path.write_text(SECRET + "\n")
    return path


def test_a_symlink_leading_out_of_the_source_root_is_refused_quoting_nothing(home: Path) -> None:
    folder = _folder(home)
    _csv(folder / "part-0000.csv", _frame())
    (folder / "part-0002.csv").symlink_to(_secret(home))
    with pytest.raises(InputError) as err:
        local.run_partition(_job(home), DAY, run_id="link")
    text = str(err.value)
    assert "'part-0002.csv'" in text and "symlink leading out of the job's source root" in text, text
    assert "SECRET" not in text and "root:x" not in text
    assert _rows_written() == 0


def test_an_escaping_symlink_reaching_ingest_leaves_its_content_out_of_the_ledger(
        any_db: str, home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """In a DAG the sensor lets the folder through and ingest refuses it: the ledger row quotes nothing."""
    folder = _folder(home)
    _csv(folder / "part-0000.csv", _frame())
    (folder / "part-0002.csv").symlink_to(_secret(home))
    monkeypatch.setattr(FilesSource, "require", lambda *args, **kw: None)  # skip run_partition's pre-check
    with caplog.at_level(logging.DEBUG), pytest.raises(InputError) as err:
        local.run_partition(_job(home), DAY, run_id="link-ledger")
    row = ledger.get(_engine(), "churn_test", "link-ledger")
    assert (row["status"], row["failed_stage"]) == ("failed", "ingest")
    assert "'part-0002.csv'" in row["error"] and "symlink" in row["error"]
    for text in (str(err.value), row["error"], caplog.text):
        assert "SECRET" not in text and "root:x" not in text
    assert _rows_written() == 0


def test_a_partition_folder_linked_out_of_the_source_root_is_refused(home: Path) -> None:
    elsewhere = home / "elsewhere" / f"date={DAY}"
    elsewhere.mkdir(parents=True)
    _csv(elsewhere / "part-0000.csv", _frame())
    (home / "data" / "churn").mkdir(parents=True)
    (home / "data" / "churn" / f"date={DAY}").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(InputError, match="partition folder .* is a symlink .* leading out of the job's source root"):
        local.run_partition(_job(home), DAY, run_id="folder-link")


def test_a_symlink_within_the_source_root_is_read(home: Path) -> None:
    frame = _frame()
    shared = home / "data" / "churn" / "exports"
    shared.mkdir(parents=True)
    _csv(shared / "day.csv", frame)
    (_folder(home) / "part-0000.csv").symlink_to(shared / "day.csv")
    _every_row_scored(local.run_partition(_job(home), DAY, run_id="inner-link"), len(frame))


# -- types far into a file --------------------------------------------------------------------
def test_a_key_turning_to_text_after_the_first_block_names_file_column_and_value(home: Path) -> None:
    """Integer keys (entity_key_type: integer): a text key past the first block is named, not 'corrupt'."""
    frame = demo_data.customers(DAY, n=30_000, seed=3)
    frame["customer_id"] = frame["customer_id"].astype(object)
    frame.loc[len(frame) - 5, "customer_id"] = "C-17"
    path = _csv(_folder(home) / "part-0000.csv", frame)
    assert path.stat().st_size > 2 * (1 << 20)  # the text is well past the first block
    job = load_job(write_job(home, entity_key_type="integer", validation={"max_quarantine_share": 0.5},
                             source={"path": str(home / "data" / "churn"), "format": "csv", "batch_rows": 700}))
    with pytest.raises(InputError) as err:
        local.run_partition(job, DAY, run_id="late-text")
    text = str(err.value)
    for fragment in (f"partition {DAY}", f"file {path}", "column 'customer_id' (the entity key)", "'C-17'",
                     f"data row {len(frame) - 4}", "Fix the value in the export"):
        assert fragment in text, text
    assert "truncated or corrupt" not in text and "Traceback" not in text
    row = ledger.get(_engine(), "churn_test", "late-text")
    assert row["failed_stage"] == "ingest" and "'C-17'" in row["error"]
