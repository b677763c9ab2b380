"""Seeded generator of the customer-churn demo: daily partitions and a labelled training set.

Customers keep their static attributes (region, contract, age...) across days; usage
features change every day. Missing values appear at realistic rates (a few percent in
optional fields). The same seed and date always give the same partition.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

CONTRACTS = ["month-to-month", "one-year", "two-year"]
PAYMENTS = ["card", "bank-transfer", "paypal", "check"]
REGIONS = ["north", "south", "east", "west", "central"]
PLANS = ["basic", "standard", "premium"]

NUMERIC = [
    "age",
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "num_products",
    "support_tickets_90d",
    "days_since_last_login",
    "avg_session_minutes",
    "late_payments_12m",
    "discount_pct",
    "data_usage_gb",
]
CATEGORICAL = ["contract_type", "payment_method", "region", "plan"]
KEY = "customer_id"


def _static(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng([seed, 0])
    return pd.DataFrame(
        {
            KEY: np.arange(100_000, 100_000 + n, dtype="int64"),
            "signup_offset": rng.integers(0, 96, n),
            "age": rng.normal(44, 14, n).clip(18, 90).round(),
            "contract_type": rng.choice(CONTRACTS, n, p=[0.55, 0.25, 0.20]),
            "payment_method": rng.choice(PAYMENTS, n, p=[0.45, 0.30, 0.15, 0.10]),
            "region": rng.choice(REGIONS, n),
            "plan": rng.choice(PLANS, n, p=[0.5, 0.35, 0.15]),
            "num_products": rng.integers(1, 6, n),
            "base_charge": rng.gamma(6.0, 11.0, n).clip(15, 200),
            "engagement": rng.beta(2.0, 2.5, n),
        }
    )


def customers(date: dt.date, n: int = 30_000, seed: int = 7, shift: float = 0.0) -> pd.DataFrame:
    """Feature rows of every active customer on ``date`` (no label).

    Args:
        shift: 0 for the usual distribution; larger values move usage features
            (fewer logins, more tickets, higher charges), for drift demos and tests.
    """
    base = _static(n, seed)
    rng = np.random.default_rng([seed, date.toordinal()])
    active = rng.random(n) > 0.02  # a few customers absent from any given day's export
    base = base[active].reset_index(drop=True)
    m = len(base)
    months_since_epoch = (date.year - 2018) * 12 + date.month
    tenure = (months_since_epoch - base["signup_offset"]).clip(0, 120)
    engagement = (base["engagement"] - 0.25 * shift).clip(0.01, 0.99)
    monthly = base["base_charge"] * (1 + 0.1 * shift) + rng.normal(0, 2.0, m)
    df = pd.DataFrame(
        {
            KEY: base[KEY],
            "age": base["age"],
            "tenure_months": tenure.astype("float64"),
            "monthly_charges": monthly.round(2),
            "total_charges": (monthly * np.maximum(tenure, 1) * rng.uniform(0.95, 1.02, m)).round(2),
            "num_products": base["num_products"].astype("float64"),
            "support_tickets_90d": rng.poisson(0.6 + 2.5 * (1 - engagement) + shift).astype("float64"),
            "days_since_last_login": rng.exponential(2 + 25 * (1 - engagement)).round(1),
            "avg_session_minutes": rng.gamma(2.0, 4 + 20 * engagement).round(1),
            "late_payments_12m": rng.poisson(0.3 + 0.8 * (base["payment_method"] == "check")).astype("float64"),
            "discount_pct": rng.choice([0.0, 5.0, 10.0, 15.0, 20.0], m, p=[0.6, 0.15, 0.12, 0.08, 0.05]),
            "data_usage_gb": rng.lognormal(2.0 + engagement, 0.6).round(2),
            "contract_type": base["contract_type"],
            "payment_method": base["payment_method"],
            "region": base["region"],
            "plan": base["plan"],
        }
    )
    # realistic missingness: optional fields are blank for a few percent of customers
    for column, share in {
        "age": 0.04,
        "total_charges": 0.01,
        "days_since_last_login": 0.03,
        "avg_session_minutes": 0.02,
        "data_usage_gb": 0.015,
        "payment_method": 0.01,
    }.items():
        df.loc[rng.random(m) < share, column] = None
    # and a few broken records, as real exports have: validation quarantines them
    df.loc[rng.random(m) < 0.001, "monthly_charges"] = -1.0
    df.loc[rng.random(m) < 0.0005, "region"] = None
    return df


def churn_label(df: pd.DataFrame, seed: int = 7) -> np.ndarray:
    """Ground-truth churn (1/0) drawn from a logistic model of the features."""
    rng = np.random.default_rng([seed, 1])
    logit = (
        -2.2
        + 1.3 * (df["contract_type"] == "month-to-month")
        - 0.8 * (df["contract_type"] == "two-year")
        + 0.35 * df["support_tickets_90d"].fillna(0)
        + 0.04 * df["days_since_last_login"].fillna(10)
        - 0.025 * df["tenure_months"].fillna(0)
        + 0.012 * (df["monthly_charges"].fillna(60) - 60)
        + 0.45 * df["late_payments_12m"].fillna(0)
        - 0.03 * df["avg_session_minutes"].fillna(20)
        - 0.04 * df["discount_pct"].fillna(0)
    )
    return (rng.random(len(df)) < 1 / (1 + np.exp(-logit))).astype("int64")


def training_set(end: dt.date, days: int = 3, n: int = 30_000, seed: int = 7) -> pd.DataFrame:
    """Labelled history: the ``days`` days before ``end``, each with its churn outcome."""
    frames = []
    for i in range(days, 0, -1):
        day = end - dt.timedelta(days=i)
        frame = customers(day, n=n, seed=seed)
        frame["churned"] = churn_label(frame, seed=seed + i)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


LABEL = "churned"


def outcomes(df: pd.DataFrame, day: dt.date, seed: int = 7) -> pd.DataFrame:
    """The realised churn of a partition's customers (``customer_id``, ``churned``), drawn from their features:
    what the business learns later, one draw per partition day."""
    return pd.DataFrame({KEY: df[KEY].to_numpy(), LABEL: churn_label(df, seed=seed * 100_003 + day.toordinal())})


def outcomes_root(root: Path) -> Path:
    """Where the outcomes of the partitions under ``root`` go: ``data/churn`` -> ``data/churn_outcomes``."""
    return root.parent / f"{root.name}_outcomes"


def write_outcomes(root: Path, day: dt.date, df: pd.DataFrame, horizon_days: int = 30, seed: int = 7) -> Path:
    """Write partition ``day``'s outcomes in the folder of their outcome date (``day + horizon_days``), as the
    job's ``outcomes`` section reads them (one Parquet file)."""
    return write_partition(root, day + dt.timedelta(days=horizon_days), outcomes(df, day, seed=seed), files=1)[0]


def write_partition(
    root: Path, date: dt.date, df: pd.DataFrame, files: int = 2, fmt: str = "parquet", layout: str = "date={date}"
) -> list[Path]:
    """Write one partition as ``files`` files, atomically (temp name, then rename)."""
    folder = root / layout.format(date=date.isoformat())
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, chunk in enumerate(np.array_split(np.arange(len(df)), files)):
        part = df.iloc[chunk]
        final = folder / f"part-{i:04d}.{fmt}"
        tmp = folder / f".{final.name}.tmp"
        if fmt == "parquet":
            part.to_parquet(tmp, index=False)
        else:
            part.to_csv(tmp, index=False)
        tmp.replace(final)
        written.append(final)
    return written


def write_days(root: Path, start: dt.date, days: int, n: int = 30_000, seed: int = 7, fmt: str = "parquet",
               horizon_days: int | None = 30) -> None:
    """Write ``days`` consecutive partitions from ``start`` that are not there yet, and their outcomes (in
    ``outcomes_root(root)``, dated ``horizon_days`` later; None: none) that are not there yet."""
    for i in range(days):
        day = start + dt.timedelta(days=i)
        frame = None
        if not (root / f"date={day.isoformat()}").exists():
            frame = customers(day, n=n, seed=seed)
            write_partition(root, day, frame, fmt=fmt)
        if horizon_days is None:
            continue
        when = day + dt.timedelta(days=horizon_days)
        if not (outcomes_root(root) / f"date={when.isoformat()}").exists():
            write_outcomes(outcomes_root(root), day, customers(day, n=n, seed=seed) if frame is None else frame,
                           horizon_days, seed)
