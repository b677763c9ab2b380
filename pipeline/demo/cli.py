"""``scoring-demo``: the churn demo's data, model and webhook receiver.

    scoring-demo data --start 2026-11-18 --days 3
    scoring-demo train --end 2026-11-18
    scoring-demo retrain --partition 2026-11-20     # what dags/demo_retrain.py runs on a breach
    scoring-demo receiver --port 8099 --token T --out rows.jsonl
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

from pipeline import cli, settings
from pipeline.config import load_job
from pipeline.demo import data, retrain
from pipeline.demo.receiver import serve
from pipeline.demo.train import train_churn
from pipeline.errors import ConfigError
from pipeline.partition import parse_date
from pipeline.registry import Registry


def _receiver(args: argparse.Namespace) -> int:
    serve(args.host, args.port, args.token, Path(args.out) if args.out else None, args.fault or [])
    return 0


def _day(text: str, what: str) -> dt.date:
    """A day given as exactly YYYY-MM-DD (pipeline.partition.parse_date), else the parameter's usage error."""
    try:
        return parse_date(text, what)
    except ConfigError as exc:
        raise SystemExit(f"scoring-demo: {exc}") from None


def _demo_data(args: argparse.Namespace) -> int:
    root = Path(args.out) if args.out else settings.home() / "data" / "churn"
    start = _day(args.start, "--start")
    horizon = None if args.horizon_days < 0 else args.horizon_days
    data.write_days(root, start, args.days, n=args.customers, seed=args.seed, fmt=args.format, horizon_days=horizon)
    print(f"partitions {start} .. {start + dt.timedelta(days=args.days - 1)} in {root}"
          + ("" if horizon is None else f"; their outcomes, dated {horizon} day(s) later, in {data.outcomes_root(root)}"))
    return 0


def _train(args: argparse.Namespace) -> int:
    registry = Registry(Path(args.models_dir) if args.models_dir else None)
    mv = train_churn(registry, end=_day(args.end, "--end"), n=args.customers, seed=args.seed,
                     alias=args.alias)
    print(f"registered {mv.name} v{mv.version}: {json.dumps(mv.card['metrics'])}")
    return 0


def _retrain(args: argparse.Namespace) -> int:
    job = load_job(Path(args.job_file) if args.job_file else settings.jobs_dir() / f"{retrain.DEMO_JOB}.yaml")
    breach = {"kind": "manual", "partition_date": _day(args.partition, "--partition").isoformat()}
    registry = Registry(Path(args.models_dir) if args.models_dir else None)
    mv = retrain.retrain(job, breach, registry, days=args.days)
    print(f"registered {mv.name} v{mv.version} as {retrain.ALIAS}: {json.dumps(mv.card['metrics'])}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scoring-demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("data", help="write seeded churn partitions")
    p.add_argument("--start", required=True)
    p.add_argument("--days", type=int, default=1)
    p.add_argument("--customers", type=int, default=30_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    p.add_argument("--out")
    p.add_argument("--horizon-days", type=int, default=30,
                   help="write each partition's outcomes dated this many days later beside it (-1: none)")
    p.set_defaults(fn=_demo_data)

    p = sub.add_parser("train", help="train the churn demo model and register it")
    p.add_argument("--end", required=True, help="train on the days before this date")
    p.add_argument("--customers", type=int, default=30_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--alias", default="champion")
    p.add_argument("--models-dir")
    p.set_defaults(fn=_train)
    p = sub.add_parser("retrain", help="retrain the churn model on the latest labelled days, register it as the "
                       "challenger (what the demo_retrain DAG does on a breach)")
    p.add_argument("--partition", required=True, help="the breached partition: train on labelled days up to it")
    p.add_argument("--days", type=int, default=3, help="labelled days to train on")
    p.add_argument("--job-file", help=f"default: {retrain.DEMO_JOB}.yaml in the jobs folder")
    p.add_argument("--models-dir")
    p.set_defaults(fn=_retrain)
    p = sub.add_parser("receiver", help="run the demo webhook receiver (a stand-in promotions engine)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8099)
    p.add_argument("--token", help="require 'Authorization: Bearer TOKEN'")
    p.add_argument("--out", help="append the received rows (deduplicated by key) to this JSON-lines file")
    p.add_argument("--fault", action="append", help="misbehave on the next request: 500, 429:SECONDS, drop, "
                   "accept-drop, 400 (repeat for a script)")
    p.set_defaults(fn=_receiver)

    return parser


def main(argv: list[str] | None = None) -> int:
    return cli.main(argv, build_parser())


if __name__ == "__main__":
    raise SystemExit(main())
