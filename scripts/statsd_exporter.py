"""A StatsD receiver that Prometheus scrapes: the native stand-in for ``prom/statsd-exporter``.

``docker-compose.yml`` runs Prometheus's own ``statsd_exporter`` image, which takes Airflow's
StatsD metrics and the pipeline's (``pipeline/metrics.py``). That Go binary is in no package
registry this machine reaches (PyPI, Debian, npm), so the native stack and the tests run this
instead, with the same mapping file (``monitoring/statsd_mapping.yml``, the default here; the
compose stack passes it with ``--statsd.mapping-config``) so both give the same names and labels.

The subset of ``statsd_exporter`` implemented:

- the mapping file's ``glob`` rules: ``match`` (dot-separated parts, ``*`` a whole part), ``name``,
  ``labels`` with ``$1``..``$n`` (or ``${1}``) for the parts ``*`` matched, ``action: drop``, and
  ``match_metric_type`` (counter, gauge, observer); the first rule that matches wins, as with
  ``statsd_exporter``'s default ordering. Any other key is refused at start, not ignored.
- without a rule: dots and other characters outside ``[a-zA-Z0-9_]`` become ``_`` (a leading digit
  gets a ``_`` before it).
- DogStatsD tags ``|#k:v`` become labels; a rule's labels win over tags of the same name.
- gauges ``g`` (``+``/``-`` values change them), counters ``c`` (added up), timers ``ms`` (summaries
  in seconds; ``h``/``d`` as they come). A counter's name is exposed as it is: with a rule naming it
  ``..._total`` it is a counter ``..._total``; without, ``airflow_ti_failures`` stays that name
  (untyped here, a counter there: the same series to a query).
- a metric keeps the type and label names it first came with: a later line of the same name with
  another type or other label names is dropped and counted in ``statsd_exporter_events_conflict_total``.
  (``statsd_exporter`` refuses another type the same way; other label names it registers, and the
  scrape of that name then fails its consistency check: senders must keep one set, as ours do.)

Served with ``prometheus_client`` at ``/metrics``:

    python scripts/statsd_exporter.py --statsd-port 9125 --web-port 9102 [--mapping-config FILE]
"""

from __future__ import annotations

import argparse
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    SummaryMetricFamily,
    UnknownMetricFamily,
)

DEFAULT_MAPPING = Path(__file__).resolve().parents[1] / "monitoring" / "statsd_mapping.yml"
RULE_KEYS = {"match", "name", "labels", "action", "match_metric_type", "match_type", "help"}
TYPES = {"c": "counter", "g": "gauge", "ms": "observer", "h": "observer", "d": "observer"}
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]+$")
MATCH = re.compile(r"^(\*|[a-zA-Z_][a-zA-Z0-9_\-]*)(\.\*|\.[a-zA-Z0-9_][a-zA-Z0-9_\-]*)*$")
CAPTURE = re.compile(r"\$\{?([a-zA-Z0-9_$]+)\}?")


def escape(text: str) -> str:
    """A StatsD name as a Prometheus name, as ``statsd_exporter`` escapes one no rule maps."""
    text = re.sub(r"[^a-zA-Z0-9_]", "_", text)
    return f"_{text}" if text[:1].isdigit() else text


class Rule:
    """One glob rule of a ``statsd_exporter`` mapping file."""

    def __init__(self, spec: dict[str, Any], where: str) -> None:
        unknown = set(spec) - RULE_KEYS
        if unknown:
            raise ValueError(f"{where}: keys {sorted(unknown)} are not implemented by this stand-in "
                             f"(it knows {sorted(RULE_KEYS)})")
        if spec.get("match_type", "glob") != "glob":
            raise ValueError(f"{where}: match_type {spec['match_type']!r}: only glob rules are implemented here")
        self.match, self.name = str(spec.get("match", "")), str(spec.get("name", ""))
        if not MATCH.match(self.match):
            raise ValueError(f"{where}: invalid match {self.match!r}")
        if not self.name:
            raise ValueError(f"{where}: the rule sets no name")
        self.labels = {str(k): str(v) for k, v in (spec.get("labels") or {}).items()}
        bad = [k for k in self.labels if not LABEL_NAME.match(k)]
        if bad:
            raise ValueError(f"{where}: invalid label names {bad}")
        self.drop = spec.get("action", "map") == "drop"
        self.type = spec.get("match_metric_type")
        self.parts = self.match.split(".")

    def apply(self, name: str, kind: str) -> tuple[str, dict[str, str]] | None:
        """(name, labels) when the StatsD name matches, else None."""
        parts = name.split(".")
        if len(parts) != len(self.parts) or (self.type and TYPES.get(kind) != self.type):
            return None
        captures = []
        for want, got in zip(self.parts, parts, strict=True):
            if want == "*":
                captures.append(got)
            elif want != got:
                return None

        def fill(template: str) -> str:
            def one(m: re.Match) -> str:
                index = int(m.group(1)) if m.group(1).isdigit() else 0
                return captures[index - 1] if 1 <= index <= len(captures) else ""
            return CAPTURE.sub(one, template)

        return fill(self.name), {k: fill(v) for k, v in self.labels.items()}


def load_rules(path: Path | None) -> list[Rule]:
    """The glob rules of a mapping file (none without one)."""
    if path is None:
        return []
    doc = yaml.safe_load(path.read_text()) or {}
    extra = set(doc) - {"mappings", "defaults"}
    if extra or (doc.get("defaults") or {}).keys() - {"match_type"}:
        raise ValueError(f"{path}: only 'mappings' (and defaults.match_type) are implemented by this stand-in")
    return [Rule(spec, f"{path} mapping {i + 1}") for i, spec in enumerate(doc.get("mappings") or [])]


class Store:
    """The values received, by (name, type, labels), exposed as metric families."""

    def __init__(self, rules: list[Rule] | None = None) -> None:
        self.rules = rules or []
        self.lock = threading.Lock()
        self.values: dict[tuple[str, str, tuple[tuple[str, str], ...]], Any] = {}
        self.label_names: dict[str, tuple[str, ...]] = {}  # name -> (type, label names)
        self.conflicts = 0.0

    def map(self, name: str, kind: str) -> tuple[str, dict[str, str]] | None:
        """The Prometheus name and the rule's labels of a StatsD name; None: a rule drops it."""
        for rule in self.rules:
            found = rule.apply(name, kind)
            if found is not None:
                return None if rule.drop else found
        return escape(name), {}

    def add(self, line: str) -> None:
        """One StatsD line: ``name:value|type[|@rate][|#tag:value,...]``; a malformed line is dropped."""
        try:
            head, *fields = line.strip().split("|")
            name, value = head.rsplit(":", 1)
            kind = fields[0]
            tags = next((f[1:] for f in fields[1:] if f.startswith("#")), "")
            tagged = {escape(k): v for k, _, v in (t.partition(":") for t in tags.split(",") if t) if v}
            number = float(value)
        except (ValueError, IndexError):
            return
        if kind not in TYPES:
            return
        mapped = self.map(name, kind)
        if mapped is None:
            return
        metric, labels = mapped[0], tuple(sorted({**tagged, **mapped[1]}.items()))
        key = (metric, kind, labels)
        with self.lock:
            shape = (TYPES[kind], *(k for k, _ in labels))
            if self.label_names.setdefault(metric, shape) != shape:
                self.conflicts += 1
                return
            if kind == "g":
                relative = value[:1] in "+-"
                self.values[key] = self.values.get(key, 0.0) + number if relative else number
            elif kind == "c":
                self.values[key] = self.values.get(key, 0.0) + number
            else:
                count, total = self.values.get(key, (0, 0.0))
                self.values[key] = (count + 1, total + number / (1000 if kind == "ms" else 1))

    def collect(self) -> Iterator[Any]:
        with self.lock:
            items, conflicts = list(self.values.items()), self.conflicts
        families: dict[str, Any] = {}
        for (name, kind, labels), value in items:
            family = families.get(name)
            if family is None:
                names = [k for k, _ in labels]
                if kind == "g":
                    family = GaugeMetricFamily(name, f"StatsD gauge {name}", labels=names)
                elif kind == "c" and name.endswith("_total"):
                    family = CounterMetricFamily(name, f"StatsD counter {name}", labels=names)
                elif kind == "c":
                    family = UnknownMetricFamily(name, f"StatsD counter {name}", labels=names)
                else:
                    family = SummaryMetricFamily(name, f"StatsD timer {name}", labels=names)
                families[name] = family
            if kind in ("g", "c"):
                family.add_metric([v for _, v in labels], value)
            else:
                family.add_metric([v for _, v in labels], count_value=value[0], sum_value=value[1])
        yield from families.values()
        conflict = CounterMetricFamily("statsd_exporter_events_conflict", "lines dropped: their label names differ "
                                       "from the metric's first", labels=[])
        conflict.add_metric([], conflicts)
        yield conflict


def serve(statsd_port: int, web_port: int, host: str = "127.0.0.1", mapping: Path | None = DEFAULT_MAPPING) -> None:
    store = Store(load_rules(mapping))
    registry = CollectorRegistry()
    registry.register(store)
    start_http_server(web_port, addr=host, registry=registry)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, statsd_port))
        print(f"statsd on udp {host}:{statsd_port}, metrics at http://{host}:{web_port}/metrics, "
              f"{len(store.rules)} mapping rule(s) from {mapping or 'no file'}", flush=True)
        while True:
            data, _ = sock.recvfrom(65535)
            for line in data.decode(errors="replace").splitlines():
                store.add(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--statsd-port", type=int, default=9125)
    parser.add_argument("--web-port", type=int, default=9102)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--mapping-config", default=str(DEFAULT_MAPPING),
                        help="statsd_exporter mapping file (glob rules); '' for none")
    args = parser.parse_args()
    serve(args.statsd_port, args.web_port, args.host, Path(args.mapping_config) if args.mapping_config else None)


if __name__ == "__main__":
    main()
