"""The online door's Prometheus metrics, in a registry of the app's own (``GET /metrics``).

Counted by the app as requests are answered: ``scoring_online_requests_total{job,code}``,
``scoring_online_request_seconds{job}`` (histogram), ``scoring_online_rows_total{job,outcome}``,
``scoring_online_errors_total{job,kind}``. Read from the recorder and the door at each scrape:
``scoring_online_queue_records``, ``scoring_online_records_written_total``,
``scoring_online_record_failures_total``, ``scoring_online_model_version{job,model}``,
``scoring_online_reload_failures_total`` and ``scoring_online_ready``. With ``model.split`` (A/B by rule):
``scoring_online_arm_version{job,arm}`` (the version each arm serves; 0 while it does not resolve),
``scoring_online_arm_fallback{job,arm}`` (1 while the champion scores the arm's rows because its version does
not resolve, load or verify; alert on it) and ``scoring_online_arm_fallbacks_total{job,arm}`` (rows of the arm
the champion scored instead, since the server started).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
ERROR_KINDS = ("auth", "too_large", "invalid", "queue_full", "internal")
OUTCOMES = ("scored", "quarantined")


class _Live:
    """A collector reading the recorder and the door when Prometheus scrapes (nothing is copied in between)."""

    def __init__(self, job: str, door: Any, recorder: Any) -> None:
        self.job, self.door, self.recorder = job, door, recorder

    def describe(self) -> list[Any]:
        """Nothing described ahead: the registry calls ``collect`` at registration only if this is empty."""
        return []

    def collect(self) -> Iterator[Any]:
        """The gauges and counters of this moment."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        job = [self.job]
        queue = GaugeMetricFamily("scoring_online_queue_records", "Answered rows waiting to be written to "
                                  "<output.table>_online", labels=["job"])
        queue.add_metric(job, float(self.recorder.depth))
        written = CounterMetricFamily("scoring_online_records_written", "Answered rows written to "
                                      "<output.table>_online", labels=["job"])
        written.add_metric(job, float(self.recorder.written))
        failures = CounterMetricFamily("scoring_online_record_failures", "Failed attempts to write answered rows "
                                       "(retried while the queue holds them)", labels=["job"])
        failures.add_metric(job, float(self.recorder.failures))
        reloads = CounterMetricFamily("scoring_online_reload_failures", "New versions of the served alias refused "
                                      "(integrity, golden rows, load); the last good version keeps serving",
                                      labels=["job"])
        reloads.add_metric(job, float(self.door.reload_failures))
        ready = GaugeMetricFamily("scoring_online_ready", "1 when a verified model is loaded", labels=["job"])
        ready.add_metric(job, 1.0 if self.door.ready else 0.0)
        yield from (queue, written, failures, reloads, ready, self._versions(), *self._arms())

    def _versions(self) -> Any:
        """The served version of each model (a cascade's route models too)."""
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily("scoring_online_model_version", "Version of each model served",
                                   labels=["job", "model"])
        for name, version in served_models(self.door):
            family.add_metric([self.job, name], float(version))
        return family

    def _arms(self) -> list[Any]:
        """The split's arms: their versions, which are in fallback, and the rows scored by the champion instead."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        arms = served_arms(self.door)
        counted = dict(getattr(self.door, "arm_fallback_rows", None) or {})
        if not arms and not counted:
            return []
        version = GaugeMetricFamily("scoring_online_arm_version", "Version each model.split arm serves (0: it does "
                                    "not resolve)", labels=["job", "arm"])
        fallback = GaugeMetricFamily("scoring_online_arm_fallback", "1 while a model.split arm's version does not "
                                     "resolve, load or verify and the champion scores its rows", labels=["job", "arm"])
        rows = CounterMetricFamily("scoring_online_arm_fallbacks", "Rows of a model.split arm scored by the "
                                   "champion because the arm's version could not serve", labels=["job", "arm"])
        for arm, about in arms.items():
            version.add_metric([self.job, arm], float(about.get("version") or 0))
            fallback.add_metric([self.job, arm], 1.0 if about.get("fallback") else 0.0)
        for arm in sorted(set(arms) | set(counted)):
            rows.add_metric([self.job, arm], float(counted.get(arm, 0)))
        return [version, fallback, rows]


def served_arms(door: Any) -> dict[str, dict[str, Any]]:
    """model.split's arms of the served generation: arm -> {"version", "basis_points", "fallback"}; {} without."""
    served = door.served if door.ready else None
    return dict(getattr(served, "arms", None) or {})


def served_models(door: Any) -> list[tuple[str, int]]:
    """(name, version) of every model the door serves: the job's model (a cascade's router), then a cascade's
    route models; none before it has loaded one."""
    served = door.served if door.ready else None
    if served is None:
        return []
    found = {str(served.name): int(served.version)}
    for model in (getattr(served, "routes", None) or {}).values():  # one series per model name
        found.setdefault(str(model["name"]), int(model["version"]))
    return list(found.items())


class Metrics:
    """The app's metrics: counted per request, plus the recorder's and the door's state read at scrape time."""

    def __init__(self, job: str, door: Any, recorder: Any) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.job = job
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter("scoring_online_requests", "Score requests answered, by HTTP status",
                                 ["job", "code"], registry=self.registry)
        self._seconds = Histogram("scoring_online_request_seconds", "Time to answer a score request (read, "
                                  "score, record)", ["job"], buckets=BUCKETS, registry=self.registry)
        self._rows = Counter("scoring_online_rows", "Rows answered, scored or quarantined", ["job", "outcome"],
                             registry=self.registry)
        self._errors = Counter("scoring_online_errors", "Score requests refused or failed, by kind "
                               f"({', '.join(ERROR_KINDS)})", ["job", "kind"], registry=self.registry)
        for kind in ERROR_KINDS:  # every series exists from the start (rate() of a new series misses its first)
            self._errors.labels(job, kind)
        for outcome in OUTCOMES:
            self._rows.labels(job, outcome)
        self._seconds_child = self._seconds.labels(job)
        self.registry.register(_Live(job, door, recorder))

    def answered(self, code: int, seconds: float, scored: int = 0, quarantined: int = 0) -> None:
        """One request answered with ``code`` after ``seconds``, with its rows' outcomes."""
        self._requests.labels(self.job, str(code)).inc()
        self._seconds_child.observe(seconds)
        if scored:
            self._rows.labels(self.job, "scored").inc(scored)
        if quarantined:
            self._rows.labels(self.job, "quarantined").inc(quarantined)

    def error(self, kind: str) -> None:
        """One request refused or failed (``ERROR_KINDS``)."""
        self._errors.labels(self.job, kind).inc()

    def render(self) -> tuple[bytes, str]:
        """The text exposition of every metric, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
