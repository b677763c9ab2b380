"""pipeline.sources: one place chooses the source by kind; every source answers the same questions."""

from __future__ import annotations

import datetime as dt
import inspect
from pathlib import Path

import pytest

from pipeline.config import parse_job
from pipeline.errors import PartitionNotFoundError
from pipeline.sources import SOURCES, FilesSource, Source, SqlSource, source_for

DAY = dt.date(2026, 11, 20)
BASE = {"job_id": "t", "start_date": "2026-11-01", "entity_key": "id", "model": {"name": "m"},
        "output": {"table": "t"}}


def _files_job(root: Path):  # type: ignore[no-untyped-def]
    return parse_job({**BASE, "source": {"path": str(root), "format": "csv"}}, Path("t.yaml"))


def _sql_job():  # type: ignore[no-untyped-def]
    return parse_job({**BASE, "source": {"kind": "sql", "query": "SELECT * FROM f WHERE day = :partition_date",
                                         "connection": "src_db"}}, Path("t.yaml"))


def test_source_for_chooses_by_kind_and_every_source_has_the_protocols_methods(tmp_path: Path) -> None:
    assert type(source_for(_files_job(tmp_path))) is FilesSource
    assert type(source_for(_sql_job())) is SqlSource
    assert set(SOURCES) == {"files", "sql"}
    wanted = {name: inspect.signature(fn).parameters.keys() for name, fn in vars(Source).items()
              if callable(fn) and not name.startswith("_")}
    assert {"ready", "require", "where", "describe", "missing", "timeout_message", "empty", "plan", "read"} <= set(
        wanted)
    for cls in SOURCES.values():
        for name, params in wanted.items():
            assert list(inspect.signature(getattr(cls, name)).parameters) == list(params), (cls, name)


def test_a_files_source_is_ready_once_a_data_file_is_there_and_says_where_it_looked(tmp_path: Path) -> None:
    source = source_for(_files_job(tmp_path))
    folder = tmp_path / f"date={DAY}"
    assert not source.ready(DAY)
    assert source.where(DAY, ready=False) == f"at {folder}: not there yet (no *.csv files)"
    assert source.missing(DAY) == (f"no *.csv files at {folder}", "Check the upstream export")
    assert source.timeout_message(DAY) == (
        f"partition {DAY} of job t did not appear at {folder} within 360 minutes (no *.csv files). Check the "
        "upstream export; once the files are there, clear this task to retry.")
    with pytest.raises(PartitionNotFoundError, match="does not exist"):
        source.require(DAY)
    folder.mkdir()
    (folder / "_SUCCESS").write_text("")
    assert not source.ready(DAY)
    (folder / "part-0.csv").write_text("id\n1\n")
    (folder / "notes.txt").write_text("a stray file: the run refuses it, ingest records why")
    assert source.ready(DAY) and source.where(DAY, ready=True) == f"at {folder}: ready"
    source.require(DAY)  # there: an attempt opens (the stray file fails it in ingest, with a ledger row)
    assert source.empty(DAY, 1) == f"the 1 file(s) in {folder} hold no rows"


def test_a_sql_source_names_its_query_and_readiness_question() -> None:
    source = source_for(_sql_job())
    asked = "whether the query of source.query 'SELECT * FROM f WHERE day = :partition_date' on connection " \
            "'src_db' returns a row"
    assert source.where(DAY, ready=False) == f"not ready yet ({asked})"
    assert source.missing(DAY) == (f"{asked} never said so",
                                   "Check the upstream load (or the readiness query in the job file)")
    assert source.timeout_message(DAY).startswith(f"partition {DAY} of job t was not ready within 360 minutes: "
                                                  f"{asked} never said so.")
    assert source.empty(DAY, 0) == ("the query of source.query 'SELECT * FROM f WHERE day = :partition_date' on "
                                    "connection 'src_db' returned no rows")
