"""A running door follows its alias without a restart (issue 27, point 3): a promotion is served within a few
reload intervals while a client keeps asking (no answer fails, every answer names v1 or v2, none names v1 once
v2 answered), and a tampered version promoted after it is refused as the batch refuses it: v2 keeps serving,
the refusal is counted in /metrics and the server stays ready."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from pipeline.model import ARTIFACT, CARD, GOLDEN
from pipeline.registry import Registry
from pipeline.serve.server import Service
from tests.conftest import with_challenger
from tests.integration.test_serve_app import SCORE_PATH, client, rows, running, serve_job

RELOAD_SECONDS = 0.2
REGISTRY_FIELDS = ("name", "version", "sha256", "registered_at")


class Asking(threading.Thread):
    """A client asking the door to score the same rows again and again, keeping every answer."""

    def __init__(self, service: Service) -> None:
        super().__init__(daemon=True)
        self.service, self.records = service, rows(3)
        self.answers: list[tuple[int, set[int]]] = []  # (status, the versions its rows name)
        self.failures: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        with client(self.service) as http:
            while not self.done.is_set():
                try:
                    answer = http.post(SCORE_PATH, json=self.records)
                except httpx.HTTPError as exc:
                    self.failures.append(type(exc).__name__)
                    continue
                body = answer.json()
                self.answers.append((answer.status_code, {r["model"]["version"] for r in body.get("results", [])}))

    def stop(self) -> None:
        self.done.set()
        self.join(30)


def until(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    """Poll ``condition`` until it holds (many reload intervals at most)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds:g} s: {what}"
        time.sleep(0.05)


def register_tampered_copy(home: Path, of: int) -> int:
    """A new version registered (and anchored) from version ``of``'s files, its artifact's bytes then changed."""
    folder = home / "models" / "churn" / f"v{of}"
    card = {k: v for k, v in json.loads((folder / CARD).read_text()).items() if k not in REGISTRY_FIELDS}
    registry = Registry()
    mv = registry.register("churn", folder / ARTIFACT, card, golden=folder / GOLDEN)
    artifact = mv.path / ARTIFACT
    artifact.write_bytes(artifact.read_bytes() + b"tampered")
    return mv.version


def metric(service: Service, name: str) -> float:
    """One series of the job's /metrics (0 when absent)."""
    with client(service, token=None) as http:
        for line in http.get("/metrics").text.splitlines():
            if line.startswith(f'{name}{{job="churn_test"}} '):
                return float(line.split()[-1])
    return 0.0


def test_a_promotion_is_served_without_a_restart_and_a_tampered_version_is_refused(
        home: Path, challenger_models: Path) -> None:
    v2 = with_challenger(home, challenger_models)
    registry = Registry()
    assert registry.aliases("churn")["champion"] == 1
    with running(serve_job(home, reload_seconds=RELOAD_SECONDS)) as service:
        asking = Asking(service)
        asking.start()
        try:
            until(lambda: len(asking.answers) >= 5, "five answers from v1")
            registry.promote("churn", v2)
            promoted_at = len(asking.answers)
            until(lambda: any(versions == {v2} for _, versions in asking.answers[promoted_at:]), "an answer from v2")
            switched_at = next(i for i, (_, versions) in enumerate(asking.answers) if versions == {v2})
            until(lambda: len(asking.answers) >= switched_at + 5, "five more answers")

            v3 = register_tampered_copy(home, v2)
            registry.promote("churn", v3)
            until(lambda: metric(service, "scoring_online_reload_failures_total") >= 1, "the tampered v3 refused")
            refused_at = len(asking.answers)
            until(lambda: len(asking.answers) >= refused_at + 5, "five answers after the refusal")
            with client(service, token=None) as http:
                ready = http.get("/health/ready")
        finally:
            asking.stop()
    assert asking.failures == []
    assert all(status == 200 for status, _ in asking.answers), {status for status, _ in asking.answers}
    assert all(versions in ({1}, {v2}) for _, versions in asking.answers)
    assert all(versions == {1} for _, versions in asking.answers[:switched_at])
    assert all(versions == {v2} for _, versions in asking.answers[switched_at:])  # v2 from its first answer on
    assert ready.status_code == 200 and ready.json()["models"] == [{"name": "churn", "version": v2}]
    assert service.door.served.version == v2 and service.door.reload_failures >= 1
    assert service.limit is not None and service.limit.generation == 2  # the switch renewed the thread limits
    assert "sha256" in service.door.last_reload_error

