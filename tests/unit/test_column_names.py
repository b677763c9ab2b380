"""The user's column names (any spelling, validated and quoted), source.rename and blank_is_missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from pipeline import steps
from pipeline.config import RESERVED_INPUT_NAMES, check_column_name, parse_job
from pipeline.context import RunContext
from pipeline.errors import ConfigError, InputError
from pipeline.ingest import ingest_partition
from pipeline.kernels.columns import BLANK_PREFIX, RAW_PREFIX
from pipeline.kernels.conform import blank_policy, ingested_schema, original_values
from pipeline.partition import parse_date
from pipeline.registry import ModelVersion
from pipeline.sources.files import ingest_files as ingest
from pipeline.staging import RunSpec, read_batches
from pipeline.store import engines, job_tables, naming, sqlfiles
from pipeline.validate import validate_file

DAY = "2026-11-20"
INPUTS = [{"name": "age", "type": "float", "nullable": False, "min": 0, "max": 120},
          {"name": "visits", "type": "int", "nullable": True},
          {"name": "plan", "type": "category", "nullable": False, "categories": ["a", "b"]}]
JOB = {"job_id": "t", "start_date": "2026-11-01", "entity_key": "id",
       "source": {"path": "data"}, "model": {"name": "m", "ref": "1"}, "output": {"table": "t_predictions"}}


def _job(**changes: Any) -> Any:
    return parse_job({**JOB, **changes}, Path("t.yaml"))


# -- check_column_name ----------------------------------------------------------------
@pytest.mark.parametrize("name", ["customerID", "customer ID", "Total Charges", "naïve é", "x" * 63, "é" * 31,
                                  'we"ird', "a; DROP TABLE t; --", "select", "Customer-ID (v2)", "_private",
                                  "predictions"])
def test_any_name_a_file_can_have_is_a_column_name(name: str) -> None:
    assert check_column_name(name, "entity_key") == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "entity_key '' is not allowed: a column name must be a non-empty string"),
        ("x" * 64, "is 64 bytes long in UTF-8; PostgreSQL allows at most 63"),
        ("é" * 32, "is 64 bytes long in UTF-8"),  # 32 characters, 64 bytes
        ("a\x00b", "control character(s) U+0000"),
        ("line\nbreak", "control character(s) U+000A"),
        ("tab\there", "U+0009"),
        ("__raw__age", "names starting with '__' are reserved for the pipeline's own columns"),
        ("__flags", "reserved for the pipeline's own columns"),
        ("score", "the pipeline adds a column of that name beside it"),
        ("Partition_Date", "compared without case"),
        ("FLAGS", "reserved: arm, flags, model_name"),
        ("reasons", "reserved:"),
        ("rank", "reserved:"),
    ],
)
def test_refused_column_names_say_why_and_name_the_key(name: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_column_name(name, "entity_key")
    text = str(err.value)
    assert text.startswith(f"entity_key {name!r} is not allowed")
    assert message in text
    if name:
        assert "source.rename" in text  # the way out


def test_an_input_column_may_be_named_like_a_predictions_column_but_not_reasons() -> None:
    assert check_column_name("Score", "input", reserved=RESERVED_INPUT_NAMES) == "Score"
    with pytest.raises(ConfigError, match="input 'reasons' is not allowed"):
        check_column_name("reasons", "input", reserved=RESERVED_INPUT_NAMES)


def test_the_job_file_accepts_a_mixed_case_key_and_names_the_key_of_a_bad_one() -> None:
    assert _job(entity_key="customer ID").entity_key == "customer ID"
    with pytest.raises(ConfigError) as err:
        _job(entity_key="__row")
    assert "t.yaml: key 'entity_key'" in str(err.value)
    assert "entity_key '__row' is not allowed: names starting with '__'" in str(err.value)
    with pytest.raises(ConfigError, match="entity_key 'Score' is not allowed"):
        _job(entity_key="Score")


def test_the_rename_map_refuses_two_columns_onto_one_name_and_bad_targets() -> None:
    job = _job(source={"path": "data", "rename": {"Customer ID": "id", "Age (years)": "age"}})
    assert job.source.rename == {"Customer ID": "id", "Age (years)": "age"}
    with pytest.raises(ConfigError) as err:
        _job(source={"path": "data", "rename": {"Customer ID": "id", "customerID": "id"}})
    assert "key 'source.rename'" in str(err.value)
    assert "'Customer ID' and 'customerID' are both renamed to 'id'" in str(err.value)
    with pytest.raises(ConfigError, match=r"source\.rename\['Flags'\] '__flags' is not allowed"):
        _job(source={"path": "data", "rename": {"Flags": "__flags"}})
    assert _job().source.rename == {}


def test_blank_is_missing_in_the_job_file_is_a_list_or_true() -> None:
    assert _job().validation.blank_is_missing is False
    assert _job(validation={"blank_is_missing": True}).validation.blank_is_missing is True
    assert _job(validation={"blank_is_missing": ["age"]}).validation.blank_is_missing == ["age"]
    with pytest.raises(ConfigError, match="validation.blank_is_missing"):
        _job(validation={"blank_is_missing": {"age": 1}})


# -- the store's quoting --------------------------------------------------------------
@pytest.mark.parametrize("url", ["sqlite://", "postgresql+psycopg://u@127.0.0.1/db"])
def test_column_names_are_quoted_with_embedded_quotes_doubled(url: str) -> None:
    engine = sa.create_engine(url)  # no connection: only the dialect's identifier preparer
    assert naming.quote_column(engine, 'we"ird') == '"we""ird"'
    assert naming.quote_column(engine, "customer ID") == '"customer ID"'
    assert naming.quote_column(engine, "customer_id") == '"customer_id"'  # always quoted: one spelling
    with pytest.raises(ConfigError, match="entity_key '__x' is not allowed"):
        naming.quote_column(engine, "__x")


def test_the_predictions_ddl_quotes_the_key_and_keeps_table_names_strict() -> None:
    engine = engines.engine_for("sqlite://")
    create = sqlfiles.render_sql(engine, "010_predictions.sql", predictions="p", key='a"; DROP TABLE p; --',
                              key_type="str")[0]
    assert '    "a""; DROP TABLE p; --"           TEXT NOT NULL,' in create.splitlines()
    assert 'PRIMARY KEY (partition_date, "a""; DROP TABLE p; --")' in create
    fill = sqlfiles.render_sql(engine, "022_latest_fill.sql", predictions="p", key="customer ID", literals={"table": "p"},
                            quoted={"current": '"p_current"', "newest": '"n"', "columns": "", "p_columns": ""})
    assert 'SELECT "customer ID" AS k' in fill[0] and 'ON p."customer ID" = m.k' in fill[0]
    with pytest.raises(ConfigError, match="entity_key '' is not allowed"):
        sqlfiles.render_sql(engine, "010_predictions.sql", predictions="p", key="", key_type="int")
    with pytest.raises(ConfigError, match="name 'My Table' is not allowed|identifier 'My Table' is not allowed"):
        sqlfiles.render_sql(engine, "010_predictions.sql", predictions="My Table", key="customer ID", key_type="int")


def test_a_key_with_a_quote_and_sql_in_its_name_is_one_column_in_sqlite(tmp_path: Path) -> None:
    engine = engines.engine_for(f"sqlite:///{tmp_path / 'q.db'}")
    key = 'cust "ID"; DROP TABLE p; --'
    job_tables.ensure_predictions(engine, "p", key, "str")
    with engine.connect() as conn:
        columns = [r[1] for r in conn.exec_driver_sql("PRAGMA table_info(p)")]
        tables = {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master")}
    assert columns == ["partition_date", key, "prediction", "score", "model_name", "model_version", "run_id",
                       "scored_at", "flags", "route", "router_model", "router_version", "arm"]
    assert {"p", "p_latest", "p_daily"} <= tables


# -- ingest: source.rename ------------------------------------------------------------
def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "data" / f"date={DAY}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _ingest(files: list[Path], fmt: str, key: str = "id", batch_rows: int = 2,
            **kw: Any) -> tuple[list[dict[str, Any]], Any]:
    tables: list[pa.Table] = []
    result = ingest(files, fmt=fmt, inputs=INPUTS, key=key, partition_date=parse_date(DAY), batch_rows=batch_rows,
                    write=tables.append, **kw)
    return [r for t in tables for r in t.to_pylist()], result


RENAME = {"Customer ID": "id", "Age (years)": "age", "Visits": "visits"}


def test_csv_columns_are_renamed_before_any_check(tmp_path: Path) -> None:
    path = _folder(tmp_path) / "p.csv"
    path.write_text("Customer ID,Age (years),Visits,plan,Notes\nC-1,30,2,a,x\nC-2, 41 ,,b,y\nC-3,abc,1,a,z\n")
    rows, result = _ingest([path], "csv", rename=RENAME)
    assert result.schema == ingested_schema("csv", INPUTS, "id", pa.string())
    assert [(r["id"], r["age"], r["visits"], r["plan"], r["__raw__age"]) for r in rows] == [
        ("C-1", 30.0, 2.0, "a", None), ("C-2", 41.0, None, "b", None), ("C-3", None, 1.0, "a", "abc")]
    assert result.rows == 3 and result.ignored_columns == ["Notes"]


def test_parquet_columns_are_renamed_and_each_file_may_use_either_name(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    pq.write_table(pa.table({"Customer ID": ["a", "b"], "Age (years)": [1.0, 2.0], "visits": [1, 2],
                             "plan": ["a", "b"]}), folder / "0.parquet")
    pq.write_table(pa.table({"id": ["c", "a"], "age": [3.0, 4.0], "Visits": [3, 4], "plan": ["a", "a"]}),
                   folder / "1.parquet")
    rows, result = _ingest([folder / "0.parquet", folder / "1.parquet"], "parquet", rename=RENAME)
    assert [(r["id"], r["age"], r["visits"]) for r in rows] == [("a", 1.0, 1.0), ("b", 2.0, 2.0), ("c", 3.0, 3.0),
                                                              ("a", 4.0, 4.0)]
    assert result.duplicate_keys == ["a"]


def test_a_key_spelled_as_the_export_spells_it_needs_no_rename(tmp_path: Path) -> None:
    path = _folder(tmp_path) / "p.csv"
    path.write_text("customerID,age,visits,plan\nX9,30,1,a\n")
    rows, _ = _ingest([path], "csv", key="customerID")
    assert [{k: v for k, v in r.items() if not k.startswith(("__blank__", "__badtext__"))} for r in rows] == [
        {"customerID": "X9", "age": 30.0, "visits": 1.0, "plan": "a", "__raw__age": None, "__raw__visits": None}]


def test_a_missing_entity_key_blames_the_job_file_and_suggests_rename(tmp_path: Path) -> None:
    path = _folder(tmp_path) / "p.csv"
    path.write_text("customerID,age,visits,plan\nX9,30,1,a\n")
    with pytest.raises(InputError) as err:
        _ingest([path], "csv", key="customer_id")
    text = str(err.value)
    assert f"file {path} has no column 'customer_id' named by the job file's entity_key 'customer_id'" in text
    assert "did you mean 'customerID'?" in text
    assert "source.rename: {'customerID': 'customer_id'}" in text
    assert "input contract" not in text, "the contract is not to blame for the job file's key"


def test_a_missing_contract_column_blames_the_contract(tmp_path: Path) -> None:
    path = _folder(tmp_path) / "p.csv"
    path.write_text("id,Age,plan\n1,30,a\n")
    with pytest.raises(InputError) as err:
        _ingest([path], "csv")
    text = str(err.value)
    assert f"file {path} has no column(s) age, visits required by the model's input contract" in text
    assert "(found: id, Age, plan)" in text and "'Age' for 'age'" in text
    assert "entity_key" not in text


def test_a_missing_key_and_contract_column_are_both_reported_with_renamed_names(tmp_path: Path) -> None:
    path = _folder(tmp_path) / "p.csv"
    path.write_text("Key,Age (years),plan\n1,30,a\n")
    with pytest.raises(InputError) as err:
        _ingest([path], "csv", rename={"Age (years)": "age"})
    text = str(err.value)
    assert "the job file's entity_key 'id'" in text and "column(s) visits required by the model's input" in text
    assert "(found: Key, Age (years) (renamed age), plan)" in text


def test_a_rename_onto_a_name_the_file_has_names_both_columns(tmp_path: Path) -> None:
    path = _folder(tmp_path) / "p.parquet"
    pq.write_table(pa.table({"id": [1], "Age": [1.0], "age": [2.0], "visits": [1], "plan": ["a"]}), path)
    with pytest.raises(InputError) as err:
        _ingest([path], "parquet", rename={"Age": "age"})
    text = str(err.value)
    assert f"file {path}: source.rename maps column(s) 'Age' onto 'age', a name the file already has" in text
    assert "columns 'Age', 'age' would all be 'age'" in text


def test_a_swap_of_two_names_is_not_a_collision(tmp_path: Path) -> None:
    path = _folder(tmp_path) / "p.parquet"
    pq.write_table(pa.table({"id": [1], "age": [7], "visits": [40.0], "plan": ["a"]}), path)
    rows, _ = _ingest([path], "parquet", rename={"age": "visits", "visits": "age"})
    assert (rows[0]["age"], rows[0]["visits"]) == (40.0, 7.0)


def test_a_bad_contract_column_name_is_refused_naming_the_contract(tmp_path: Path) -> None:
    path = _folder(tmp_path) / "p.csv"
    path.write_text("id,reasons\n1,2\n")
    with pytest.raises(ConfigError, match="the model's input contract column 'reasons' is not allowed"):
        ingest([path], fmt="csv", inputs=[{"name": "reasons", "type": "float"}], key="id",
               partition_date=parse_date(DAY), batch_rows=2, write=lambda t: None)


# -- ingest: blank_is_missing ---------------------------------------------------------
BLANKS_CSV = 'id,age,visits,plan\n1,30,1,a\n2," ",2,a\n3,,3,b\n4,"\t",4,a\n5,forty-two,5,b\n6, 7 , ,a\n'


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_blank_text_is_missing_only_with_the_policy(tmp_path: Path, fmt: str) -> None:
    folder = _folder(tmp_path)
    if fmt == "csv":
        (path := folder / "p.csv").write_text(BLANKS_CSV)
        blank_age = [None, " ", None, "\t", None, None]
    else:  # a text column in Parquet: the empty string is text too (not a null as in CSV)
        pq.write_table(pa.table({"id": [1, 2, 3, 4, 5, 6], "age": ["30", " ", "", "\t", "forty-two", " 7 "],
                                 "visits": ["1", "2", "3", "4", "5", " "], "plan": list("aabab") + ["a"]}),
                       path := folder / "p.parquet")
        blank_age = [None, " ", "", "\t", None, None]
    strict, result = _ingest([path], fmt, batch_rows=100)  # one batch (a batch of only bad numbers: issue 13)
    assert result.schema == ingested_schema(fmt, INPUTS, "id", pa.string() if fmt == "csv" else pa.int64())
    assert [r["age"] for r in strict] == [30.0, None, None, None, None, 7.0]
    assert [r[RAW_PREFIX + "age"] for r in strict] == [None, " ", None if fmt == "csv" else "", "\t", "forty-two",
                                                      None]
    assert [r[RAW_PREFIX + "visits"] for r in strict] == [None] * 5 + [" "]

    lenient, result = _ingest([path], fmt, blank_is_missing=["age", "visits"])  # batches of 2 rows
    assert result.schema.names == (
        ["id", "age", "visits", "plan", "__raw__age", "__raw__visits", "__blank__id", "__blank__age",
         "__blank__visits", "__blank__plan", "__badtext__id", "__badtext__age", "__badtext__visits", "__badtext__plan"]
        if fmt == "csv" else
        ["id", "age", "visits", "plan", "__raw__age", "__raw__visits", "__blank__age", "__blank__visits",
         "__badtext__plan"])
    assert [r["age"] for r in lenient] == [30.0, None, None, None, None, 7.0]
    assert [r[RAW_PREFIX + "age"] for r in lenient] == [None, None, None, None, "forty-two", None]
    assert [r[BLANK_PREFIX + "age"] for r in lenient] == blank_age
    assert [(r["visits"], r[RAW_PREFIX + "visits"], r[BLANK_PREFIX + "visits"]) for r in lenient][-1] == (
        None, None, " ")


def test_a_file_of_only_blanks_is_quarantined_by_row_and_missing_with_the_policy(tmp_path: Path) -> None:
    path = _folder(tmp_path) / "p.parquet"
    pq.write_table(pa.table({"id": [1, 2], "age": [" ", ""], "visits": [1, 2], "plan": ["a", "b"]}), path)
    strict, _ = _ingest([path], "parquet")  # blanks are invalid numbers (quarantined), not a changed column type
    assert [(r["age"], r["__raw__age"]) for r in strict] == [(None, " "), (None, "")]
    rows, _ = _ingest([path], "parquet", blank_is_missing=["age"])
    assert [(r["age"], r["__raw__age"]) for r in rows] == [(None, None), (None, None)]


def test_blank_policy_joins_the_card_and_the_job_file() -> None:
    card = [dict(INPUTS[0]), dict(INPUTS[1], blank_is_missing=True), dict(INPUTS[2])]
    assert blank_policy(INPUTS) == []
    assert blank_policy(card) == ["visits"]
    assert blank_policy(card, ["age"]) == ["age", "visits"]
    assert blank_policy(INPUTS, True) == ["age", "visits"]
    assert blank_policy(card, False) == ["visits"]
    with pytest.raises(ConfigError) as err:
        blank_policy(INPUTS, ["age", "plan", "tenure"])
    text = str(err.value)
    assert "validation.blank_is_missing names column(s) that are not numeric" in text
    assert "'plan' (category), 'tenure' (not in the contract)" in text
    assert "numeric columns: age, visits" in text


def _ctx(tmp_path: Path, card_inputs: list[dict[str, Any]], **validation: Any) -> RunContext:
    job = parse_job({**JOB, "entity_key": "Customer ID",
                     "source": {"path": str(tmp_path / "data"), "format": "csv", "batch_rows": 4,
                                "rename": {"AGE": "age"}},
                     "validation": {"max_quarantine_share": 1.0, **validation}}, Path("t.yaml"))
    stage = tmp_path / "stage"
    stage.mkdir(exist_ok=True)
    spec = RunSpec(job_id="t", run_id="r1", attempt=1, partition_date=DAY, model_name="m", model_version=1,
                   dry_run=False, staging_dir=str(stage))
    card = {"name": "m", "version": 1, "inputs": card_inputs}
    return RunContext(job=job, spec=spec, model=ModelVersion("m", 1, tmp_path / "model", card), engine=None)


def _staged(path: Path) -> list[dict[str, Any]]:
    return [r for b in read_batches(path, 100) for r in b.to_pylist()]


@pytest.mark.parametrize("where", ["job", "card"])
def test_the_stage_reads_the_policy_and_validation_quarantines_a_blank_that_may_not_be_null(
        tmp_path: Path, where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCORING_REPORTS_DIR", str(tmp_path / "reports"))
    (_folder(tmp_path) / "p.csv").write_text(
        'Customer ID,AGE,visits,plan\nk1,30,1,a\nk2," ",2,a\nk3,31," ",b\nk4,oops,4,a\n')
    card_inputs = [dict(c) for c in INPUTS]
    validation: dict[str, Any] = {}
    if where == "card":
        card_inputs[0]["blank_is_missing"] = card_inputs[1]["blank_is_missing"] = True
    else:
        validation["blank_is_missing"] = ["age", "visits"]
    ctx = _ctx(tmp_path, card_inputs, **validation)
    assert ingest_partition(ctx) == {"rows_in": 4}
    validate_file(ctx)
    assert [(r["Customer ID"], r["visits"]) for r in _staged(ctx.path(steps.VALID))] == [("k1", 1.0), ("k3", None)]
    quarantined = {r["Customer ID"]: r for r in _staged(ctx.path(steps.QUARANTINE))}
    assert {k: r["reasons"] for k, r in quarantined.items()} == {
        "k2": "not_null:age", "k4": "not_null:age; invalid_number:age"}
    assert original_values(quarantined["k2"]) == {"Customer ID": "k2", "age": " ", "visits": 2.0, "plan": "a",
                                                  "reasons": "not_null:age"}
    assert original_values(quarantined["k4"])["age"] == "oops"


def test_without_the_policy_the_stage_quarantines_blanks_as_invalid_numbers(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCORING_REPORTS_DIR", str(tmp_path / "reports"))
    (_folder(tmp_path) / "p.csv").write_text('Customer ID,AGE,visits,plan\nk1,30,1,a\nk3,31," ",b\n')
    ctx = _ctx(tmp_path, INPUTS)
    ingest_partition(ctx)
    validate_file(ctx)
    assert {r["Customer ID"]: r["reasons"] for r in _staged(ctx.path(steps.QUARANTINE))} == {
        "k3": "invalid_number:visits"}
    assert original_values(_staged(ctx.path(steps.QUARANTINE))[0])["visits"] == " "


def test_the_stage_refuses_a_policy_on_a_category_column(tmp_path: Path) -> None:
    (_folder(tmp_path) / "p.csv").write_text("Customer ID,AGE,visits,plan\nk1,30,1,a\n")
    ctx = _ctx(tmp_path, INPUTS, blank_is_missing=["plan"])
    with pytest.raises(ConfigError, match=r"validation\.blank_is_missing .*'plan' \(category\)"):
        ingest_partition(ctx)
