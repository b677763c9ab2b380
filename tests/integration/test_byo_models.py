"""Bring your own model: each kind of estimator people train, registered in one call, scores exactly.

Every test trains on a generated frame with the user's own column names (mixed case, a space),
a text entity key, missing values and a boolean; registers it with ``onboard.register_model``
(the card inferred); runs a job through ``scoring run``'s runner; and compares every stored
score with the estimator's own ``predict_proba`` / ``predict`` on the same rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from pipeline import local, onboard
from pipeline.config import load_job
from pipeline.registry import Registry
from pipeline.store import engines
from tests.conftest import DAY, write_job

KEY = "customerID"
NUMERIC = ["Tenure Months", "TotalCharges"]


def training_frame(n: int = 600, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 72, n)
    charges = np.where(rng.random(n) < 0.06, np.nan, rng.gamma(2.0, 40.0, n) * (1 + tenure / 24))
    contract = rng.choice(["Month-to-month", "One year", "Two year"], n, p=[0.55, 0.25, 0.2])
    paperless = rng.random(n) < 0.6
    logit = -0.04 * tenure + 0.9 * (contract == "Month-to-month") + 0.4 * paperless - 0.5
    churn = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({KEY: [f"C-{i:05d}" for i in range(n)], "Tenure Months": tenure, "TotalCharges": charges,
                         "Contract": contract, "Paperless": paperless, "Churn": churn,
                         "Spend": 20 + 0.8 * tenure + rng.normal(0, 5, n),
                         "Tier": np.select([tenure < 12, tenure < 36], ["new", "settled"], "loyal")})


def features(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[["Tenure Months", "TotalCharges", "Contract", "Paperless"]]


def _column_transformer() -> Any:
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    return make_column_transformer(
        (make_pipeline(SimpleImputer(), StandardScaler()), NUMERIC),
        (OneHotEncoder(handle_unknown="ignore"), ["Contract"]),
        ("passthrough", ["Paperless"]))


def pipeline_logistic(frame: pd.DataFrame) -> tuple[Any, str, pd.DataFrame]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(_column_transformer(), LogisticRegression()).fit(features(frame), frame["Churn"]), "Churn", frame


def hist_gradient_boosting_native(frame: pd.DataFrame) -> tuple[Any, str, pd.DataFrame]:
    from sklearn.ensemble import HistGradientBoostingClassifier

    frame = frame.assign(Contract=frame["Contract"].astype("category"))
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", max_iter=30, random_state=0)
    return model.fit(features(frame), frame["Churn"]), "Churn", frame


def pipeline_regressor(frame: pd.DataFrame) -> tuple[Any, str, pd.DataFrame]:
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline

    return make_pipeline(_column_transformer(), Ridge()).fit(features(frame), frame["Spend"]), "Spend", frame


def pipeline_multiclass(frame: pd.DataFrame) -> tuple[Any, str, pd.DataFrame]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(_column_transformer(), LogisticRegression(max_iter=500))
    return model.fit(features(frame), frame["Tier"]), "Tier", frame


def lightgbm_classifier(frame: pd.DataFrame) -> tuple[Any, str, pd.DataFrame]:
    lightgbm = pytest.importorskip("lightgbm")
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(_column_transformer(), lightgbm.LGBMClassifier(n_estimators=30, verbose=-1, random_state=0))
    return model.fit(features(frame), frame["Churn"]), "Churn", frame


def xgboost_classifier(frame: pd.DataFrame) -> tuple[Any, str, pd.DataFrame]:
    xgboost = pytest.importorskip("xgboost")
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(_column_transformer(), xgboost.XGBClassifier(n_estimators=30, max_depth=3, n_jobs=1))
    return model.fit(features(frame), frame["Churn"]), "Churn", frame


KINDS: dict[str, Callable[[pd.DataFrame], tuple[Any, str, pd.DataFrame]]] = {
    "pipeline_logistic": pipeline_logistic,
    "hgb_native_categories": hist_gradient_boosting_native,
    "pipeline_regressor": pipeline_regressor,
    "pipeline_multiclass": pipeline_multiclass,
    "lightgbm": lightgbm_classifier,
    "xgboost": xgboost_classifier,
}


def expected_scores(model: Any, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The estimator's own answer: (prediction, score) as the pipeline defines the score."""
    x = features(rows)
    if not hasattr(model, "predict_proba"):
        prediction = model.predict(x)
        return prediction, prediction.astype(float)
    proba = model.predict_proba(x)
    classes = list(model.classes_)
    score = proba[:, -1] if len(classes) == 2 else proba.max(axis=1)
    return np.asarray(classes)[proba.argmax(axis=1)], score


def write_export(home: Path, rows: pd.DataFrame, fmt: str = "parquet") -> Path:
    """The partition as the upstream system exports it: the model's columns, the key, nothing else."""
    folder = home / "data" / "byo" / f"date={DAY}"
    folder.mkdir(parents=True, exist_ok=True)
    export = rows[[KEY, "Tenure Months", "TotalCharges", "Contract", "Paperless"]].copy()
    export["Contract"] = export["Contract"].astype(str)
    if fmt == "csv":
        export.to_csv(folder / "part-0000.csv", index=False, na_rep=" ")  # blanks, as many exports write them
    else:
        export.to_parquet(folder / "part-0000.parquet", index=False)
    return folder


def byo_job(home: Path, name: str, fmt: str = "parquet", **validation: Any) -> Any:
    path = write_job(home, job_id=f"byo_{name}", entity_key=KEY, model={"name": name, "ref": "champion"},
                     source={"path": str(home / "data" / "byo"), "format": fmt, "batch_rows": 128},
                     validation={"max_quarantine_share": 0.05, **validation})
    return load_job(path)


def stored(job: Any) -> pd.DataFrame:
    engine = engines.for_connection("scoring_db")
    quoted = engine.dialect.identifier_preparer.quote(KEY)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT {quoted} AS k, prediction, score FROM {job.output.table} "
                                    "WHERE partition_date = :d"), {"d": DAY}).all()
    return pd.DataFrame(rows, columns=["k", "prediction", "score"]).set_index("k")


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_registers_in_one_call_and_scores_exactly(home: Path, kind: str) -> None:
    frame = training_frame()
    model, target, frame = KINDS[kind](frame)
    mv = onboard.register_model(Registry(), kind, model, frame.drop(columns=[c for c in ("Churn", "Spend", "Tier")
                                                                            if c != target]),
                                target=target, key=KEY, alias="champion", data="generated in the test")
    card = mv.card
    assert [c["name"] for c in card["inputs"]] == ["Tenure Months", "TotalCharges", "Contract", "Paperless"]
    assert {c["name"]: c["type"] for c in card["inputs"]} == {
        "Tenure Months": "int", "TotalCharges": "float", "Contract": "category", "Paperless": "bool"}
    assert card["task"] == {"pipeline_regressor": "regression", "pipeline_multiclass": "multiclass_classification"}.get(
        kind, "binary_classification")
    assert set(card["training"]["stats"]) == set(NUMERIC + ["Contract", "Paperless"]) and card["metrics"]
    rows = frame.head(300)  # rows the training data had: all inside the ranges the contract inferred
    write_export(home, rows)
    summary = local.run_partition(byo_job(home, kind), DAY, run_id=f"byo-{kind}")
    assert summary["status"] == "success" and summary["rows_scored"] == 300 and summary["rows_quarantined"] == 0
    table = stored(byo_job(home, kind)).loc[rows[KEY]]
    prediction, score = expected_scores(model, rows)
    assert np.max(np.abs(table["score"].to_numpy() - score)) <= 1e-9
    assert table["prediction"].tolist() == [str(p) for p in prediction]


def test_blank_text_in_a_numeric_column_reaches_the_imputer_when_the_card_says_so(home: Path) -> None:
    frame = training_frame()
    model, target, frame = pipeline_logistic(frame)
    overrides = {"inputs": {"TotalCharges": {"blank_is_missing": True}}}
    onboard.register_model(Registry(), "blanks", model, frame.drop(columns=["Spend", "Tier"]), target=target,
                           key=KEY, alias="champion", overrides=overrides)
    rows = frame.head(300)
    assert rows["TotalCharges"].isna().sum() > 5
    write_export(home, rows, fmt="csv")
    summary = local.run_partition(byo_job(home, "blanks", fmt="csv"), DAY, run_id="blanks")
    assert summary["rows_quarantined"] == 0 and summary["rows_scored"] == 300
    table = stored(byo_job(home, "blanks", fmt="csv")).loc[rows[KEY]]
    _, score = expected_scores(model, rows)
    assert np.max(np.abs(table["score"].to_numpy() - score)) <= 1e-9


def test_without_the_policy_blank_numbers_are_quarantined_with_their_text(home: Path) -> None:
    frame = training_frame()
    model, target, frame = pipeline_logistic(frame)
    onboard.register_model(Registry(), "strict", model, frame.drop(columns=["Spend", "Tier"]), target=target,
                           key=KEY, alias="champion")
    rows = frame.head(300)
    write_export(home, rows, fmt="csv")
    blanks = int(rows["TotalCharges"].isna().sum())
    summary = local.run_partition(byo_job(home, "strict", fmt="csv", max_quarantine_share=0.5), DAY, run_id="strict")
    assert summary["rows_quarantined"] == blanks and summary["rows_scored"] == 300 - blanks
    engine = engines.for_connection("scoring_db")
    with engine.connect() as conn:
        reasons = conn.execute(sa.text("SELECT DISTINCT reasons FROM scoring_quarantine WHERE job_id = 'byo_strict'"))
        assert [r[0] for r in reasons] == ["invalid_number:TotalCharges"]


def test_the_golden_rows_and_verify_speak_the_truth(home: Path) -> None:
    frame = training_frame()
    model, target, frame = pipeline_logistic(frame)
    mv = onboard.register_model(Registry(), "golden", model, frame.drop(columns=["Spend", "Tier"]), target=target,
                                key=KEY)
    golden = pd.read_parquet(mv.golden)
    assert len(golden) == 200 and KEY in golden.columns
    _, score = expected_scores(model, frame.head(200))
    assert np.max(np.abs(golden["expected_score"].to_numpy() - score)) == 0
    assert dt.datetime.fromisoformat(mv.card["registered_at"])


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "user_transforms"


def test_a_user_transform_in_its_own_module_is_used_fingerprinted_and_refused_when_changed(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    import subprocess
    import sys

    from sklearn.linear_model import LogisticRegression

    package = tmp_path / "userpkg"
    package.mkdir()
    shutil.copy(FIXTURES / "acme_features.py", package / "acme_features.py")
    monkeypatch.syspath_prepend(str(package))
    import acme_features

    frame = training_frame().dropna(subset=["TotalCharges"]).drop(columns=["Spend", "Tier"])
    inputs = ["Tenure Months", "TotalCharges"]
    x = acme_features.acme_ratio(frame[inputs])
    model = LogisticRegression(max_iter=500).fit(x, frame["Churn"])
    mv = onboard.register_model(Registry(), "acme", model, frame[[KEY, *inputs, "Churn"]], target="Churn", key=KEY,
                                alias="champion", preprocess_ref="acme_ratio@1", preprocess_module="acme_features")
    assert mv.card["preprocess"]["module"] == "acme_features" and len(mv.card["preprocess"]["fingerprint"]) == 64
    rows = frame.head(200)
    write_export(home, rows)
    job = byo_job(home, "acme")
    summary = local.run_partition(job, DAY, run_id="acme")
    assert summary["rows_scored"] == 200
    expected = model.predict_proba(acme_features.acme_ratio(rows[inputs]))[:, 1]
    assert np.max(np.abs(stored(job).loc[rows[KEY], "score"].to_numpy() - expected)) <= 1e-9

    # the user edits the transform without registering a new version: scoring refuses it
    source = (package / "acme_features.py").read_text().replace("clip(lower=1)", "clip(lower=2)")
    (package / "acme_features.py").write_text(source)
    env = dict(__import__("os").environ, PYTHONPATH=f"{package}:{Path(__file__).resolve().parents[2]}")
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", job.job_id, "--date", str(DAY)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "preprocessing acme_ratio@1 has changed since model acme v1 was trained" in out.stderr
