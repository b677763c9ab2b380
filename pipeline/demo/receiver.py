"""A small webhook receiver: the stand-in promotions engine of the push demo and the tests.

It accepts the push sink's POSTs (JSON lines or a JSON array), checks a bearer token if one
is set, deduplicates by ``Idempotency-Key`` and can misbehave on purpose: answer 500, answer
429 with Retry-After, or drop the connection (before or after taking the batch). It listens
on 127.0.0.1 by default. ``GET /stats`` reports what it holds.

    scoring-demo receiver --port 8099 --token demo-token --out received.jsonl
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pipeline.redact import redact

log = logging.getLogger("pipeline.receiver")

#: Scripted behaviour, one entry per request in arrival order: "ok", "500", "503",
#: "429:<seconds>" (with Retry-After), "400", "drop" (connection closed, batch not taken) and
#: "accept-drop" (batch taken, then the connection is closed before the answer, so the
#: sender retries a batch the receiver already holds).
FAULTS = ("ok", "500", "503", "429", "400", "drop", "accept-drop")


@dataclass
class Received:
    """One POST the receiver took."""

    key: str
    headers: dict[str, str]
    rows: list[dict[str, Any]]


@dataclass
class Store:
    """What the receiver holds: every accepted POST, and the rows deduplicated by key."""

    posts: list[Received] = field(default_factory=list)
    requests: int = 0
    log: list[tuple[float, str, str]] = field(default_factory=list)  # (monotonic time, behaviour, key)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def by_key(self) -> dict[str, list[dict[str, Any]]]:
        with self.lock:
            return {p.key: p.rows for p in self.posts}

    def unique_rows(self) -> list[dict[str, Any]]:
        return [row for rows in self.by_key().values() for row in rows]

    def stats(self) -> dict[str, Any]:
        with self.lock:
            keys = {p.key for p in self.posts}
            return {"requests": self.requests, "posts_accepted": len(self.posts), "unique_keys": len(keys),
                    "duplicates": len(self.posts) - len(keys),
                    "rows_unique": sum(len(r) for r in {p.key: p.rows for p in self.posts}.values())}


class Handler(BaseHTTPRequestHandler):
    """One request: GET /stats or /rows, POST a batch (with the receiver's scripted faults)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("receiver: %s", redact(fmt % args))  # the request line may carry ?token=...

    def _answer(self, code: int, doc: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/stats":
            self._answer(200, self.receiver.store.stats())
        elif self.path == "/rows":
            self._answer(200, {"rows": self.receiver.store.unique_rows()})
        else:
            self._answer(404, {"error": "GET /stats or /rows"})

    @property
    def receiver(self) -> Receiver:
        return self.server.receiver  # type: ignore[attr-defined]

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        with self.receiver.store.lock:
            self.receiver.store.requests += 1
            fault = self.receiver.faults.popleft() if self.receiver.faults else self.receiver.status_when_empty
            self.receiver.store.log.append((time.monotonic(), fault or "ok",
                                            self.headers.get("Idempotency-Key", "")))
        if self._injected(fault):
            return
        self._accept(body, fault)

    def _injected(self, fault: str | None) -> bool:
        """Answer with the scripted fault, if it is one that refuses the batch; True when answered."""
        if fault == "drop":
            self.close_connection = True
        elif fault and fault.startswith("429"):
            wait = fault.split(":", 1)[1] if ":" in fault else "1"
            self._answer(429, {"error": "slow down"}, {"Retry-After": wait})
        elif fault in ("500", "503"):
            self._answer(int(fault), {"error": "receiver failure (injected)"})
        elif fault == "400":
            self._answer(400, {"error": "rejected: field 'score' is not accepted (injected)"})
        else:
            return False
        return True

    def _accept(self, body: bytes, fault: str | None) -> None:
        """Check the token, key and body; hold the batch (a duplicate key is held and reported)."""
        if self.receiver.token and self.headers.get("Authorization") != f"Bearer {self.receiver.token}":
            self._answer(401, {"error": "missing or wrong bearer token"})
            return
        key = self.headers.get("Idempotency-Key")
        if not key:
            self._answer(400, {"error": "Idempotency-Key header is required"})
            return
        try:
            rows = self.receiver.parse(body, self.headers.get("Content-Type", ""))
        except ValueError as exc:
            self._answer(400, {"error": f"body is not JSON lines or a JSON array: {exc}"})
            return
        if len(rows) != int(self.headers.get("X-Scoring-Rows", len(rows))):
            self._answer(400, {"error": "X-Scoring-Rows does not match the body"})
            return
        duplicate = self.receiver.take(key, dict(self.headers), rows)
        if fault == "accept-drop":
            self.close_connection = True
            return
        self._answer(200, {"accepted": len(rows), "duplicate": duplicate})


class Receiver:
    """A threaded HTTP server on ``host:port`` (port 0 = any free port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, token: str | None = None,
                 faults: Iterable[str] = (), out: Path | None = None) -> None:
        self.store = Store()
        self.faults: deque[str] = deque(faults)
        self.token = token
        self.out = out
        self.status_when_empty: str | None = None  # e.g. "500": fail every request after the script
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.receiver = self  # type: ignore[attr-defined]
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @staticmethod
    def parse(body: bytes, content_type: str) -> list[dict[str, Any]]:
        text = body.decode()
        if "ndjson" in content_type or not text.lstrip().startswith("["):
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        return list(json.loads(text))

    def take(self, key: str, headers: dict[str, str], rows: list[dict[str, Any]]) -> bool:
        """Hold a batch; return True if its key was seen before (a duplicate delivery)."""
        with self.store.lock:
            duplicate = any(p.key == key for p in self.store.posts)
            self.store.posts.append(Received(key, headers, rows))
            if self.out is not None and not duplicate:
                with self.out.open("a") as fh:
                    for row in rows:
                        fh.write(json.dumps({"idempotency_key": key, **row}) + "\n")
        return duplicate

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        self._thread = threading.Thread(target=self.server.serve_forever, name="receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def serve(host: str, port: int, token: str | None, out: Path | None, faults: list[str]) -> None:
    """Run a receiver in the foreground until interrupted."""
    receiver = Receiver(host, port, token=token, out=out, faults=faults)
    print(f"receiver listening on http://{host}:{receiver.port} (token {'set' if token else 'not required'}); "
          f"GET /stats for counts", flush=True)
    try:
        receiver.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        receiver.server.server_close()
