"""Model cards: the published schema, and registration refusing every bad card with a message naming the key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from pipeline import card as cards
from pipeline.errors import ModelIntegrityError
from pipeline.registry import Registry
from tests.conftest import scoring_cli

ROOT = Path(__file__).resolve().parents[2]
X = pd.DataFrame({"Age": [20.0, 30.0, 40.0, 50.0, 60.0, 70.0], "Plan Type": [0.0, 1.0, 0.0, 1.0, 1.0, 0.0]})
Y = [0, 0, 1, 0, 1, 1]
GOOD = {"inputs": [{"name": "Age", "type": "float"}, {"name": "Plan Type", "type": "float"}],
        "preprocess": {"name": "identity", "version": 1}, "task": "binary_classification", "classes": [0, 1],
        "positive_class": 1}


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    path = tmp_path / "model.joblib"
    joblib.dump(LogisticRegression().fit(X, Y), path)
    return path


def _with(**changes: Any) -> dict[str, Any]:
    card = json.loads(json.dumps(GOOD))
    card.update(changes)
    return card


BAD_CARDS = [
    ({}, "required key 'inputs' is missing"),
    (_with(input=[]), "unknown key 'input'; did you mean 'inputs'?"),
    (_with(inputs=[{"name": "Age", "type": "integer"}, {"name": "Plan Type", "type": "float"}]),
     "'integer' is not a column type; use one of float, int, category, bool"),
    (_with(inputs=[{"name": "Age", "type": "float", "nullabel": False}, {"name": "Plan Type", "type": "float"}]),
     "unknown key 'inputs.0.nullabel'; did you mean 'nullable'?"),
    (_with(inputs=[{"name": "Age", "type": "float"}, {"name": "Age", "type": "float"}]),
     "column(s) 'Age' appear more than once"),
    (_with(inputs=[{"name": "Age", "type": "float", "min": 9, "max": 1}, {"name": "Plan Type", "type": "float"}]),
     "min 9.0 is above max 1.0"),
    (_with(inputs=[{"name": "Age", "type": "float", "categories": ["a"]}, {"name": "Plan Type", "type": "float"}]),
     "categories are for category columns"),
    (_with(inputs=[{"name": "__raw__Age", "type": "float"}]), "names starting with '__' are reserved"),
    (_with(preprocess={"name": "x", "version": 1, "module": "../evil"}), "must be an importable module path"),
    (_with(training={"stats": {"Salary": {"kind": "categorical", "shares": {"a": 1.0}}}}),
     "training.stats names column(s) 'Salary' that are not inputs"),
    (_with(positive_class=2), "positive_class 2 is not one of classes [0, 1]"),
    (_with(inputs=[{"name": "Age", "type": "float"}]),
     "the estimator needs column(s) Plan Type that the card's inputs (after preprocessing identity@1) do not give"),
    (_with(classes=None, positive_class="yes"), "positive_class 'yes' is not one of the estimator's classes [0, 1]"),
]


@pytest.mark.parametrize(("card", "message"), BAD_CARDS, ids=[m[:40] for _, m in BAD_CARDS])
def test_registration_refuses_a_bad_card_naming_the_key(tmp_path: Path, artifact: Path, card: dict[str, Any],
                                                        message: str) -> None:
    registry = Registry(tmp_path / "models")
    with pytest.raises(ModelIntegrityError) as err:
        registry.register("m", artifact, card)
    assert message in str(err.value)
    assert registry.versions("m") == [], "nothing was registered"


def test_an_artifact_without_predict_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "scaler.joblib"
    joblib.dump(StandardScaler().fit(X), path)
    with pytest.raises(ModelIntegrityError, match=r"StandardScaler, which has no predict\(\)"):
        Registry(tmp_path / "models").register("m", path, GOOD)


def test_a_good_card_registers_and_its_schema_is_published(tmp_path: Path, artifact: Path) -> None:
    mv = Registry(tmp_path / "models").register("m", artifact, GOOD)
    assert mv.version == 1 and len(mv.card["sha256"]) == 64
    published = json.loads((ROOT / "pipeline" / "card.schema.json").read_text())
    assert published == cards.card_json_schema(), "run `scoring models schema --write pipeline/card.schema.json`"
    assert set(published["$defs"]["InputColumn"]["properties"]["type"]["enum"]) == {"float", "int", "category", "bool"}


def test_the_cli_refuses_an_empty_card_with_a_message_not_a_traceback(tmp_path: Path, artifact: Path) -> None:
    (tmp_path / "card.json").write_text("{}")
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "models", "--models-dir", str(tmp_path / "models"),
                          "register", "m", "--artifact", str(artifact), "--card", str(tmp_path / "card.json")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "required key 'inputs' is missing" in out.stderr


def test_verify_does_not_claim_golden_rows_it_does_not_have(tmp_path: Path, artifact: Path) -> None:
    Registry(tmp_path / "models").register("m", artifact, GOOD, alias="champion")
    out = scoring_cli("models", "--models-dir", str(tmp_path / "models"), "verify", "m")
    assert out.returncode == 1 and "NO golden rows" in out.stdout and "reproduced" not in out.stdout


def test_infer_column_types_nullability_and_ranges() -> None:
    from pipeline.onboard import infer_column

    # the training range is observed (flags), not declared (quarantines): issue 25, point 8
    assert infer_column(pd.Series([1, 5, 3]), "n") == {"name": "n", "nullable": False, "type": "int",
                                                        "observed_min": 1.0, "observed_max": 5.0}
    assert infer_column(pd.Series([1.5, np.nan]), "f")["nullable"] is True
    assert infer_column(pd.Series(["b", "a", None]), "c") == {"name": "c", "nullable": True, "type": "category",
                                                              "categories": ["a", "b"]}
    assert infer_column(pd.Series([True, False]), "b")["type"] == "bool"
    with pytest.raises(ModelIntegrityError, match="holds dates or times"):
        infer_column(pd.Series(pd.to_datetime(["2026-01-01"])), "d")


def _register_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """In this process (tests.conftest.scoring_cli): an exception let through would fail the test itself; the
    empty-card test above checks a real process's stderr for a traceback."""
    return scoring_cli("models", "--models-dir", str(tmp_path / "models"), "register", "m", *args)


def test_bad_inputs_to_register_are_messages_not_tracebacks(tmp_path: Path, artifact: Path) -> None:
    frame = tmp_path / "train.parquet"
    X.assign(y=Y).to_parquet(frame)
    (tmp_path / "broken.joblib").write_bytes(b"not a pickle")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "bad.csv").write_bytes(b"\xff\xfe\x00garbage")
    cases = [
        (["--artifact", str(tmp_path / "nope.joblib"), "--training-data", str(frame)], "does not exist"),
        (["--artifact", str(tmp_path / "broken.joblib"), "--training-data", str(frame)], "cannot be loaded"),
        (["--artifact", str(artifact), "--training-data", str(frame), "--overrides", str(tmp_path / "list.yaml")],
         "overrides: a mapping"),
        (["--artifact", str(artifact), "--training-data", str(tmp_path / "bad.csv")], "cannot be read"),
        (["--artifact", str(artifact), "--training-data", str(frame), "--target", "Y"], "--target 'Y' is not a column"),
    ]
    for args, message in cases:
        out = _register_cli(tmp_path, *args)
        assert out.returncode == 2 and "Traceback" not in out.stderr and message in out.stderr, (args, out.stderr)
    assert not (tmp_path / "models" / "m").exists() or not list((tmp_path / "models" / "m").glob("v*"))


def test_a_classifier_without_predict_proba_is_refused(tmp_path: Path) -> None:
    from sklearn.svm import LinearSVC

    from pipeline.onboard import register_model

    with pytest.raises(ModelIntegrityError, match="classifier without predict_proba.*CalibratedClassifierCV"):
        register_model(Registry(tmp_path / "models"), "m", LinearSVC().fit(X, Y), X.assign(y=Y), target="y")
