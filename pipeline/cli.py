"""``scoring``: run a job without Airflow, re-drive a push, manage the model registry, check job files.

The demo's commands (data, training, the webhook receiver) are ``scoring-demo``
(``pipeline/demo/cli.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pipeline.errors import ScoringError


def _run(args: argparse.Namespace) -> int:
    from pipeline import local, run
    from pipeline.config import load_job

    job = run.find_job(args.job) if not args.job_file else load_job(args.job_file)
    summary = local.run_partition(job, args.date, model_ref=args.model, dry_run=args.dry_run, run_id=args.run_id,
                                mode=args.mode, resend=args.resend)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _redrive(args: argparse.Namespace) -> int:
    from pipeline import local, run

    job = run.find_job(args.job)
    summary = local.redrive(job, args.date)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _deliveries(args: argparse.Namespace) -> int:
    from pipeline import deliveries, run
    from pipeline.partition import parse_date

    job = run.find_job(args.job)
    eng = run.engine(job)
    day = parse_date(args.date)
    rows = deliveries.batches(eng, job.job_id, day)
    if not rows:
        print(f"no delivery state for {job.job_id} {day} (push mode never ran for it)")
        return 0
    for r in rows:
        if args.all or r["status"] != deliveries.DELIVERED:
            print(f"batch {r['batch_no']:>5}  {r['status']:<11} rows {r['row_count']:>7}  attempts {r['attempts']:>2}  "
                  f"key {r['idempotency_key']}  {r['last_error'] or ''}  {r['dead_letter_path'] or ''}".rstrip())
    total = deliveries.summary(eng, job.job_id, day)
    print(f"{job.job_id} {day} -> {rows[0]['sink']}: " + ", ".join(
        f"{status} {v['batches']} batches / {v['rows']} rows" for status, v in sorted(total.items())))
    return 1 if deliveries.DEAD_LETTER in total else 0


def _models(args: argparse.Namespace) -> int:
    from pipeline.registry import Registry

    registry = Registry(Path(args.models_dir) if args.models_dir else None)
    if args.models_cmd == "list":
        names = [args.name] if args.name else registry.names()
        for name in names:
            aliases = registry.aliases(name)
            for version in registry.versions(name):
                card = registry.resolve(name, version).card
                tags = ",".join(a for a, v in sorted(aliases.items()) if v == version)
                print(f"{name}\tv{version}\t{tags or '-'}\t{card.get('registered_at', '')}\t"
                      f"sklearn {card.get('sklearn_version')}\t{json.dumps(card.get('metrics', {}))}")
        if not names:
            print(f"no models registered in {registry.root}")
    elif args.models_cmd == "show":
        print(json.dumps(registry.resolve(args.name, args.ref).card, indent=2))
    elif args.models_cmd == "register":
        card = json.loads(Path(args.card).read_text())
        mv = registry.register(args.name, Path(args.artifact), card,
                               golden=Path(args.golden) if args.golden else None, alias=args.alias)
        print(f"registered {mv.name} v{mv.version} sha256={mv.card['sha256']}")
    elif args.models_cmd == "promote":
        registry.promote(args.name, int(str(args.version).lstrip("v")), args.alias)
        print(f"{args.name}: {args.alias} -> v{registry.aliases(args.name)[args.alias]}")
    elif args.models_cmd == "rollback":
        version = registry.rollback(args.name, args.alias)
        print(f"{args.name}: {args.alias} rolled back to v{version}")
    elif args.models_cmd == "verify":
        from pipeline.score import load_scorer

        mv = registry.resolve(args.name, args.ref)
        load_scorer(registry, mv.name, mv.version)
        print(f"{mv.name} v{mv.version}: sha256 ok, golden rows reproduced")
    return 0


def _jobs(args: argparse.Namespace) -> int:
    from pipeline import config, settings

    if args.jobs_cmd == "schema":
        text = json.dumps(config.job_json_schema(), indent=2) + "\n"
        if args.write:
            Path(args.write).write_text(text)
            print(f"wrote {args.write}")
        else:
            sys.stdout.write(text)
        return 0
    loaded = config.load_jobs(args.folder or settings.jobs_dir())
    for job_id in loaded.jobs:
        print(f"ok\t{job_id}")
    for path, error in loaded.errors.items():
        print(f"ERROR\t{path}\n{error}", file=sys.stderr)
    return 1 if loaded.errors else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scoring", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("run", help="score one partition of a job, without Airflow")
    p.add_argument("job", help="job id (a file dags/jobs/<job>.yaml)")
    p.add_argument("--date", required=True, help="partition date YYYY-MM-DD")
    p.add_argument("--model", help="model version or alias (default: the job's)")
    p.add_argument("--dry-run", action="store_true", help="run every stage but write no predictions")
    p.add_argument("--run-id", help="run id to record (default: cli__<date>__<time>)")
    p.add_argument("--job-file", help="path of a job file outside the jobs folder")
    p.add_argument("--mode", choices=["persist", "push"], help="output mode for this run (default: the job's)")
    p.add_argument("--resend", action="store_true", help="push mode: send every batch, even ones delivered before")
    p.set_defaults(fn=_run)

    p = sub.add_parser("redrive", help="push mode: send a partition's dead-lettered batches again")
    p.add_argument("job")
    p.add_argument("--date", required=True, help="partition date YYYY-MM-DD")
    p.set_defaults(fn=_redrive)

    p = sub.add_parser("deliveries", help="push mode: the delivery state of a partition's batches")
    p.add_argument("job")
    p.add_argument("--date", required=True, help="partition date YYYY-MM-DD")
    p.add_argument("--all", action="store_true", help="list delivered batches too")
    p.set_defaults(fn=_deliveries)

    p = sub.add_parser("models", help="list, show, register, promote, roll back, verify models")
    p.add_argument("--models-dir", help="registry root (default: SCORING_MODELS_DIR or ./models)")
    msub = p.add_subparsers(dest="models_cmd", required=True)
    q = msub.add_parser("list")
    q.add_argument("name", nargs="?")
    q = msub.add_parser("show")
    q.add_argument("name")
    q.add_argument("ref", nargs="?", default="champion")
    q = msub.add_parser("register")
    q.add_argument("name")
    q.add_argument("--artifact", required=True, help="joblib file of the fitted estimator")
    q.add_argument("--card", required=True, help="JSON model card (inputs, outputs, stats, metrics)")
    q.add_argument("--golden", help="Parquet of input rows with an expected_score column")
    q.add_argument("--alias", help="also point this alias at the new version")
    q = msub.add_parser("promote")
    q.add_argument("name")
    q.add_argument("version")
    q.add_argument("--alias", default="champion")
    q = msub.add_parser("rollback")
    q.add_argument("name")
    q.add_argument("--alias", default="champion")
    q = msub.add_parser("verify")
    q.add_argument("name")
    q.add_argument("ref", nargs="?", default="champion")
    p.set_defaults(fn=_models)

    p = sub.add_parser("jobs", help="check job files, print the job JSON schema")
    jsub = p.add_subparsers(dest="jobs_cmd", required=True)
    q = jsub.add_parser("check")
    q.add_argument("folder", nargs="?")
    q = jsub.add_parser("schema")
    q.add_argument("--write", help="write the schema to this file")
    p.set_defaults(fn=_jobs)

    return parser


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    """Parse, set up logging, run the command; a ScoringError prints its message and exits 2."""
    args = (parser or build_parser()).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.fn(args) or 0)
    except ScoringError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
