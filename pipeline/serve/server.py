"""``scoring serve JOB``: the job's door, its recorder, the alias reloader and uvicorn, started and stopped in order.

One uvicorn process, never several workers: the recorder's queue of answers waiting for the database lives in
this process (a second worker would hold a queue, a reloader and a model of its own, and its records would
be lost to the first one's stop). Requests run in the server's thread pool, each scoring thread limited to
one OpenMP/BLAS thread (``ThreadLimit``): a HistGradientBoosting ``predict_proba`` of one row took 1.5 s at
p99 under load with its default threads and 23 ms with one. LightGBM fitted without ``n_jobs`` follows the
same OpenMP limit; a model fitted with an explicit ``n_jobs`` keeps its own.

The score endpoint is an ``async def`` that reads the body (size-checked) on the event loop and hands parse,
score and record to the thread pool in one hop. Measured with the door's work taken out (a fixed answer), one
row, one client, loopback (15:13 UTC, load 6 on 2 cores, so only the order is telling): p50 0.80 ms for this
shape, 1.11 ms for a sync endpoint given the body by an async dependency, 0.74 ms with no thread pool at
all (the event loop blocked while a request scores: health checks and small requests would wait behind a
large one), 0.58 ms for ``GET /health/live``.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import socket
import threading
from pathlib import Path
from typing import Any

from pipeline import settings
from pipeline.config import JobConfig
from pipeline.errors import ConfigError
from pipeline.serve.app import make_app
from pipeline.serve.door import Door
from pipeline.serve.recorder import Recorder

log = logging.getLogger(__name__)
LOOPBACK_NAMES = ("localhost",)


class ThreadLimit:
    """OpenMP and BLAS limited to ``limit`` threads in each thread that scores (once per thread and model).

    OpenMP's thread count is a per-thread setting: a limit set in the main thread does not reach the worker
    threads that run requests, and a ``threadpool_limits`` per request costs milliseconds (it looks for the
    libraries again). One controller, built after the model is loaded, limits each worker thread once; a new
    model (which may have loaded another OpenMP, as LightGBM's beside scikit-learn's) renews it.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._local = threading.local()
        self.generation = 0
        self.renew()

    def renew(self) -> None:
        """Look for the loaded libraries again; every thread limits itself again before it next scores."""
        from threadpoolctl import ThreadpoolController

        self._controller = ThreadpoolController()
        self._controller.limit(limits=self.limit)  # the BLAS pools (process-wide) and this thread's OpenMP
        self.generation += 1

    def __call__(self) -> None:
        """Limit the calling thread, the first time it asks since the last renewal."""
        if getattr(self._local, "generation", 0) != self.generation:
            self._controller.limit(limits=self.limit)
            self._local.generation = self.generation


class Reloader:
    """A thread that asks the door to re-read the job's alias every ``seconds`` (``Door.refresh``)."""

    def __init__(self, door: Any, seconds: float, job_id: str, switched: Any = None) -> None:
        self.door, self.seconds, self.job_id = door, seconds, job_id
        self.switched = switched  # called after the door switched to another version
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"scoring-reload-{job_id}", daemon=True)

    def start(self) -> None:
        """Start re-reading."""
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                if self.door.refresh() and self.switched is not None:
                    self.switched()
            except Exception as exc:  # noqa: BLE001 - the door logs its refusals; anything else must not end the loop
                log.error("job %s: re-reading the model alias failed with %s; still serving the loaded version, "
                          "next try in %gs", self.job_id, type(exc).__name__, self.seconds)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop re-reading (a refresh under way finishes first)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)


def read_tokens(path: Path) -> list[str]:
    """The bearer tokens of a tokens file: one per line, blank lines and ``#`` comments skipped; none: refused."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"tokens file {path} cannot be read ({reason}): give --tokens-file (or "
                          f"{settings.SERVE_TOKENS_FILE}) a readable file with one token per line") from None
    tokens = []
    for number, line in enumerate(text.splitlines(), 1):
        token = line.strip()
        if not token or token.startswith("#"):
            continue
        if any(ch.isspace() for ch in token):
            raise ConfigError(f"tokens file {path}, line {number}: a token has no spaces in it (one token per "
                              "line, '#' starts a comment line)")
        tokens.append(token)
    if not tokens:
        raise ConfigError(f"tokens file {path} holds no token: the server refuses to start without one (one token "
                          "per line, '#' starts a comment line)")
    return tokens


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tokens_for(host: str, tokens_file: str | Path | None, no_auth: bool) -> list[str] | None:
    """The tokens to accept (None: no authentication), or the reason the server may not start that way."""
    if no_auth:
        if tokens_file:
            raise ConfigError("give either --tokens-file or --no-auth, not both")
        if not is_loopback(host):
            raise ConfigError(f"--no-auth is allowed on 127.0.0.1 (or localhost, ::1) only, not on {host}: give "
                              f"--tokens-file (or {settings.SERVE_TOKENS_FILE}) to serve other machines")
        return None
    path = tokens_file or settings.serve_tokens_file()
    if not path:
        raise ConfigError(f"scoring serve needs bearer tokens: give --tokens-file FILE (or "
                          f"{settings.SERVE_TOKENS_FILE}; one token per line), or --no-auth to serve 127.0.0.1 "
                          "without authentication")
    return read_tokens(Path(path))


def bind(host: str, port: int) -> socket.socket:
    """The listening socket (a port in use is a clear error, not uvicorn's exit)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}): is another server on that port? "
                          "Give another --port") from None
    sock.set_inheritable(True)
    return sock


class Service:
    """One job's online door: model loaded and verified, recorder started, reloader running, uvicorn serving."""

    def __init__(self, job: JobConfig, *, host: str = "127.0.0.1", port: int = 8080,
                 tokens: list[str] | None = None, door: Any = None, recorder: Any = None) -> None:
        if not job.output.table:
            raise ConfigError(f"job {job.job_id} has no output.table: scoring serve records every answer in "
                              "<output.table>_online; give the job an output.table")
        self.job, self.host, self.port, self.tokens = job, host, port, tokens
        self.door = door if door is not None else Door(job)
        self.recorder = recorder if recorder is not None else Recorder(job, queue_records=job.online.queue_records)
        self.reloader = Reloader(self.door, job.online.reload_seconds, job.job_id)
        self.server: Any = None
        self.limit: ThreadLimit | None = None
        self._socket: socket.socket | None = None

    def open(self) -> None:
        """Bind the port, load and verify the model (its errors as the batch gives them), start the recorder and
        the reloader."""
        self._socket = bind(self.host, self.port)  # a port in use fails before the model's load
        self.port = self._socket.getsockname()[1]
        try:
            served = self.door.load()
        except BaseException:
            self._socket.close()
            raise
        self.limit = limit = ThreadLimit(settings.serve_threads())
        self.reloader.switched = limit.renew
        self.recorder.start()
        self.reloader.start()
        self.server = _uvicorn(make_app(self.door, self.recorder, self.job, self.tokens, limit_threads=limit,
                                        scoring=settings.serve_concurrency()))
        log.info("job %s: serving %s v%s%s on http://%s:%d (%s; %d thread(s) per request, alias re-read every %gs)",
                 self.job.job_id, served.name, served.version, _split_text(served), self.host, self.port,
                 f"{len(self.tokens)} bearer token(s)" if self.tokens is not None else "NO authentication",
                 limit.limit, self.job.online.reload_seconds)

    def run(self) -> None:
        """Serve until stopped (SIGINT, SIGTERM, or ``stop()``); requests in flight finish."""
        self.server.run(sockets=[self._socket])

    @property
    def started(self) -> bool:
        """The server accepts connections."""
        return bool(self.server is not None and self.server.started)

    def stop(self) -> None:
        """Ask the server to finish its requests and stop (from another thread)."""
        if self.server is not None:
            self.server.should_exit = True

    def close(self, timeout: float = 10.0) -> int:
        """Stop the reloader, flush the recorder (up to ``timeout``); the records left unwritten."""
        self.reloader.stop()
        left = self.recorder.stop(timeout)
        if self._socket is not None:
            self._socket.close()
        if left:
            log.error("job %s: stopped with %d answered row(s) not written to %s_online (the recorder's "
                      "dead-letter file has them)", self.job.job_id, left, self.job.output.table)
        else:
            log.info("job %s: stopped; every answered row is written to %s_online", self.job.job_id,
                     self.job.output.table)
        return left


def _split_text(served: Any) -> str:
    """model.split's arms in words (`` split: challenger v2 10%, ...``), or nothing without a split."""
    arms = getattr(served, "arms", None) or {}
    if not arms:
        return ""
    return " split: " + ", ".join(
        f"{arm} " + (f"v{a['version']}" if a.get("version") else "not resolved") + f" {a['basis_points'] / 100:g}%"
        + (" (fallback: the champion scores its rows)" if a.get("fallback") else "") for arm, a in arms.items())


def _uvicorn(app: Any) -> Any:
    """A uvicorn server of the app: one process, the process's own logging (the access log shows no query)."""
    import uvicorn

    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, PathOnly) for f in access.filters):
        access.addFilter(PathOnly())
    config = uvicorn.Config(app, log_config=None, access_log=True, lifespan="off", server_header=False,
                            timeout_graceful_shutdown=settings.serve_shutdown_seconds(), workers=1)
    return uvicorn.Server(config)


class PathOnly(logging.Filter):
    """uvicorn's access lines with the path only: a query string is dropped (it could hold a secret)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Strip the query of the path argument (client, method, path, http version, status)."""
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


def serve(job: JobConfig, host: str = "127.0.0.1", port: int = 8080, tokens_file: str | Path | None = None,
          no_auth: bool = False) -> int:
    """Serve ``job`` until SIGINT or SIGTERM; the records left unwritten at the end."""
    tokens = tokens_for(host, tokens_file, no_auth)
    settings.default_thread_pools(settings.serve_threads())  # libraries loaded from here on: in every thread
    logging.getLogger("great_expectations").setLevel(logging.WARNING)  # its INFO lines come once per request
    service = Service(job, host=host, port=port, tokens=tokens)
    service.open()
    quiet = {sig: signal.signal(sig, _stopping) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        service.run()
    finally:
        for sig, handler in quiet.items():
            signal.signal(sig, handler)
        left = service.close(settings.serve_shutdown_seconds())
    return left


def _stopping(signum: int, _: Any) -> None:
    """What a stop signal does outside uvicorn's own handling (uvicorn sends it again once its requests are
    done): nothing but a line, so that the recorder writes what waits before the process ends."""
    log.info("%s: requests finished, writing the records that wait", signal.Signals(signum).name)
