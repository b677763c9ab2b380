"""Verified or not loaded: a model version without an anchor in the registry database is never unpickled.

The anchors of a models folder live in one registry database (``SCORING_REGISTRY_DB``, default the
``scoring_db`` connection), whatever database a job writes its predictions to. A malicious pickle
here writes a marker file when it is unpickled; every test asserts the marker never appears.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from pipeline import local
from pipeline.anchors import Anchors, sha256_bytes
from pipeline.config import load_job
from pipeline.errors import ConfigError, ModelIntegrityError
from pipeline.registry import Registry
from pipeline.store import engines
from tests.conftest import DAY, scoring_cli, with_challenger, write_job, write_partition


def plant(home: Path, name: str, version: int, artifact: bytes, alias: str | None = "champion") -> Path:
    """A version folder made by hand from churn v1's: the given artifact, a card rewritten to match it (so the card
    alone vouches for it), what an attacker with write access to the models folder only can do."""
    folder = home / "models" / name / f"v{version}"
    shutil.copytree(home / "models" / "churn" / "v1", folder)
    (folder / "model.joblib").write_bytes(artifact)
    card = json.loads((folder / "card.json").read_text())
    card.update(name=name, version=version, sha256=sha256_bytes(artifact))
    (folder / "card.json").write_text(json.dumps(card))
    if alias:
        aliases = folder.parent / "aliases.json"
        doc = json.loads(aliases.read_text()) if aliases.exists() else {"aliases": {}, "history": []}
        doc["aliases"][alias] = version
        aliases.write_text(json.dumps(doc))
    return folder


def unaliased(home: Path, name: str) -> None:
    """No alias points at any version of the model any more (so that one can be archived)."""
    aliases = home / "models" / name / "aliases.json"
    aliases.write_text(json.dumps({**json.loads(aliases.read_text()), "aliases": {}}))


def _ledger(conn_id: str, run_id: str) -> tuple[str, str]:
    with engines.for_connection(conn_id).connect() as conn:
        return conn.execute(sa.text("SELECT status, error FROM scoring_runs WHERE run_id = :r"), {"r": run_id}).one()


# -- refused by default, whatever the job writes to ----------------------------------------------------------
def test_an_unanchored_malicious_model_never_runs_whatever_the_job_writes_to(any_db: str, home: Path,
                                                                            evil: bytes) -> None:
    plant(home, "planted", 1, evil)
    write_partition(home, n=200)
    job = load_job(write_job(home, model={"name": "planted", "ref": "champion"}))
    with pytest.raises(ModelIntegrityError, match=r"(?s)model planted v1 .* is NOT anchored in the registry database "
                                                  r"sqlite .*registry\.db.*Refusing to load it.*scoring models anchor "
                                                  r"planted 1"):
        local.run_partition(job, DAY, run_id="planted")
    status, error = _ledger("scoring_db", "planted")  # the job's own database (SQLite or PostgreSQL) says why
    assert status == "failed" and "is NOT anchored" in error


@pytest.mark.postgres
def test_a_postgresql_job_checks_the_anchor_the_demo_wrote_in_its_sqlite_registry(
        home: Path, pg_url: str, evil: bytes, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The issue's case: make demo anchored the models in its SQLite database (scoring_db), the job writes to
    PostgreSQL: the anchor is read where it was written, so a rewritten artifact and card are refused."""
    sqlite = f"sqlite:///{home / 'scoring.db'}"
    monkeypatch.delenv("SCORING_REGISTRY_DB")  # the default: the registry database is the scoring_db connection
    monkeypatch.setenv("AIRFLOW_CONN_SCORING_DB", sqlite)  # make demo's database
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", pg_url)  # the job's output
    engines.engine_for.cache_clear()
    assert [a.version for a in Registry().anchor("churn")] == [1]  # anchored in make demo's SQLite database
    write_partition(home, n=300)
    job = load_job(write_job(home, output={"table": "churn_pg_predictions", "connection": "warehouse"}))
    with caplog.at_level(logging.WARNING):
        assert local.run_partition(job, DAY, run_id="ok")["status"] == "success"
    assert "NOT anchored" not in caplog.text and "UNVERIFIED" not in caplog.text
    assert not Anchors(engines.engine_for(engines.url_from_uri(pg_url))).of("churn"), "no anchor in the output database"
    v1 = home / "models" / "churn" / "v1"
    (v1 / "model.joblib").write_bytes(evil)
    card = json.loads((v1 / "card.json").read_text())
    (v1 / "card.json").write_text(json.dumps({**card, "sha256": sha256_bytes(evil)}))
    with pytest.raises(ModelIntegrityError, match="churn v1: its card .* the card was changed after registration"):
        local.run_partition(job, DAY, run_id="tampered")
    status, error = _ledger("warehouse", "tampered")
    assert status == "failed" and "the card was changed after registration" in error


def test_with_no_registry_database_every_model_is_refused(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCORING_REGISTRY_DB", "nowhere")  # names a connection that is not set
    write_partition(home, n=200)
    job = load_job(write_job(home))
    with pytest.raises(ModelIntegrityError, match=r"(?s)model churn v1 .* cannot be checked against an anchor: no "
                                                  r"registry database is configured: the connection 'nowhere' "
                                                  r"\(SCORING_REGISTRY_DB.*AIRFLOW_CONN_NOWHERE"):
        local.run_partition(job, DAY, run_id="nowhere")


def test_models_verify_refuses_an_unanchored_malicious_model(home: Path, evil: bytes) -> None:
    plant(home, "planted", 1, evil)
    out = scoring_cli("models", "verify", "planted", "1")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "planted v1" in out.stderr and "is NOT anchored in the registry database" in out.stderr
    assert "Traceback" not in out.stderr and "sha256 ok" not in out.stdout


def test_a_malicious_challenger_is_refused_and_the_champion_publishes(any_db: str, home: Path, evil: bytes,
                                                                     challenger_models: Path) -> None:
    with_challenger(home, challenger_models)
    shutil.rmtree(home / "models" / "churn" / "v2")
    plant(home, "churn", 2, evil, alias="challenger")  # v2's anchor says otherwise: the card was rewritten
    plant(home, "churn", 3, evil, alias=None)  # no anchor at all for v3
    write_partition(home, n=300)
    job = load_job(write_job(home, model={"name": "churn", "ref": "champion", "challengers": ["challenger", 3]}))
    assert local.run_partition(job, DAY, run_id="shadow")["status"] == "success"
    with engines.for_connection("scoring_db").connect() as conn:
        rows = dict(conn.execute(sa.text("SELECT challenger_ref, error FROM scoring_shadow_comparisons "
                                         "WHERE status = 'failed'")).all())
    assert "the card was changed after registration" in rows["challenger"]
    assert "churn v3" in rows["3"] and "has no registration record" in rows["3"]


def test_a_cascade_with_an_unanchored_route_model_is_refused_at_start(home: Path, cascade_home: Path,
                                                                      evil: bytes) -> None:
    shutil.rmtree(home / "models" / "churn_occasional")
    plant(home, "churn_occasional", 1, evil)
    anchors = Registry().anchors
    with engines.begin(anchors.engine) as conn:  # the planted model has no anchor at all
        conn.execute(sa.text("DELETE FROM scoring_model_registrations WHERE model_name = 'churn_occasional'"))
    write_partition(home, n=300)
    job = load_job(write_job(home, model={"name": "segments"}, cascade={
        "routes": {"frequent": {"name": "churn_frequent"}, "occasional": {"name": "churn_occasional"}},
        "default": "quarantine"}))
    with pytest.raises(ModelIntegrityError, match="model churn_occasional v1 .* is NOT anchored"):
        local.run_partition(job, DAY, run_id="cascade")


# -- the development opt-out ---------------------------------------------------------------------------------
def test_the_opt_out_loads_an_unanchored_model_and_says_so_at_each_load(
        home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    shutil.copytree(home / "models" / "churn", home / "models" / "unanchored")  # a benign model with no anchor
    registry = Registry()
    with pytest.raises(ModelIntegrityError, match="SCORING_ALLOW_UNANCHORED=1 loads it anyway, for development only"):
        registry.resolve("unanchored", 1)
    monkeypatch.setenv("SCORING_ALLOW_UNANCHORED", "1")
    mv = registry.resolve("unanchored", 1)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        registry.load(mv)
        registry.load(mv)
    warnings = [r for r in caplog.records if "UNVERIFIED MODEL: model unanchored v1" in r.getMessage()]
    assert len(warnings) == 2 and all(r.levelno == logging.WARNING for r in warnings)
    assert "SCORING_ALLOW_UNANCHORED=1 (development only)" in warnings[0].getMessage()
    write_partition(home, n=200)
    job = load_job(write_job(home, model={"name": "unanchored", "ref": "champion"}))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert local.run_partition(job, DAY, run_id="dev")["status"] == "success"
    assert "UNVERIFIED MODEL: model unanchored v1" in caplog.text


def test_registering_needs_the_registry_database(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    v1 = Registry().resolve("churn", 1)
    monkeypatch.setenv("SCORING_REGISTRY_DB", "nowhere")
    card = {k: v for k, v in v1.card.items() if k not in ("sha256", "version", "name", "registered_at")}
    with pytest.raises(ConfigError, match="models register churn: .*no registry database is configured.*Nothing was "
                                          "changed"):
        Registry().register("churn", v1.artifact, card, golden=v1.golden)
    assert Registry().versions("churn") == [1]


# -- delete --------------------------------------------------------------------------------------------------
def test_delete_without_the_registry_database_refuses_and_changes_nothing(home: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    unaliased(home, "churn")
    Registry().archive("churn", 1)
    monkeypatch.setenv("SCORING_REGISTRY_DB", "nowhere")
    out = scoring_cli("models", "delete", "churn", "1")
    assert out.returncode == 2 and "deleted" not in out.stdout, out.stdout
    assert "models delete churn v1: the deletion must be recorded in the registry database" in out.stderr
    assert "AIRFLOW_CONN_NOWHERE" in out.stderr and "Traceback" not in out.stderr
    assert (home / "models" / "churn" / "archive" / "v1" / "model.joblib").exists()


@pytest.mark.parametrize("allow", [False, True], ids=["default", "opt-out"])
def test_a_deleted_version_put_back_never_loads_again(home: Path, monkeypatch: pytest.MonkeyPatch,
                                                      allow: bool) -> None:
    kept = home / "v1-copy"
    shutil.copytree(home / "models" / "churn" / "v1", kept)
    unaliased(home, "churn")
    Registry().archive("churn", 1)
    out = scoring_cli("models", "delete", "churn", "1")
    assert out.returncode == 0 and "churn v1 deleted" in out.stdout, out.stderr
    assert Registry().anchors.of("churn")[1].deleted_at is not None
    shutil.copytree(kept, home / "models" / "churn" / "v1")  # the folder restored from a backup
    if allow:
        monkeypatch.setenv("SCORING_ALLOW_UNANCHORED", "1")
    with pytest.raises(ModelIntegrityError, match=r"churn v1 was deleted on .*never reused"):
        Registry().resolve("churn", 1)


def test_deleting_a_version_that_had_no_anchor_leaves_a_tombstone(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(home / "models" / "churn", home / "models" / "legacy")  # registered before anchors existed
    kept = home / "legacy-v1"
    shutil.copytree(home / "models" / "legacy" / "v1", kept)
    registry = Registry()
    unaliased(home, "legacy")
    registry.archive("legacy", 1)
    registry.delete("legacy", 1)
    assert registry.anchors.of("legacy")[1].deleted_at is not None
    shutil.copytree(kept, home / "models" / "legacy" / "v1")
    monkeypatch.setenv("SCORING_ALLOW_UNANCHORED", "1")  # not even the opt-out brings a deleted version back
    with pytest.raises(ModelIntegrityError, match="legacy v1 was deleted on"):
        registry.resolve("legacy", 1)


def test_outcomes_refuse_a_card_changed_after_registration(home: Path) -> None:
    """Realised performance reads the card (task, classes, positive class): a rewritten one is refused, not used."""
    import datetime as dt

    import pandas as pd

    from pipeline import outcomes

    write_partition(home, n=300)
    job = load_job(write_job(home, outcomes={"path": str(home / "outcomes"), "label": "churned", "horizon_days": 1}))
    assert local.run_partition(job, DAY, run_id="ok")["status"] == "success"
    frame = pd.concat([pd.read_parquet(p) for p in sorted((home / "data" / "churn" / f"date={DAY}").glob("*.parquet"))])
    folder = home / "outcomes" / f"date={DAY + dt.timedelta(days=1)}"
    folder.mkdir(parents=True)
    frame.assign(churned=1)[["customer_id", "churned"]].to_parquet(folder / "part-0000.parquet", index=False)
    assert outcomes.evaluate(job, DAY), "judged on the anchored card"
    card_path = home / "models" / "churn" / "v1" / "card.json"
    card = json.loads(card_path.read_text())
    card_path.write_text(json.dumps({**card, "positive_class": card["classes"][0]}))  # flips what the scores mean
    with pytest.raises(ModelIntegrityError, match="churn v1: its card .* the card was changed after registration"):
        outcomes.evaluate(job, DAY)
