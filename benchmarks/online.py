"""`make bench`, online part: the door's latency and throughput beside the bare model's, in one run.

Sets up a scoring home in the bench's work dir (``SCORING_BENCH_WORK``: the demo churn model in its
registry, anchored in the bench's schema; a job ``bench_online`` with an output table; a tokens file),
starts ``scoring serve`` on a free 127.0.0.1 port and measures, on the same demo rows (valid ones: each is
scored, none quarantined):

- bare: the loaded estimator's ``predict_proba`` on features computed before the clock starts, and the
  model's own transform plus ``predict_proba``, on 1 and on 100 rows, one thread;
- door: ``Door.score`` in this process (the request read as the job's source reads it, the suite, the
  transform, the estimator), 1 and 100 rows, one thread;
- HTTP: one keep-alive client (httpx) posting to the server, 1 and 100 rows (bodies encoded before the clock);
- load: 1, 8 and 32 concurrent clients (threads of one client process, each its own keep-alive connection)
  posting requests of 1 and of 100 rows for a few seconds each: requests/s, rows/s, p50 and p99, and the CPU
  the server and the clients used. The clients run on the same cores as the server: at high concurrency
  they take CPU the server would otherwise have, so these are figures of a server sharing its machine;
- threads: the model's ``predict_proba`` on one row from 8 threads at once, with the libraries' default
  thread pools and then with one thread per predicting thread (in a process of its own, without a server);
  and 8 clients of one row against servers of their own: one whose requests predict on every core
  (``SCORING_SERVE_THREADS``, beside the default server's one thread a request), and ones that score 1 and
  forty requests (the thread pool's) at once (``SCORING_SERVE_CONCURRENCY`` 1 and 0, beside the default: the cores).

Latencies are p50 and p99 (nearest rank) over the repetitions, after a warm-up. Beside them: the door's and
HTTP's single-row p50 minus the bare ``predict_proba``'s, and p99 / p50 under 8 clients, each against its goal
(the door adds at most 1 ms at p50 to a single-row score; p99 within 3x p50 under 8 clients). Records the
machine's load (bench.py's rule: busy or not). Prints a table and writes ``benchmarks/online.json`` and a copy
in ``benchmarks/history/online/``. Everything talks to 127.0.0.1; the server is stopped at the end, also on an
error. A benchmark measures; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import resource
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bench

ROOT = bench.ROOT
WORK = bench.WORK
JOB = "bench_online"
ROWS = 100  # the larger request; the single row is the first of them
CLIENTS = (1, 8, 32)
THREAD_CLIENTS = 8
WARMUP_REQUESTS = 2  # each load client's, before the clock
GOAL_DOOR_MS = 1.0  # the door adds at most this at p50 to a single-row score
GOAL_TAIL = 3.0  # p99 / p50 under GOAL_CLIENTS concurrent clients
GOAL_CLIENTS = 8
OUT = ROOT / "benchmarks" / "online.json"


# -- figures -------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile ``q`` (0-100) of ``values`` (0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def figures(seconds: list[float]) -> dict[str, Any]:
    """p50, p99 and the largest latency in milliseconds, and how many."""
    return {"p50_ms": round(percentile(seconds, 50) * 1000, 4), "p99_ms": round(percentile(seconds, 99) * 1000, 4),
            "max_ms": round(max(seconds, default=0.0) * 1000, 4), "n": len(seconds)}


def timed(call: Callable[[], Any], reps: int, warmup: int) -> dict[str, Any]:
    """``call`` run ``warmup`` times untimed, then ``reps`` times, each timed."""
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(reps):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return figures(seconds)


# -- the scoring home ----------------------------------------------------------------------------
def prepare() -> dict[str, Any]:
    """The demo model (trained or adopted into the bench's schema), the job file, a token, the rows."""
    os.environ.update(bench.env())
    import psycopg

    from pipeline.demo.train import train_churn
    from pipeline.registry import Registry

    for name in ("jobs", "staging", "reports", "deadletter", "online", f"data/{JOB}"):
        (WORK / name).mkdir(parents=True, exist_ok=True)
    with psycopg.connect(bench.PG, autocommit=True) as conn:  # the bench's schema, kept if bench.py made it
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {bench.SCHEMA}")
        conn.execute(f"DROP TABLE IF EXISTS {bench.SCHEMA}.{JOB}_predictions_online")  # this run's records only
    registry = Registry(WORK / "models")
    if not registry.versions("churn"):
        small = {"days": 2, "n": 3000} if os.environ.get("SCORING_BENCH_SMALL_MODELS") else {}
        train_churn(registry, end=bench.DAY - dt.timedelta(days=3), **small)
    else:
        registry.anchor("churn")  # the cached model, adopted into the schema (an anchor already there is kept)
    write_job()
    tokens = WORK / "online" / "tokens"
    token = secrets.token_urlsafe(24)
    tokens.write_text(token + "\n")
    tokens.chmod(0o600)
    rows_file = WORK / "online" / "rows.json"
    rows_file.write_text(json.dumps(demo_rows(ROWS)))
    return {"token": token, "tokens_file": tokens, "rows_file": rows_file}


def write_job() -> None:
    """The online bench's job: the demo model, an output table (its answers go to ``<table>_online``)."""
    import yaml

    doc = {"job_id": JOB, "schedule": None, "start_date": "2026-11-01", "entity_key": "customer_id",
           "source": {"path": str(WORK / "data" / JOB)}, "model": {"name": "churn"},
           "output": {"table": f"{JOB}_predictions"}, "validation": {"max_quarantine_share": 0.05}}
    (WORK / "jobs" / f"{JOB}.yaml").write_text(yaml.safe_dump(doc))


def demo_rows(count: int) -> list[dict[str, Any]]:
    """``count`` rows of a demo partition as JSON records (the export's column names), valid ones only: the
    contract's broken rows (negative charges, no region) are left out, so every row is scored."""
    from pipeline.demo import data as demo_data

    frame = demo_data.customers(bench.DAY, n=max(3 * count, 200), seed=2027)
    frame = frame[(frame["monthly_charges"] >= 0) & frame["region"].notna()].head(count)
    return json.loads(frame.to_json(orient="records"))  # NaN -> null, as a client sends a missing value


# -- in this process: the bare model and the door --------------------------------------------------
def in_process(rows: list[dict[str, Any]], reps: int, warmup: int) -> dict[str, Any]:
    """Bare ``predict_proba`` (features made before the clock; and with the model's transform) and the
    door's ``score``, on the first row and on all rows, under one thread (a limit entered once, in this thread)."""
    import pandas as pd
    from threadpoolctl import ThreadpoolController

    from pipeline import run
    from pipeline.serve.door import Door

    door = Door(run.find_job(JOB))
    served = door.load()
    scorer = door_scorer(door)
    sizes = {1: rows[:1], len(rows): rows}
    out: dict[str, Any] = {"bare_predict": {}, "bare_transform_predict": {}, "door": {},
                           "model": {"name": served.name, "version": served.version}}
    with ThreadpoolController().limit(limits=1):
        for size, records in sizes.items():
            frame = pd.DataFrame(records)
            features = scorer.features(frame)
            many = max(reps // (1 if size == 1 else 5), 20)  # fewer repetitions of the larger request
            out["bare_predict"][str(size)] = timed(lambda f=features: scorer.estimator.predict_proba(f), many, warmup)
            out["bare_transform_predict"][str(size)] = timed(
                lambda r=frame: scorer.estimator.predict_proba(scorer.features(r)), many, warmup)
            out["door"][str(size)] = timed(lambda r=records: door.score(r, "bench"), many, warmup)
        out["same_scores"] = same_scores(door, scorer, rows)
    return out


def door_scorer(door: Any) -> Any:
    """The door's loaded model (its estimator and transform), or the registry's own load of the same version."""
    from pipeline.registry import Registry
    from pipeline.score import load_scorer

    loaded = getattr(door, "_loaded", None)  # the door's own model object when it keeps one there
    found = getattr(getattr(loaded, "model", None), "scorer", None)
    if found is not None and hasattr(found, "estimator"):
        return found
    return load_scorer(Registry(), door.served.name, door.served.version)


def same_scores(door: Any, scorer: Any, rows: list[dict[str, Any]]) -> bool:
    """Whether the door scores every row (none quarantined) exactly as the bare model does."""
    import pandas as pd

    results = door.score(rows, "bench-check")
    _, bare = scorer.predict(scorer.features(pd.DataFrame(rows)))
    return all(r.status == "scored" for r in results) and [r.score for r in results] == [float(s) for s in bare]


# -- the server ----------------------------------------------------------------------------------
def free_port() -> int:
    """A port nobody listens on at 127.0.0.1 now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def server(tokens_file: Path, wait_s: float = 120.0, **extra_env: str) -> Iterator[dict[str, Any]]:
    """``scoring serve`` on a free 127.0.0.1 port, ready (``/health/ready``); stopped when the block ends."""
    port = free_port()
    scoring = Path(sys.executable).parent / "scoring"
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile("w+") as log:  # not a pipe: a full one would stall the server
        proc = subprocess.Popen([str(scoring), "serve", JOB, "--host", "127.0.0.1", "--port", str(port),
                                 "--tokens-file", str(tokens_file)], env={**bench.env(), **extra_env}, stdout=log,
                                stderr=subprocess.STDOUT, text=True)
        try:
            waited = wait_ready(proc, url, wait_s, log)
            yield {"url": url, "pid": proc.pid, "ready_s": waited}
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


def wait_ready(proc: subprocess.Popen, url: str, wait_s: float, log: Any) -> float:
    """Seconds until ``/health/ready`` answered 200; raises with the server's log when it exits or never does."""
    import httpx

    started = time.perf_counter()
    while time.perf_counter() - started < wait_s:
        if proc.poll() is not None:
            raise SystemExit(f"scoring serve exited with {proc.returncode} before it was ready:\n{tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return time.perf_counter() - started
        time.sleep(0.2)
    raise SystemExit(f"scoring serve was not ready at {url}/health/ready after {wait_s:.0f}s:\n{tail(log)}")


def tail(log: Any, chars: int = 4000) -> str:
    log.flush()
    log.seek(0)
    return log.read()[-chars:]


def cpu_seconds(pid: int) -> float | None:
    """A process's CPU seconds so far (all its threads: user + system, /proc), None where unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


# -- HTTP: one client here, and the load generator (a process of its own) ---------------------------
def bodies(rows: list[dict[str, Any]]) -> dict[int, bytes]:
    """The request bodies, encoded once: a JSON list of 1 row and of all rows."""
    return {1: json.dumps(rows[:1]).encode(), len(rows): json.dumps(rows).encode()}


def one_client(url: str, token: str, rows: list[dict[str, Any]], reps: int, warmup: int) -> dict[str, Any]:
    """One keep-alive client posting the same body again and again: p50/p99 per request size."""
    import httpx

    out = {}
    with httpx.Client(base_url=url, headers=headers(token), timeout=30) as client:
        for size, body in bodies(rows).items():
            def post(body: bytes = body, size: int = size) -> None:
                answer = client.post(f"/v1/jobs/{JOB}:score", content=body)
                if answer.status_code != 200 or len(answer.json()["results"]) != size:
                    raise SystemExit(f"POST /v1/jobs/{JOB}:score with {size} row(s) answered "
                                     f"{answer.status_code}: {answer.text[:300]}")
            out[str(size)] = timed(post, max(reps // (1 if size == 1 else 5), 20), warmup)
    return out


def headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def load_level(url: str, token: str, rows_file: Path, size: int, clients: int, seconds: float, pid: int
               ) -> dict[str, Any]:
    """``clients`` concurrent clients for ``seconds`` (a process of its own, which reads the server's CPU too)."""
    done = subprocess.run([sys.executable, __file__, "--child", "load", "--url", url, "--rows-file", str(rows_file),
                           "--size", str(size), "--clients", str(clients), "--seconds", str(seconds),
                           "--server-pid", str(pid)],
                          env=dict(os.environ, SCORING_BENCH_TOKEN=token), capture_output=True, text=True,
                          timeout=seconds * 4 + 120)
    if done.returncode != 0:
        raise SystemExit(f"load generator ({clients} clients, {size} rows) failed:\n{done.stderr[-4000:]}")
    result = json.loads([ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])
    result["load_avg_after"] = [round(v, 2) for v in os.getloadavg()]
    return result


def generate_load(url: str, rows_file: Path, size: int, clients: int, seconds: float, server_pid: int | None
                  ) -> dict[str, Any]:
    """The load generator's process: ``clients`` threads, each its own keep-alive connection, posting the same
    body from a common start for ``seconds`` (after a warm-up of each client's first requests); the CPU it and
    the server used over the same window."""
    import httpx

    body = bodies(json.loads(rows_file.read_text()))[size]
    token = os.environ["SCORING_BENCH_TOKEN"]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start = threading.Barrier(clients + 1)
    window: dict[str, float] = {}

    def client(i: int) -> None:
        with httpx.Client(base_url=url, headers=headers(token), timeout=60) as http:
            for _ in range(WARMUP_REQUESTS):  # the connection opened, the server's paths warm
                http.post(f"/v1/jobs/{JOB}:score", content=body)
            start.wait()
            while time.perf_counter() < window["end"]:
                began = time.perf_counter()
                answer = http.post(f"/v1/jobs/{JOB}:score", content=body)
                latencies[i].append(time.perf_counter() - began)
                errors[i] += answer.status_code != 200

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    window["end"] = time.perf_counter() + seconds + 60  # set again below, once every client is warm
    start.wait()
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    server_before = cpu_seconds(server_pid) if server_pid else None
    began = time.perf_counter()
    window["end"] = began + seconds
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    used = resource.getrusage(resource.RUSAGE_SELF)
    server_after = cpu_seconds(server_pid) if server_pid else None
    every = [s for each in latencies for s in each]
    server_cpu = None if server_before is None or server_after is None else round(
        (server_after - server_before) / wall, 2)
    return {"server_cpu_cores": server_cpu, "clients": clients, "rows_per_request": size, "requests": len(every), "errors": sum(errors),
            "warmup_requests": WARMUP_REQUESTS * clients,
            "wall_s": round(wall, 3), "requests_per_s": round(len(every) / wall, 1),
            "rows_per_s": round(len(every) * size / wall, 1), **figures(every),
            "client_cpu_cores": round((used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime) / wall, 2)}


# -- threads: the model alone from 8 threads, default pools vs one thread each --------------------
def thread_limits(rows_file: Path, seconds: float) -> dict[str, Any]:
    """The threads child (a process of its own): default pools first, then one thread per predicting thread."""
    done = subprocess.run([sys.executable, __file__, "--child", "threads", "--rows-file", str(rows_file),
                           "--seconds", str(seconds)], env=bench.env(), capture_output=True, text=True,
                          timeout=seconds * 8 + 300)
    if done.returncode != 0:
        raise SystemExit(f"threads child failed:\n{done.stderr[-4000:]}")
    return json.loads([ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])


def predict_from_threads(rows_file: Path, seconds: float) -> dict[str, Any]:
    """The served model's ``predict_proba`` on one row from ``THREAD_CLIENTS`` threads at once, for ``seconds``:
    with the libraries' default pools, then with each thread limiting its own pools to one thread (OpenMP's
    limit holds for the thread that sets it). The default runs first: nothing of this process is limited yet."""
    import pandas as pd

    from pipeline.registry import Registry
    from pipeline.score import load_scorer

    registry = Registry()
    scorer = load_scorer(registry, "churn", registry.version_of("churn", "champion"))
    features = scorer.features(pd.DataFrame(json.loads(rows_file.read_text())[:1]))
    return {limit: predict_in_threads(scorer, features, limit, seconds) for limit in ("default", "1")}


def predict_in_threads(scorer: Any, features: Any, limit: str, seconds: float) -> dict[str, Any]:
    """``THREAD_CLIENTS`` threads predicting ``features`` in a loop from a common start for ``seconds``."""
    from threadpoolctl import ThreadpoolController, threadpool_info

    controller = ThreadpoolController()
    latencies: list[list[float]] = [[] for _ in range(THREAD_CLIENTS)]
    start = threading.Barrier(THREAD_CLIENTS)
    pools: list[int] = []

    def predict(i: int) -> None:
        with controller.limit(limits=1) if limit == "1" else contextlib.nullcontext():
            if i == 0:  # OpenMP's pool as this predicting thread sees it
                pools.extend(p["num_threads"] for p in threadpool_info() if p.get("user_api") == "openmp")
            for _ in range(5):
                scorer.estimator.predict_proba(features)
            start.wait()
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                began = time.perf_counter()
                scorer.estimator.predict_proba(features)
                latencies[i].append(time.perf_counter() - began)

    threads = [threading.Thread(target=predict, args=(i,)) for i in range(THREAD_CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [s for each in latencies for s in each]
    return {"limit": limit, "threads": THREAD_CLIENTS, "predictions": len(every),
            "predictions_per_s": round(len(every) / seconds, 1), "openmp_threads": sorted(set(pools)), **figures(every)}


# -- the run -------------------------------------------------------------------------------------
def measure_all(args: argparse.Namespace, home: dict[str, Any]) -> dict[str, Any]:
    """Every measurement, in the order the docstring gives; the server only for the HTTP ones."""
    rows = json.loads(home["rows_file"].read_text())
    print(f"bare model and door in this process, 1 and {len(rows)} rows ...", flush=True)
    results = in_process(rows, args.reps, args.warmup)
    with server(home["tokens_file"]) as srv:
        results["server_ready_s"] = round(srv["ready_s"], 2)
        results["server_port"] = int(srv["url"].rsplit(":", 1)[1])
        print(f"HTTP, one keep-alive client, 1 and {len(rows)} rows ...", flush=True)
        results["http"] = one_client(srv["url"], home["token"], rows, args.reps, args.warmup)
        results["load"] = {}
        for size in (1, len(rows)):
            for clients in args.clients:
                print(f"HTTP load: {clients} client(s), {size} row(s) a request, {args.seconds:g}s ...", flush=True)
                results["load"][f"{size}x{clients}"] = load_level(
                    srv["url"], home["token"], home["rows_file"], size, clients, args.seconds, srv["pid"])
    if not args.no_threads:
        print(f"predict_proba on one row from {THREAD_CLIENTS} threads: default pools vs one thread each ...",
              flush=True)
        results["threads"] = thread_limits(home["rows_file"], args.seconds)
        cores = str(os.cpu_count() or 1)
        default = results["load"].get(f"1x{GOAL_CLIENTS}")
        results["server_threads"] = {**({"1": default} if default else {}),
                                     cores: other_server(args, home, "SCORING_SERVE_THREADS", cores)}
        results["server_concurrency"] = {value: other_server(args, home, "SCORING_SERVE_CONCURRENCY", value)
                                         for value in ("1", "0")}  # the default is the cores; 0: the pool's 40
    return results


def other_server(args: argparse.Namespace, home: dict[str, Any], setting: str, value: str) -> dict[str, Any]:
    """``GOAL_CLIENTS`` clients of 1 row against a server of its own started with ``setting`` = ``value``: the
    request path's thread limit (``SCORING_SERVE_THREADS``: the cores, beside the default server's 1) and the
    requests scored at once (``SCORING_SERVE_CONCURRENCY``, beside the default server's)."""
    print(f"HTTP load: {GOAL_CLIENTS} clients, 1 row, a server with {setting}={value} ...", flush=True)
    with server(home["tokens_file"], **{setting: value}) as srv:
        return load_level(srv["url"], home["token"], home["rows_file"], 1, GOAL_CLIENTS, args.seconds, srv["pid"])


def summarize(results: dict[str, Any], load: dict[str, Any], commit: str | None, dirty: bool | None,
              rows: int) -> dict[str, Any]:
    """benchmarks/online.json's content: the headline figures against their goals, then every measurement."""
    # the single-row score the door must not slow by more than the goal: the model's own transform and
    # predict_proba (the model as registered); predict_proba alone on ready features is beside it
    bare1, door1, http1 = (results[k]["1"]["p50_ms"] for k in ("bare_transform_predict", "door", "http"))
    predict1 = results["bare_predict"]["1"]["p50_ms"]
    at_goal = results["load"].get(f"1x{GOAL_CLIENTS}")
    tail_ratio = round(at_goal["p99_ms"] / at_goal["p50_ms"], 2) if at_goal and at_goal["p50_ms"] else None
    return {
        "machine": f"{platform.node()} {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
                   f"Python {platform.python_version()}",
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": commit, "commit_dirty": dirty, "rows": rows,
        "model": results["model"],
        "bare_p50_ms_1row": bare1, "bare_predict_p50_ms_1row": predict1, "door_p50_ms_1row": door1,
        "http_p50_ms_1row": http1,
        "door_overhead_p50_ms": round(door1 - bare1, 3),
        "http_overhead_p50_ms": round(http1 - bare1, 3),
        "door_over_predict_p50_ms": round(door1 - predict1, 3),
        "http_over_predict_p50_ms": round(http1 - predict1, 3),
        "door_overhead_goal_ms": GOAL_DOOR_MS,
        "door_overhead_met": door1 - bare1 <= GOAL_DOOR_MS,
        f"p99_over_p50_at_{GOAL_CLIENTS}_clients": tail_ratio,
        "tail_goal": GOAL_TAIL,
        "tail_met": None if tail_ratio is None else tail_ratio <= GOAL_TAIL,
        "same_scores": results["same_scores"],
        "clients_share_the_machine": True,
        "clients_note": (f"the load generator's clients are threads of one process on the same {os.cpu_count()} "
                         "cores as the server: the CPU they use (client_cpu_cores) is taken from the server"),
        **load,
        "results": results,
    }


def table_lines(results: dict[str, Any]) -> list[str]:
    """The printed table: latencies in ms, then the load levels."""
    lines = [f"{'measure (one thread)':<40}{'rows':>6}{'p50 ms':>10}{'p99 ms':>10}{'n':>8}"]
    for key, label in (("bare_predict", "bare predict_proba (features ready)"),
                       ("bare_transform_predict", "bare transform + predict_proba"),
                       ("door", "door, in process (Door.score)"), ("http", "HTTP, one keep-alive client")):
        for size, f in results[key].items():
            lines.append(f"{label:<40}{size:>6}{f['p50_ms']:>10.3f}{f['p99_ms']:>10.3f}{f['n']:>8}")
    lines.append("")
    lines.append(f"{'HTTP load':<22}{'clients':>8}{'rows/req':>9}{'req/s':>9}{'rows/s':>10}{'p50 ms':>9}"
                 f"{'p99 ms':>9}{'errors':>7}{'server cpu':>11}{'client cpu':>11}")
    for r in results["load"].values():
        lines.append(f"{'':<22}{r['clients']:>8}{r['rows_per_request']:>9}{r['requests_per_s']:>9,.0f}"
                     f"{r['rows_per_s']:>10,.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['errors']:>7}"
                     f"{r['server_cpu_cores'] if r['server_cpu_cores'] is not None else float('nan'):>11.2f}"
                     f"{r['client_cpu_cores']:>11.2f}")
    lines.append("")
    for limit, r in results.get("threads", {}).items():
        label = f"predict_proba 1 row, {r['threads']} threads, pools {limit}"
        lines.append(f"{label:<56}p50 {r['p50_ms']:>8.2f}  p99 {r['p99_ms']:>8.2f} ms  ({r['predictions_per_s']:,.0f}/s)")
    for setting, key in (("SCORING_SERVE_THREADS", "server_threads"),
                         ("SCORING_SERVE_CONCURRENCY", "server_concurrency")):
        for value, r in results.get(key, {}).items():
            label = f"HTTP 1 row, {r['clients']} clients, {setting}={value}"
            lines.append(f"{label:<56}p50 {r['p50_ms']:>8.2f}  p99 {r['p99_ms']:>8.2f} ms  "
                         f"({r['requests_per_s']:,.0f}/s)")
    return lines


def verdict_lines(summary: dict[str, Any]) -> list[str]:
    """The goals, the scores' check and the machine's load."""
    tail_ratio = summary[f"p99_over_p50_at_{GOAL_CLIENTS}_clients"]
    at_goal = summary["results"]["load"].get(f"1x{GOAL_CLIENTS}", {})
    return [
        "",
        f"door overhead, 1 row: {summary['door_overhead_p50_ms']:.3f} ms at p50 (door {summary['door_p50_ms_1row']:.3f}"
        f" - the model's transform + predict_proba {summary['bare_p50_ms_1row']:.3f}; goal <= {GOAL_DOOR_MS:g} ms: "
        f"{'met' if summary['door_overhead_met'] else 'not met'}); over predict_proba alone on ready features "
        f"({summary['bare_predict_p50_ms_1row']:.3f}): {summary['door_over_predict_p50_ms']:.3f} ms",
        f"HTTP overhead, 1 row: {summary['http_overhead_p50_ms']:.3f} ms at p50 over transform + predict_proba, "
        f"{summary['http_over_predict_p50_ms']:.3f} ms over predict_proba alone (one keep-alive client)",
        f"p99 / p50 under {GOAL_CLIENTS} clients, 1 row: "
        + ("not measured" if tail_ratio is None else
           f"{tail_ratio:.2f} ({at_goal['p99_ms']:.2f} / {at_goal['p50_ms']:.2f} ms; goal <= {GOAL_TAIL:g}: "
           f"{'met' if summary['tail_met'] else 'not met'})"),
        f"door scores == bare scores, every row scored: {'yes' if summary['same_scores'] else 'NO'}",
        f"note: {summary['clients_note']}",
        f"machine: {'busy' if summary['machine_busy'] else 'not busy'}, {bench.load_text(summary)}",
    ]


def write(summary: dict[str, Any], out: Path) -> None:
    """benchmarks/online.json and its copy in benchmarks/history/online/ (one file a run)."""
    text = json.dumps(summary, indent=2) + "\n"
    out.write_text(text)
    history = out.parent / "history" / "online"
    history.mkdir(parents=True, exist_ok=True)
    copy = history / f"{summary['measured_at'].replace(':', '-')}.json"
    copy.write_text(text)
    print(f"\nwrote {out} and {copy}")


def parse_args() -> argparse.Namespace:
    """The online bench's options (``--child`` runs the load generator or the threads measurement)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", choices=("load", "threads"))
    parser.add_argument("--reps", type=int, default=1000, help="repetitions of a single-row latency (100 rows: a fifth)")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds of each load level and threads run")
    parser.add_argument("--clients", type=int, nargs="*", default=list(CLIENTS))
    parser.add_argument("--no-threads", action="store_true",
                        help="skip the comparisons of thread limits and concurrency (8 threads predicting; servers of their own)")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--url")
    parser.add_argument("--rows-file", type=Path)
    parser.add_argument("--size", type=int, default=1)
    parser.add_argument("--server-pid", type=int)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.child:
        if args.child == "load":
            result = generate_load(args.url, args.rows_file, args.size, args.clients[0], args.seconds,
                                   args.server_pid)
        else:
            result = predict_from_threads(args.rows_file, args.seconds)
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    before = bench.snapshot()
    commit, dirty = bench.git_commit()
    home = prepare()
    results = measure_all(args, home)
    summary = summarize(results, bench.machine_load(before, bench.snapshot()), commit, dirty, ROWS)
    print("\n".join(table_lines(results) + verdict_lines(summary)))
    write(summary, Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
