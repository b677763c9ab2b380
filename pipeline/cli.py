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
from typing import Any

import pyarrow.parquet as pq
import yaml

from pipeline import (
    ab,
    anchors,
    config,
    deliveries,
    dictionary,
    lease,
    ledger,
    local,
    onboard,
    outcomes,
    promotion,
    run,
    settings,
    shadow,
)
from pipeline.card import card_json_schema
from pipeline.config import load_job
from pipeline.errors import ConfigError, ScoringError
from pipeline.modelcheck import load_artifact
from pipeline.partition import parse_date
from pipeline.registry import Registry
from pipeline.resolve import Models
from pipeline.score import scorer_for
from pipeline.serve.drift import online_drift
from pipeline.serve.recorder import replay
from pipeline.serve.server import serve
from pipeline.store import engines, grants, migrate, operational


def day_arg(text: str) -> str:
    """An argparse type: a day given as exactly YYYY-MM-DD (``pipeline.partition.parse_date``), else a usage error."""
    try:
        return parse_date(text, "--date").isoformat()
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _run(args: argparse.Namespace) -> int:
    job = run.find_job(args.job) if not args.job_file else load_job(args.job_file)
    summary = local.run_partition(job, args.date, model_ref=args.model, dry_run=args.dry_run, run_id=args.run_id,
                                mode=args.mode, resend=args.resend)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _job_named(text: str) -> config.JobConfig:
    """A job by id (a file in the jobs folder) or by the path of its job file."""
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or len(path.parts) > 1:
        if not path.is_file():
            raise ConfigError(f"no job file {path}: give a job id (a file in {settings.jobs_dir()}) or a job file")
        return load_job(path)
    return run.find_job(text)


def _serve(args: argparse.Namespace) -> int:
    """Serve the job's model over HTTP until stopped; 1 if answered rows were left unwritten."""
    left = serve(_job_named(args.job), host=args.host, port=args.port, tokens_file=args.tokens_file,
                no_auth=args.no_auth)
    return 1 if left else 0


def _online(args: argparse.Namespace) -> int:
    """``online drift``: the drift of one day's online traffic, judged as the batch judges a partition's;
    ``online replay``: the dead-lettered online records loaded back (1 if some are dead-lettered again)."""
    job = _job_named(args.job)
    if args.online_cmd == "replay":
        written, again = replay(job, timeout=args.timeout)
        print(f"{job.job_id}: {written} dead-lettered online record(s) loaded into {job.output.table}_online, "
              f"{again} dead-lettered again")
        return 1 if again else 0
    rows = online_drift(job, parse_date(args.date))
    if not rows:
        print(f"{job.job_id} {args.date}: nothing judged: no model answered drift.min_rows ({job.drift.min_rows}) "
              "scored online rows with their inputs that day (online.record_inputs false keeps none)")
        return 0
    print(f"{'model':<24}{'feature':<28}{'kind':<12}{'value':>10}  {'rows':>8}  drifted")
    for r in rows:
        value = "n/a" if r.get("value") is None else f"{r['value']:.4f}"
        print(f"{r['model_name'] + ' v' + str(r['model_version']):<24}{r['feature']:<28}{r['kind']:<12}"
              f"{value:>10}  {r.get('row_count') or 0:>8}  {'DRIFTED' if r.get('drifted') else 'no'}")
    return 0


def _redrive(args: argparse.Namespace) -> int:
    job = run.find_job(args.job)
    summary = local.redrive(job, args.date)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _deliveries(args: argparse.Namespace) -> int:
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


def _runs(args: argparse.Namespace) -> int:
    """The job's latest attempts, after the reaper marked the expired ones abandoned (``pipeline.lease.reap``);
    ``--reap``: what the reaper did, and nothing else (safe at any time: live attempts are left alone)."""
    if args.job is None:
        if not args.reap:
            raise ConfigError("scoring runs: name a job (scoring runs JOB), or reap every job with "
                              "`scoring runs --reap`")
        sweep = lease.reap_jobs(by="`scoring runs --reap`")
        print(sweep.text())
        return 1 if sweep.errors else 0
    job = run.find_job(args.job)
    eng = run.engine(job)
    operational.ensure_ledger(eng)
    found = lease.reap(eng, job.job_id, by="`scoring runs --reap`" if args.reap else "`scoring runs`",
                       drop_loads=args.reap)
    if args.reap:
        print(found.text())
        return 0
    if found:
        print(found.text())
    rows = [r for r in ledger.recent(eng, job.job_id, args.limit) if args.date in (None, str(r["partition_date"]))]
    for r in rows:
        print(f"{r['partition_date']}  {r['run_id']}  attempt {r['attempt']}  {r['status']:<9}"
              f"{'  LIVE' if r['live'] else ''}  rows in {r['rows_in']}  scored {r['rows_scored']}  "
              f"seen {r['heartbeat_at'] or r['started_at']}  {r['failed_stage'] or ''} {r['error'] or ''}".rstrip())
    return 0


def _outcomes(args: argparse.Namespace) -> int:
    """Realised performance of a partition once its outcomes arrived (``pipeline.outcomes``), then the verdict of
    each other version against the champion (``pipeline.verdicts``); 1 on a breach (a verdict is not one)."""
    job = run.find_job(args.job)
    rows, verdicts = outcomes.evaluate_all(job, args.date)
    for r in rows:
        value = "n/a" if r["value"] is None else f"{r['value']:.4f}"
        bound = "" if r["bound"] is None else f"  ({'floor' if r['metric'] in job.outcomes.floors else 'ceiling'} " \
            f"{r['bound']:g}{': BREACHED' if r['breached'] else ''})"
        print(f"{job.job_id} {r['partition_date']} {r['role']:<10} {r['model_name']} v{r['model_version']}  "
              f"{r['metric']:<16}{value:>8}  on {r['rows_labelled']} of {r['rows_predicted']} rows{bound}")
    if not rows:
        print(f"{job.job_id} {args.date}: no prediction has an outcome yet")
    for v in verdicts:  # the cumulative verdict of each other version, in words
        print(f"{job.job_id} {args.date} {v['design']} {v['arm']}: {v['reason']}")
    return 1 if any(r["breached"] for r in rows) else 0


def _models(args: argparse.Namespace) -> int:
    registry = Registry(Path(args.models_dir) if args.models_dir else None,
                        anchors=anchors.for_connection(args.connection))
    commands = {"list": _models_list, "show": _models_show, "register": _models_register, "promote": _models_promote,
                "rollback": _models_rollback, "verify": _models_verify, "archive": _models_lifecycle,
                "restore": _models_lifecycle, "delete": _models_lifecycle, "schema": _models_schema,
                "anchor": _models_anchor, "compare": _models_compare, "audit": _models_audit}
    return int(commands[args.models_cmd](registry, args) or 0)


def _version(text: str) -> int:
    """A version number as typed (``3`` or ``v3``)."""
    if not str(text).lstrip("v").isdigit():
        raise ConfigError(f"version {text!r} is not a number (e.g. 3 or v3)")
    return int(str(text).lstrip("v"))


def _models_list(registry: Any, args: argparse.Namespace) -> int:
    """One line per version (name, version, aliases, registered at, status, task, metrics), then the history."""
    names = [args.name] if args.name else registry.names()
    if not names:
        print(f"no models registered in {registry.root}")
    for name in names:
        for row in registry.describe(name):
            print(f"{name}\tv{row['version']}\t{','.join(row['aliases']) or '-'}\t{row.get('registered_at') or ''}"
                  f"\t{row['status']}\t{row.get('task') or '-'}\t{json.dumps(row.get('metrics') or {})}")
        for event in registry.history(name):
            moved = f"{event.get('from') or '-'} -> {event.get('to') or '-'}" if "to" in event else ""
            print(f"  {name} history: {event.get('at', '')} {event.get('event', 'promote')} "
                  f"{event.get('alias') or ''} {moved} v{event.get('version') or ''} by {event.get('by', '?')}"
                  .replace(" v ", " ").rstrip())
    return 0


def _models_show(registry: Any, args: argparse.Namespace) -> int:
    print(json.dumps(Models(registry=registry).card(args.name, args.ref), indent=2))
    return 0


def _models_register(registry: Any, args: argparse.Namespace) -> int:
    """A hand-written card (--card), or one inferred from the training data (--training-data)."""
    if bool(args.card) == bool(args.training_data):
        raise ConfigError("models register: give either --training-data (the card is inferred) or --card")
    if args.card:
        try:
            card = json.loads(Path(args.card).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--card {args.card}: not a readable JSON file ({exc})") from None
        mv = registry.register(args.name, Path(args.artifact), card,
                               golden=Path(args.golden) if args.golden else None, alias=args.alias)
    else:
        try:
            overrides = yaml.safe_load(Path(args.overrides).read_text()) if args.overrides else None
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"--overrides {args.overrides}: not a readable YAML file ({exc})") from None
        mv = onboard.register_model(
            registry, args.name, load_artifact(Path(args.artifact)), onboard.read_frame(Path(args.training_data)),
            target=args.target, key=args.key, alias=args.alias, overrides=overrides,
            preprocess_ref=args.preprocess, preprocess_module=args.preprocess_module, data=args.training_data,
            artifact=Path(args.artifact))
    inputs = ", ".join(f"{c['name']}:{c['type']}" for c in mv.card["inputs"])
    print(f"registered {mv.name} v{mv.version} sha256={mv.card['sha256']}\ninputs: {inputs}")
    print(f"anchored in {mv.checked_in}" if mv.anchor else
          f"NOT anchored (SCORING_ALLOW_UNANCHORED=1 and no registry database): every run refuses it; configure "
          f"the registry database (SCORING_REGISTRY_DB, default scoring_db) and run `scoring models anchor {mv.name}`")
    return 0


def _models_compare(registry: Any, args: argparse.Namespace) -> int:
    """The champion/challenger comparisons of a model for one partition (``pipeline.shadow``); 1 if one failed."""
    day = parse_date(args.date)
    if args.job:
        engine = run.engine(run.find_job(args.job))
    else:
        engine = engines.for_connection(args.connection or "scoring_db")
    operational.ensure_ledger(engine)
    rows = shadow.comparisons(engine, args.name, day, args.job)
    if not rows:
        print(f"no champion/challenger comparison of {args.name} for {day} (does a job list model.challengers, "
              "and did its run of that day succeed?)")
        return 0
    for r in rows:
        head = (f"{r['job_id']} {day} {args.name}: challenger {r['challenger_ref']} "
                f"(v{r['challenger_version'] if r['challenger_version'] is not None else '?'}) "
                f"vs champion v{r['champion_version']}, run {r['run_id']}")
        if r["status"] != "compared":
            print(f"{head}\n  FAILED: {r['error']}")
            continue
        spearman = "n/a" if r["spearman"] is None else f"{r['spearman']:.4f}"
        print(f"{head}\n  rows {r['rows_compared']}  agreement {r['agreement']:.4f}  mean |diff| "
              f"{r['mean_abs_diff']:.4g}  max |diff| {r['max_abs_diff']:.4g}  spearman {spearman}  "
              f"top-{r['top_n']} overlap {r['top_n_overlap']:.3f}  psi {r['psi']:.4f}")
    return 1 if any(r["status"] != "compared" for r in rows) else 0


def _models_anchor(registry: Any, args: argparse.Namespace) -> int:
    """Record the anchor of versions as the folder holds them now (registered before anchoring, or elsewhere)."""
    adopted = registry.anchor(args.name, _version(args.version) if args.version else None)
    for anchor in adopted:
        print(f"{args.name} v{anchor.version}: anchored artifact sha256={anchor.artifact_sha256} "
              f"card sha256={anchor.card_sha256}")
    print(f"{args.name}: {len(adopted)} version(s) anchored in {registry.anchors.where}"
          + ("" if adopted else " (every version had its anchor already)"))
    return 0


def _models_promote(registry: Any, args: argparse.Namespace) -> int:
    """Point an alias at a version: through the promotion gate (--if-better), or as an override; audited. 1: refused."""
    if bool(args.version) == bool(args.to_challenger):
        raise ConfigError(f"models promote {args.name}: give the version to promote, either as VERSION or as "
                          "--to-challenger X (a version number or an alias such as challenger), not both")
    ref = args.to_challenger or str(_version(args.version))
    if (args.job or args.to_challenger) and not args.if_better:
        raise ConfigError(f"models promote {args.name} --to-challenger / --job: these name the comparison the gate "
                          "reads; add --if-better to promote only if it says the challenger is better, or give the "
                          f"version alone (`scoring models promote {args.name} N --reason ...`) to override the gate")
    done = promotion.promote(registry, args.name, ref, alias=args.alias, if_better=args.if_better, job_id=args.job,
                             reason=args.reason)
    if done.event == promotion.REFUSED:
        print(f"refused: {done.text}\n(recorded in the model audit: `scoring models audit {args.name}`)",
              file=sys.stderr)
        return 1
    print(f"{args.name}: {args.alias} -> v{registry.aliases(args.name)[args.alias]}")
    if args.if_better:
        print(done.text)
    return 0


def _models_rollback(registry: Any, args: argparse.Namespace) -> int:
    done = promotion.rollback(registry, args.name, alias=args.alias, to=_version(args.to) if args.to else None,
                              reason=args.reason)
    print(f"{args.name}: {args.alias} rolled back to v{done.to_version}")
    return 0


def _models_audit(registry: Any, args: argparse.Namespace) -> int:
    """The model audit (newest first): every promotion, rollback and refused promotion, with who, when and why."""
    rows = promotion.history(promotion.audit_engine(registry), args.name, limit=args.limit)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        print(f"no promotion, rollback or refused promotion recorded{' of ' + args.name if args.name else ''} in "
              f"{registry.anchors.where}")
    for r in rows:
        moved = f"v{r['from_version'] if r['from_version'] is not None else '-'} -> v{r['to_version']}"
        print(f"{r['at']}\t{r['model_name']}\t{r['alias']}\t{r['event']}\t{moved}\tby {r['requested_by']} "
              f"({r['source']}{', job ' + r['job_id'] if r['job_id'] else ''})\treason: {r['reason'] or '-'}"
              f"\n  {r['decision']}")
    return 0


def _models_verify(registry: Any, args: argparse.Namespace) -> int:
    models = Models(registry=registry)
    mv = models.resolve(args.name, args.ref)  # the card against its anchor
    scorer_for(registry, mv)  # sha256, then the golden rows if there are any
    anchored = (f"matches its anchor in {mv.checked_in}" if mv.anchor else
                f"NOT anchored (checked against its own card only; `scoring models anchor {mv.name}`)")
    if mv.golden.exists():
        print(f"{mv.name} v{mv.version}: sha256 ok, {pq.ParquetFile(mv.golden).metadata.num_rows} golden rows "
              f"reproduced; {anchored}")
        return 0 if mv.anchor else 1
    print(f"{mv.name} v{mv.version}: sha256 ok; NO golden rows, so training/scoring parity was not checked "
          f"(register with --training-data to get them); {anchored}")
    return 1


def _models_lifecycle(registry: Any, args: argparse.Namespace) -> int:
    """archive, restore or delete one version."""
    version = _version(args.version)
    verbs = {"archive": registry.archive, "restore": registry.restore, "delete": registry.delete}
    verbs[args.models_cmd](args.name, version)
    done = {"archive": "archived (restore with `scoring models restore`)", "restore": "restored", "delete": "deleted"}
    print(f"{args.name} v{version} {done[args.models_cmd]}")
    return 0


def _models_schema(_: Any, args: argparse.Namespace) -> int:
    return _emit(json.dumps(card_json_schema(), indent=2) + "\n", args.write)


def _emit(text: str, path: str | None) -> int:
    """Write a generated document to ``path``, or print it."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
        print(f"wrote {path}")
    else:
        sys.stdout.write(text)
    return 0


def _db(args: argparse.Namespace) -> int:
    """upgrade: the operational tables migrated; grant-reader: a read-only role on the analysts' schema;
    dictionary: the data dictionary as Markdown."""
    if args.db_cmd == "dictionary":
        return _emit(dictionary.markdown(), args.write)
    if args.db_cmd == "upgrade":
        return _upgrade(engines.for_connection(args.connection))

    grants.grant_reader(engines.for_connection(args.connection), args.schema, args.role)
    print(f"role {args.role} may SELECT every table and view in schema {args.schema} (and those created there "
          f"later), nothing else. Give it to a login: GRANT {args.role} TO <login>; it connects with "
          f"postgresql://<login>@<host>:5432/<db>?options=-csearch_path%3D{args.schema}")
    return 0


def _upgrade(engine: Any) -> int:
    """``db upgrade``: the operational tables to the newest revision (what every run's start does)."""
    applied = migrate.upgrade(engine)
    operational.ensure_ledger(engine)  # (at the head now: the comments only)
    with engine.connect() as conn:
        print(f"{engines.describe(engine)}: revision {migrate.current(conn)} (the newest); "
              + (f"applied {', '.join(applied)}" if applied else "no migration file to apply"))
    return 0


def _jobs(args: argparse.Namespace) -> int:
    if args.jobs_cmd == "schema":
        return _emit(json.dumps(config.job_json_schema(), indent=2) + "\n", args.write)
    loaded = config.load_jobs(args.folder or settings.jobs_dir())
    refused = 0
    models = Models() if args.models else None
    for job_id, job in loaded.jobs.items():
        problem = _job_models(job, models) if models is not None else None
        if problem:
            refused += 1
            print(f"ERROR\t{job_id}\n{problem}", file=sys.stderr)
        else:
            print(f"ok\t{job_id}")
    for path, error in loaded.errors.items():
        print(f"ERROR\t{path}\n{error}", file=sys.stderr)
    return 1 if loaded.errors or refused else 0


def _job_models(job: config.JobConfig, models: Models) -> str | None:
    """``jobs check --models``: the job's champion resolves (anchored), and its split's arms share its contract
    (``ab.pin``, as a run's start checks them); what is wrong, else None. An arm that does not resolve is said too:
    a run would score its rows with the champion."""
    try:
        champion = models.resolve(job.model.name, job.model.ref)
        arms = ab.pin(job, models, champion) if job.model.split else []
    except ScoringError as exc:
        return str(exc)
    missing = [f"model.split arm {a.name!r} does not resolve ({a.error}): a run would score its rows with the "
               "champion" for a in arms if a.error]
    return "\n".join(missing) or None


def build_parser() -> argparse.ArgumentParser:
    """The ``scoring`` command line: one sub-parser per command group."""
    parser = argparse.ArgumentParser(prog="scoring", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="cmd", required=True)
    _run_parsers(sub)
    _models_parser(sub)
    _db_parser(sub)
    _jobs_parser(sub)
    _serve_parsers(sub)
    return parser


def _run_parsers(sub: Any) -> None:
    """``run``, ``redrive``, ``deliveries``, ``runs``, ``outcomes``: a job's partitions."""
    p = sub.add_parser("run", help="score one partition of a job, without Airflow")
    p.add_argument("job", help="job id (a file dags/jobs/<job>.yaml)")
    p.add_argument("--date", required=True, type=day_arg, help="partition date YYYY-MM-DD")
    p.add_argument("--model", help="model version or alias (default: the job's)")
    p.add_argument("--dry-run", action="store_true", help="run every stage but write no predictions")
    p.add_argument("--run-id", help="run id to record (default: cli__<date>__<time>)")
    p.add_argument("--job-file", help="path of a job file outside the jobs folder")
    p.add_argument("--mode", choices=["persist", "push"], help="output mode for this run (default: the job's)")
    p.add_argument("--resend", action="store_true", help="push mode: send every batch, even ones delivered before")
    p.set_defaults(fn=_run)

    p = sub.add_parser("redrive", help="push mode: send a partition's dead-lettered batches again")
    p.add_argument("job")
    p.add_argument("--date", required=True, type=day_arg, help="partition date YYYY-MM-DD")
    p.set_defaults(fn=_redrive)

    p = sub.add_parser("deliveries", help="push mode: the delivery state of a partition's batches")
    p.add_argument("job")
    p.add_argument("--date", required=True, type=day_arg, help="partition date YYYY-MM-DD")
    p.add_argument("--all", action="store_true", help="list delivered batches too")
    p.set_defaults(fn=_deliveries)

    p = sub.add_parser("runs", help="a job's latest attempts (the live copy marked); dead running ones become "
                       "abandoned; --reap: only reap (every job when none is named)")
    p.add_argument("job", nargs="?", help="job id (with --reap, optional: default every job in the jobs folder)")
    p.add_argument("--date", type=day_arg, help="only this partition (YYYY-MM-DD)")
    p.add_argument("--limit", type=int, default=20, help="how many attempts (default 20)")
    p.add_argument("--reap", action="store_true", help="only reap: mark the job's expired running attempts of any "
                   "day abandoned, remove their staging and load tables, print what was reaped (safe at any time)")
    p.set_defaults(fn=_runs)

    p = sub.add_parser("outcomes", help="realised performance of a scored partition once its outcomes arrived")
    p.add_argument("job")
    p.add_argument("--date", required=True, type=day_arg, help="the scored partition (its outcomes are dated "
                   "date + outcomes.horizon_days)")
    p.set_defaults(fn=_outcomes)


def _models_parser(sub: Any) -> None:
    """``models ...``: the model registry."""
    p = sub.add_parser("models", help="list, show, register, promote, roll back, archive, verify models")
    p.add_argument("--models-dir", help="registry root (default: SCORING_MODELS_DIR or ./models)")
    p.add_argument("--connection", help="connection id of the registry database holding the registration records "
                   "(anchors); default: the SCORING_REGISTRY_DB connection (default scoring_db)")
    msub = p.add_subparsers(dest="models_cmd", required=True)
    q = msub.add_parser("list", help="versions with their aliases and status, then the alias history")
    q.add_argument("name", nargs="?")
    q = msub.add_parser("show", help="print a version's model card")
    q.add_argument("name")
    q.add_argument("ref", nargs="?", default="champion")
    q = msub.add_parser("register", help="register a fitted estimator: its card inferred from --training-data, "
                        "or a hand-written --card")
    _register_options(q)
    q = msub.add_parser("promote", help="point an alias at a version: through the promotion gate (--if-better), or "
                        "as an override; every promotion and refusal is a row of the model audit")
    q.add_argument("name")
    q.add_argument("version", nargs="?", help="the version to promote (an override unless --if-better)")
    q.add_argument("--to-challenger", metavar="X", help="with --if-better: the version or alias to promote (e.g. "
                   "challenger)")
    q.add_argument("--if-better", action="store_true", help="promote only if the realised comparison with the "
                   "current champion says it is better at the job's verdict.confidence and verdict.min_rows; else "
                   "refuse (exit 1)")
    q.add_argument("--job", help="whose comparison decides (default: the one job scoring X beside the champion)")
    q.add_argument("--reason", help="why, in your words (recorded in the audit)")
    q.add_argument("--alias", default="champion")
    q = msub.add_parser("rollback", help="move an alias back one promotion, or --to a version (audited)")
    q.add_argument("name")
    q.add_argument("--alias", default="champion")
    q.add_argument("--to", help="the version to point the alias at")
    q.add_argument("--reason", help="why, in your words (recorded in the audit)")
    q = msub.add_parser("audit", help="the model audit: promotions, rollbacks and refused promotions, newest first")
    q.add_argument("name", nargs="?")
    q.add_argument("--limit", type=int, default=50)
    q.add_argument("--json", action="store_true", help="rows as JSON (figures included)")
    for verb, text in (("archive", "set a version no alias points to aside (not resolvable; restorable)"),
                       ("restore", "bring an archived version back"),
                       ("delete", "delete an archived version for good")):
        q = msub.add_parser(verb, help=text)
        q.add_argument("name")
        q.add_argument("version")
    q = msub.add_parser("anchor", help="record the anchors (sha256 of artifact and card) of versions registered "
                        "before anchoring or into another database, as the folder holds them now")
    q.add_argument("name")
    q.add_argument("version", nargs="?", help="one version (default: every live and archived one)")
    q = msub.add_parser("verify", help="check sha256 (against the anchor) and re-score the golden rows")
    q.add_argument("name")
    q.add_argument("ref", nargs="?", default="champion")
    q = msub.add_parser("schema", help="print the model card JSON schema")
    q.add_argument("--write", help="write the schema to this file")
    q = msub.add_parser("compare", help="champion/challenger comparisons of a model for one partition")
    q.add_argument("name")
    q.add_argument("--date", required=True, type=day_arg, help="the partition (YYYY-MM-DD)")
    q.add_argument("--job", help="only this job (its output database); default: every job in --connection or "
                   "AIRFLOW_CONN_SCORING_DB")
    p.set_defaults(fn=_models)


def _register_options(q: argparse.ArgumentParser) -> None:
    """The options of ``models register``."""
    q.add_argument("name")
    q.add_argument("--artifact", required=True, help="joblib file of the fitted estimator or Pipeline")
    q.add_argument("--training-data", help="Parquet or CSV the model was trained on: the card is inferred from it")
    q.add_argument("--target", help="with --training-data: the label column (gives metrics; not an input)")
    q.add_argument("--key", help="with --training-data: the entity key column (not an input)")
    q.add_argument("--overrides", help="with --training-data: YAML of what inference cannot know "
                   "(positive_class, description, inputs.<col>.{nullable,min,max (declared: quarantine),observed_min,"
                   "observed_max (flag),categories,handles_unknown,missing_values,blank_is_missing})")
    q.add_argument("--preprocess", help="with --training-data: transform NAME@VERSION (default: identity, or "
                   "categories@1 when the frame has category columns)")
    q.add_argument("--preprocess-module", help="module that registers that transform, e.g. acme.features")
    q.add_argument("--card", help="a hand-written JSON model card (schema: scoring models schema)")
    q.add_argument("--golden", help="with --card: Parquet of input rows with an expected_score column")
    q.add_argument("--alias", help="also point this alias at the new version")


def _db_parser(sub: Any) -> None:
    """``db ...``: the output database."""
    p = sub.add_parser("db", help="the output database: its migrations, a read-only role for analysts, the data "
                       "dictionary")
    dsub = p.add_subparsers(dest="db_cmd", required=True)
    q = dsub.add_parser("grant-reader", help="PostgreSQL: a role that may read the analysts' schema only")
    q.add_argument("--schema", required=True, help="the analysts' schema (the jobs' output.schema)")
    q.add_argument("--role", default="scoring_reader", help="role to create (NOLOGIN) or update")
    q.add_argument("--connection", default="scoring_db", help="connection id of the output database")
    q = dsub.add_parser("upgrade", help="make or migrate the operational tables to the newest revision (Alembic)")
    q.add_argument("--connection", default="scoring_db", help="connection id of the output database")
    q = dsub.add_parser("dictionary", help="print the data dictionary (Markdown)")
    q.add_argument("--write", help="write it to this file (docs/data-dictionary.md)")
    p.set_defaults(fn=_db)


def _jobs_parser(sub: Any) -> None:
    """``jobs ...``: job files."""
    p = sub.add_parser("jobs", help="check job files, print the job JSON schema")
    jsub = p.add_subparsers(dest="jobs_cmd", required=True)
    q = jsub.add_parser("check", help="validate the job files; --models also resolves each job's champion and "
                        "checks its model.split arms share the champion's contract")
    q.add_argument("folder", nargs="?")
    q.add_argument("--models", action="store_true", help="resolve the models (anchored) and check the split's arms")
    q = jsub.add_parser("schema")
    q.add_argument("--write", help="write the schema to this file")
    p.set_defaults(fn=_jobs)


def _serve_parsers(sub: Any) -> None:
    """``serve`` and ``online ...``: the online door."""
    p = sub.add_parser("serve", help="score requests over HTTP with the job's model, contract and preprocessing "
                       "(POST /v1/jobs/JOB:score), until SIGINT or SIGTERM")
    p.add_argument("job", help="job id (a file in the jobs folder) or the path of a job file")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--tokens-file", help=f"bearer tokens, one per line, '#' comments (default: "
                   f"{settings.SERVE_TOKENS_FILE}); required unless --no-auth")
    p.add_argument("--no-auth", action="store_true", help="no authentication (only with --host 127.0.0.1)")
    p.set_defaults(fn=_serve)

    p = sub.add_parser("online", help="the online door's records: drift of a day's online traffic, replay of "
                       "dead-lettered records")
    osub = p.add_subparsers(dest="online_cmd", required=True)
    q = osub.add_parser("drift", help="judge a day's online rows against the model's training statistics "
                        "(the batch's PSI), written to scoring_drift with source 'online'")
    q.add_argument("job", help="job id or the path of a job file")
    q.add_argument("--date", required=True, type=day_arg, help="the day (YYYY-MM-DD, in the job's timezone)")
    q = osub.add_parser("replay", help="load the online records dead-lettered (database down at stop, or refused) "
                        "back into <output.table>_online; those refused again stay dead-lettered")
    q.add_argument("job", help="job id or the path of a job file")
    q.add_argument("--timeout", type=float, default=60.0, help="how long to wait for the database (default 60 s)")
    p.set_defaults(fn=_online)


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
