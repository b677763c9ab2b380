"""A real-looking export with `NA` markers scores every row exactly as the notebook's estimator does (issue 25: 9, 7).

A house-price-like table (zero-padded ids, categories such as PoolQC and Alley that are mostly absent,
numeric columns with gaps) is exported to CSV as the famous one is, `NA` wherever a value is missing
or absent. The "notebook" reads the training file with ``pd.read_csv``, trains a
HistGradientBoostingRegressor on pandas categories and registers it in one call
(``onboard.register_model``); the job then scores the held-out file of the same export, on SQLite
and PostgreSQL. Every row is scored, every prediction equals the estimator's on ``pd.read_csv`` of
the same file, and the keys are the export's text (``00017``, never 17).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from pipeline import local
from pipeline.config import load_job
from pipeline.ledger import as_json
from pipeline.onboard import register_model
from pipeline.registry import Registry
from pipeline.store import engines
from tests.conftest import DAY, write_job

KEY, TARGET = "Id", "SalePrice"
CATEGORIES: dict[str, tuple[list[str | None], list[float]]] = {  # values (None: written NA) and their shares
    "MSZoning": (["RL", "RM", "FV", "RH", "C (all)"], [0.78, 0.15, 0.04, 0.02, 0.01]),
    "Neighborhood": (["NAmes", "CollgCr", "OldTown", "Edwards", "Somerst", "NridgHt", "Gilbert"],
                     [0.24, 0.16, 0.12, 0.12, 0.12, 0.12, 0.12]),
    "Alley": ([None, "Grvl", "Pave"], [0.92, 0.05, 0.03]),
    "PoolQC": ([None, "Gd", "Ex", "Fa"], [0.97, 0.01, 0.01, 0.01]),
    "Fence": ([None, "MnPrv", "GdPrv", "GdWo"], [0.8, 0.1, 0.05, 0.05]),
    "FireplaceQu": ([None, "Gd", "TA", "Fa", "Ex", "Po"], [0.47, 0.26, 0.21, 0.02, 0.02, 0.02]),
    "MasVnrType": (["None", "BrkFace", "Stone", None], [0.58, 0.3, 0.1, 0.02]),  # 'None': pandas reads NaN too
    "KitchenQual": (["TA", "Gd", "Ex", "Fa"], [0.5, 0.4, 0.07, 0.03]),
}
NUMERIC = ["LotFrontage", "LotArea", "OverallQual", "YearBuilt", "MasVnrArea", "GarageYrBlt", "GrLivArea"]
TRAIN_ROWS, HELD_OUT = 1200, 260


def houses(n: int = TRAIN_ROWS + HELD_OUT, seed: int = 25) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({KEY: [f"{i:05d}" for i in range(1, n + 1)]})
    for name, (values, shares) in CATEGORIES.items():
        frame[name] = pd.Series(rng.choice(np.array(values, dtype=object), n, p=shares), dtype=object)
    quality = rng.integers(1, 11, n)
    built = rng.integers(1900, 2011, n)
    frame["LotFrontage"] = np.where(rng.random(n) < 0.18, np.nan, rng.normal(70, 20, n).clip(21, 313).round())
    frame["LotArea"] = rng.gamma(4.0, 2600.0, n).round()
    frame["OverallQual"] = quality
    frame["YearBuilt"] = built
    frame["MasVnrArea"] = np.where(frame["MasVnrType"].isna(), np.nan,
                                   np.where(frame["MasVnrType"] == "None", 0.0, rng.gamma(2.0, 100.0, n).round()))
    frame["GarageYrBlt"] = np.where(rng.random(n) < 0.06, np.nan, np.maximum(built, built + rng.integers(0, 20, n)))
    frame["GrLivArea"] = rng.normal(1500, 500, n).clip(334, 5642).round()
    price = (20_000 * quality + 300 * (built - 1900) + 60 * frame["GrLivArea"] + 0.8 * frame["LotArea"]
             + 40_000 * (frame["PoolQC"] == "Ex") + 15_000 * (frame["Neighborhood"] == "NridgHt")
             - 10_000 * frame["Alley"].notna() + rng.normal(0, 15_000, n))
    frame[TARGET] = price.round()
    return frame


def export(frame: pd.DataFrame, path: Path) -> Path:
    """The file as the upstream system writes it: `NA` for every missing or absent value."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, na_rep="NA")
    return path


def notebook(path: Path, categories: dict[str, pd.Index] | None = None) -> pd.DataFrame:
    """The data scientist's reader: pandas' defaults, the ids kept as text, the text columns as categories."""
    frame = pd.read_csv(path, dtype={KEY: str})
    for name in CATEGORIES:
        frame[name] = (frame[name].astype("category") if categories is None
                       else pd.Categorical(frame[name], categories=categories[name]))
    return frame


def stored(table: str) -> pd.Series:
    engine = engines.for_connection("scoring_db")
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f'SELECT "{KEY}", score FROM {table} WHERE partition_date = :d'), {"d": DAY}).all()
    return pd.Series({k: s for k, s in rows}, dtype=float)


@pytest.fixture
def trained(home: Path, tmp_path: Path) -> tuple[Any, pd.DataFrame, pd.DataFrame]:
    from sklearn.ensemble import HistGradientBoostingRegressor

    frame = houses()
    train_file = export(frame.head(TRAIN_ROWS), tmp_path / "export" / "train.csv")
    train = notebook(train_file)
    features = train.drop(columns=[KEY, TARGET])
    model = HistGradientBoostingRegressor(categorical_features="from_dtype", max_iter=60, random_state=0)
    model.fit(features, train[TARGET])
    mv = register_model(Registry(), "houses", model, train, target=TARGET, key=KEY, alias="champion",
                        data=str(train_file))
    assert mv.card.get("entity_key_type") == "string"  # validate's registration: the frame's key is text
    return model, train, frame.tail(HELD_OUT)


def _job(home: Path, **source: Any) -> Any:
    return load_job(write_job(home, job_id="houses_daily", entity_key=KEY, model={"name": "houses"},
                              source={"path": str(home / "data" / "houses"), "format": "csv", **source},
                              validation={"max_quarantine_share": 0.5}))


def test_an_na_export_scores_every_row_as_the_notebook_does(home: Path, any_db: str, trained: Any) -> None:
    model, train, held_out = trained
    path = export(held_out.drop(columns=[TARGET]), home / "data" / "houses" / f"date={DAY}" / "part-0000.csv")
    assert "NA,NA" in path.read_text() and "\n01201," in path.read_text()  # as exported: NA, zero-padded ids
    as_read = pd.read_csv(path, dtype={KEY: str})
    for name in CATEGORIES:  # the held-out rows hold nothing the training rows did not (the test's premise)
        assert set(as_read[name].dropna()) <= set(train[name].dropna().astype(str)), name
    assert as_read["PoolQC"].isna().mean() > 0.9 and as_read["Alley"].isna().mean() > 0.8

    summary = local.run_partition(_job(home), DAY, run_id="houses")
    assert summary["status"] == "success", summary["error"]
    assert (summary["rows_in"], summary["rows_scored"], summary["rows_quarantined"]) == (HELD_OUT, HELD_OUT, 0)

    rows = notebook(path, {name: train[name].cat.categories for name in CATEGORIES})
    expected = pd.Series(model.predict(rows[train.drop(columns=[KEY, TARGET]).columns]), index=rows[KEY])
    scores = stored("houses_daily_predictions")
    assert sorted(scores.index) == sorted(held_out[KEY]) and all(len(k) == 5 for k in scores.index)  # '01201', not 1201
    assert np.max(np.abs(scores.loc[expected.index].to_numpy() - expected.to_numpy())) <= 1e-9


def test_an_opted_out_column_reads_na_as_a_category_and_the_quarantine_keeps_the_text(home: Path,
                                                                                    trained: Any) -> None:
    model, train, held_out = trained
    rows = held_out.head(20).drop(columns=[TARGET]).copy()
    assert train["LotArea"].notna().all()  # so the card says LotArea is never missing
    rows["LotArea"] = rows["LotArea"].astype(object)
    rows.iloc[3, rows.columns.get_loc("LotArea")] = None  # written NA: missing in a column that may not be
    export(rows, home / "data" / "houses" / f"date={DAY}" / "part-0000.csv")
    summary = local.run_partition(_job(home, null_values_by_column={"PoolQC": []}), DAY, run_id="optout")
    assert summary["status"] == "success" and summary["rows_in"] == 20
    engine = engines.for_connection("scoring_db")
    with engine.connect() as conn:
        [(key, reasons, values)] = conn.execute(sa.text(
            "SELECT entity_key, reasons, row_values FROM scoring_quarantine WHERE job_id = 'houses_daily'")).all()
    values = as_json(values)
    assert key == rows[KEY].iloc[3] and "not_null:LotArea" in reasons
    assert values["LotArea"] == "NA" and values[KEY] == rows[KEY].iloc[3]  # the file's text, the key as written
    assert values["PoolQC"] == "NA"  # opted out: the text is a value (a category the model never saw)
