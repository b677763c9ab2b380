"""Load what was verified: one read of the artifact, hashed and unpickled; the registration anchored in the database.

A malicious pickle here writes a marker file when it is unpickled: every test asserts the marker never
appears, whatever was swapped or rewritten in the models folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import pytest
import sqlalchemy as sa
from sklearn.linear_model import LogisticRegression

from pipeline import local
from pipeline.anchors import TABLE, Anchors, sha256_bytes
from pipeline.config import load_job
from pipeline.errors import ModelIntegrityError
from pipeline.registry import Registry
from pipeline.store import engines
from tests.conftest import DAY, ROOT, write_job, write_partition

X = pd.DataFrame({"Age": [20.0, 30.0, 40.0, 50.0, 60.0, 70.0], "Plan": [0.0, 1.0, 0.0, 1.0, 1.0, 0.0]})
Y = [0, 0, 1, 0, 1, 1]
CARD = {"inputs": [{"name": "Age", "type": "float"}, {"name": "Plan", "type": "float"}],
        "preprocess": {"name": "identity", "version": 1}, "task": "binary_classification", "classes": [0, 1],
        "positive_class": 1}


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    path = tmp_path / "good.joblib"
    joblib.dump(LogisticRegression().fit(X, Y), path)
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    url = (engines.url_from_uri(request.getfixturevalue("pg_url")) if request.param == "postgresql"
           else f"sqlite:///{tmp_path / 'scoring.db'}")
    engines.engine_for.cache_clear()
    return engines.engine_for(url)


def _registry(tmp_path: Path, engine: Any) -> Registry:
    return Registry(tmp_path / "models", anchors=Anchors(engine))


def _rewrite_card(path: Path, **changes: Any) -> None:
    card = json.loads((path / "card.json").read_text())
    card.update(changes)
    (path / "card.json").write_text(json.dumps(card))


def test_registration_records_the_anchor_in_the_database(tmp_path: Path, engine: Any, artifact: Path) -> None:
    mv = _registry(tmp_path, engine).register("m", artifact, CARD, alias="champion")
    with engine.connect() as conn:
        row = conn.execute(sa.text(f"SELECT * FROM {TABLE}")).mappings().one()
    assert (row["model_name"], row["version"], row["origin"]) == ("m", 1, "registered")
    assert row["artifact_sha256"] == mv.card["sha256"] == sha256_bytes(artifact.read_bytes())
    assert row["card_sha256"] == sha256_bytes((mv.path / "card.json").read_bytes())
    assert row["registered_by"] and row["registered_at"] is not None and row["deleted_at"] is None
    assert _registry(tmp_path, engine).load(_registry(tmp_path, engine).resolve("m", "champion")).predict(X).shape == (6,)


def test_an_artifact_swapped_after_registration_is_never_unpickled(tmp_path: Path, engine: Any, artifact: Path,
                                                                   evil: bytes) -> None:
    registry = _registry(tmp_path, engine)
    mv = registry.register("m", artifact, CARD)
    resolved = registry.resolve("m", 1)  # resolved (card checked) before the swap, loaded after it
    mv.artifact.write_bytes(evil)
    with pytest.raises(ModelIntegrityError, match=r"m v1: artifact .* but the artifact registered on .* had "
                                                  r"[0-9a-f]{64} .*Refusing to unpickle"):
        registry.load(resolved)


def test_artifact_and_card_rewritten_together_are_refused_by_the_anchor(tmp_path: Path, engine: Any,
                                                                        artifact: Path, evil: bytes) -> None:
    registry = _registry(tmp_path, engine)
    mv = registry.register("m", artifact, CARD, alias="champion")
    mv.artifact.write_bytes(evil)
    _rewrite_card(mv.path, sha256=sha256_bytes(evil))  # consistent with each other: the card alone says ok
    with pytest.raises(ModelIntegrityError, match=r"(?s)m v1: its card .*card\.json has sha256 [0-9a-f]{64}, but "
                                                  r"the card registered on .* had [0-9a-f]{64}.*Refusing to load it"):
        registry.resolve("m", "champion")
    card_only = Registry(tmp_path / "models", anchors=None)
    with pytest.raises(ModelIntegrityError, match="Refusing to load it"):  # the anchor is read at load too
        registry.load(card_only.resolve("m", 1))


def test_a_version_planted_in_the_folder_of_an_anchored_model_is_refused(tmp_path: Path, engine: Any,
                                                                         artifact: Path, evil: bytes) -> None:
    import shutil

    registry = _registry(tmp_path, engine)
    mv = registry.register("m", artifact, CARD, alias="champion")
    planted = mv.path.parent / "v2"
    shutil.copytree(mv.path, planted)
    (planted / "model.joblib").write_bytes(evil)
    _rewrite_card(planted, version=2, sha256=sha256_bytes(evil))
    aliases = json.loads((mv.path.parent / "aliases.json").read_text())
    aliases["aliases"]["champion"] = 2
    (mv.path.parent / "aliases.json").write_text(json.dumps(aliases))
    with pytest.raises(ModelIntegrityError, match=r"m v2 .* has no registration record in .*although the model's "
                                                  r"versions v1 have one.*scoring models anchor m 2"):
        registry.load(registry.resolve("m", "champion"))


@pytest.mark.parametrize("anchored", [True, False], ids=["anchored", "card-only"])
def test_racing_file_swaps_during_loads_never_unpickle_the_swapped_file(tmp_path: Path, engine: Any, artifact: Path,
                                                                        evil: bytes, anchored: bool,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    if not anchored:  # card-only: the development opt-out (a card-only model is refused by default)
        monkeypatch.setenv("SCORING_ALLOW_UNANCHORED", "1")
    registry = _registry(tmp_path, engine) if anchored else Registry(tmp_path / "models", anchors=None)
    mv = registry.resolve("m", registry.register("m", artifact, CARD).version)
    good, bad = tmp_path / "good.bytes", tmp_path / "bad.bytes"
    good.write_bytes(mv.artifact.read_bytes())
    bad.write_bytes(evil)
    stop = threading.Event()

    def swap() -> None:  # os.replace: the artifact is always a whole file, good or evil, as an attacker would do
        spare = mv.path / ".spare"
        while not stop.is_set():
            for source in (bad, good):
                spare.write_bytes(source.read_bytes())
                os.replace(spare, mv.artifact)

    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    loaded = refused = 0
    try:
        for _ in range(300):
            try:
                assert registry.load(mv).predict(X).shape == (6,)
                loaded += 1
            except ModelIntegrityError as exc:
                assert "Refusing to unpickle" in str(exc)
                refused += 1
    finally:
        stop.set()
        thread.join()
    assert loaded + refused == 300 and refused > 0, "the swap must have been caught at least once"


def test_a_model_registered_before_anchoring_loads_on_its_card_until_adopted(
        tmp_path: Path, engine: Any, artifact: Path, evil: bytes, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCORING_ALLOW_UNANCHORED", "1")  # loading it on its card is the development opt-out now
    Registry(tmp_path / "models", anchors=None).register("m", artifact, CARD, alias="champion")  # no database
    registry = _registry(tmp_path, engine)
    mv = registry.resolve("m", "champion")
    assert mv.anchor is None and registry.load(mv).predict(X).shape == (6,)
    assert any("is NOT anchored in" in r.getMessage() and "scoring models anchor m" in r.getMessage()
               for r in caplog.records)
    adopted = registry.anchor("m")
    assert [(a.version, a.origin) for a in adopted] == [(1, "adopted")]
    assert registry.anchor("m") == [], "an anchor is never rewritten"
    mv.artifact.write_bytes(evil)
    _rewrite_card(mv.path, sha256=sha256_bytes(evil))
    with pytest.raises(ModelIntegrityError, match="the card was changed after registration"):
        registry.resolve("m", "champion")


def test_the_first_anchored_registration_adopts_the_versions_before_it(tmp_path: Path, engine: Any,
                                                                       artifact: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as mp:  # registered with no database: the development opt-out only
        mp.setenv("SCORING_ALLOW_UNANCHORED", "1")
        Registry(tmp_path / "models", anchors=None).register("m", artifact, CARD, alias="champion")
    registry = _registry(tmp_path, engine)
    assert registry.register("m", artifact, CARD).version == 2
    origins = {v: a.origin for v, a in Anchors(engine).of("m").items()}
    assert origins == {1: "adopted", 2: "registered"}
    assert registry.resolve("m", 1).anchor is not None and registry.resolve("m", 2).anchor is not None


def test_archive_restore_rollback_and_delete_keep_the_anchors(tmp_path: Path, engine: Any, artifact: Path) -> None:
    import shutil

    registry = _registry(tmp_path, engine)
    for _ in range(3):
        registry.register("m", artifact, CARD)
    registry.promote("m", 1)
    registry.promote("m", 3)
    assert registry.rollback("m") == 1
    assert registry.load(registry.resolve("m", "champion")).predict(X).shape == (6,)
    registry.archive("m", 2)
    kept = tmp_path / "v2-copy"
    shutil.copytree(tmp_path / "models" / "m" / "archive" / "v2", kept)
    restored = registry.restore("m", 2)
    assert restored.anchor is not None and registry.load(restored).predict(X).shape == (6,)
    registry.archive("m", 2)
    registry.delete("m", 2)
    assert Anchors(engine).of("m")[2].deleted_at is not None
    shutil.copytree(kept, tmp_path / "models" / "m" / "v2")  # the deleted version put back by hand
    with pytest.raises(ModelIntegrityError, match=r"m v2 was deleted on .*never reused"):
        registry.resolve("m", 2)
    shutil.rmtree(tmp_path / "models" / "m" / "v2")
    assert registry.register("m", artifact, CARD).version == 4


def test_the_database_knows_versions_a_reset_folder_forgot(tmp_path: Path, engine: Any, artifact: Path) -> None:
    import shutil

    _registry(tmp_path, engine).register("m", artifact, CARD)
    shutil.rmtree(tmp_path / "models")
    assert _registry(tmp_path, engine).register("m", artifact, CARD).version == 2, "v1's number is not reused"


@pytest.mark.postgres
def test_the_table_and_its_columns_have_comments_on_postgresql(tmp_path: Path, pg_url: str, artifact: Path) -> None:
    engine = engines.engine_for(engines.url_from_uri(pg_url))
    _registry(tmp_path, engine).register("m", artifact, CARD)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT a.attname, col_description(c.oid, a.attnum), obj_description(c.oid, 'pg_class') FROM pg_class c "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
            "WHERE c.relname = :t AND c.relnamespace = current_schema()::regnamespace"), {"t": TABLE}).all()
    assert len(rows) == 8 and all(r[1] for r in rows) and rows[0][2].startswith("The registration record")


# -- through a run and the CLI ------------------------------------------------------------------
def _models(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "models", *args], capture_output=True, text=True,
                          timeout=180, cwd=ROOT, env=env)


def test_a_run_refuses_a_rewritten_model_and_records_why(any_db: str, home: Path, evil: bytes) -> None:
    registry = Registry()  # AIRFLOW_CONN_SCORING_DB: the run's database (SQLite or PostgreSQL)
    v1 = registry.resolve("churn", 1)
    mv = registry.register("churn", v1.artifact, {k: v for k, v in v1.card.items()
                                                  if k not in ("sha256", "version", "name", "registered_at")},
                           golden=v1.golden, alias="champion")
    assert mv.version == 2 and {a.origin for a in Anchors(registry.anchors.engine).of("churn").values()} == {
        "adopted", "registered"}
    write_partition(home, n=300)
    job = load_job(write_job(home))
    assert local.run_partition(job, DAY, run_id="ok")["model_version"] == 2
    mv.artifact.write_bytes(evil)
    _rewrite_card(mv.path, sha256=sha256_bytes(evil))
    with pytest.raises(ModelIntegrityError, match="churn v2: its card .* the card was changed after registration"):
        local.run_partition(job, DAY, run_id="tampered")
    with engines.for_connection("scoring_db").connect() as conn:
        status, error = conn.execute(sa.text("SELECT status, error FROM scoring_runs WHERE run_id = 'tampered'")).one()
    assert status == "failed" and "the card was changed after registration" in error


def test_the_cli_registers_anchors_adopts_and_verifies(home: Path) -> None:
    # the registry database is scoring_db (the default) and holds no anchor yet; unanchored models load only with
    # the development opt-out
    env = {k: v for k, v in os.environ.items() if k not in ("SCORING_REGISTRY_DB", "AIRFLOW_CONN_SCORING_REGISTRY")}
    env["SCORING_ALLOW_UNANCHORED"] = "1"
    bare = {k: v for k, v in env.items() if k != "AIRFLOW_CONN_SCORING_DB"}
    out = _models("verify", "churn", env=env)
    assert out.returncode == 1 and "NOT anchored" in out.stdout, out.stderr
    out = _models("anchor", "churn", env=bare)
    assert out.returncode == 2 and "no scoring database" in out.stderr
    out = _models("anchor", "churn", env=env)
    assert out.returncode == 0 and "churn v1: anchored artifact sha256=" in out.stdout, out.stderr
    out = _models("verify", "churn", env=env)
    assert out.returncode == 0 and "matches its anchor in sqlite" in out.stdout, out.stdout + out.stderr
    card = home / "card.json"
    card.write_text((home / "models" / "churn" / "v1" / "card.json").read_text())
    v1 = home / "models" / "churn" / "v1"
    out = _models("register", "churn", "--artifact", str(v1 / "model.joblib"), "--card", str(card), "--golden",
                  str(v1 / "golden.parquet"), env=env)
    assert out.returncode == 0 and "registered churn v2" in out.stdout and "anchored in sqlite" in out.stdout
    _rewrite_card(home / "models" / "churn" / "v2", description="changed by hand")
    out = _models("verify", "churn", "2", env=env)
    assert out.returncode == 2 and "churn v2: its card" in out.stderr and "Traceback" not in out.stderr
