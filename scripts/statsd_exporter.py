"""A StatsD receiver that Prometheus scrapes: the native stand-in for ``prom/statsd-exporter``.

``docker-compose.yml`` runs Prometheus's own ``statsd_exporter`` image, which takes Airflow's
StatsD metrics and the pipeline's (``pipeline/metrics.py``). That Go binary is in no package
registry this machine reaches (PyPI, Debian, npm), so the native stack and the tests run this
instead: the same conversion as ``statsd_exporter``'s default, without a mapping file
(dots and dashes become ``_``; DogStatsD tags ``|#k:v`` become labels; gauges ``g`` stay gauges
and ``+``/``-`` values change them; counters ``c`` add up as ``<name>_total``; timers ``ms`` are
summaries in seconds), served with ``prometheus_client`` at ``/metrics``.

    python scripts/statsd_exporter.py --statsd-port 9125 --web-port 9102
"""

from __future__ import annotations

import argparse
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily


def _name(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_:]", "_", text)


class Store:
    """The values received, by (name, type, labels), exposed as metric families."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: dict[tuple[str, str, tuple[tuple[str, str], ...]], Any] = {}

    def add(self, line: str) -> None:
        """One StatsD line: ``name:value|type[|@rate][|#tag:value,...]``; a malformed line is dropped."""
        try:
            head, *fields = line.strip().split("|")
            name, value = head.rsplit(":", 1)
            kind = fields[0]
            tags = next((f[1:] for f in fields[1:] if f.startswith("#")), "")
            labels = tuple(sorted((_name(k), v) for k, _, v in (t.partition(":") for t in tags.split(",") if t)))
            number = float(value)
        except (ValueError, IndexError):
            return
        key = (_name(name), kind, labels)
        with self.lock:
            if kind == "g":
                relative = value[:1] in "+-"
                self.values[key] = self.values.get(key, 0.0) + number if relative else number
            elif kind == "c":
                self.values[key] = self.values.get(key, 0.0) + number
            elif kind in ("ms", "h", "d"):
                count, total = self.values.get(key, (0, 0.0))
                self.values[key] = (count + 1, total + number / (1000 if kind == "ms" else 1))

    def collect(self) -> Iterator[Any]:
        with self.lock:
            items = list(self.values.items())
        families: dict[tuple[str, str, tuple[str, ...]], Any] = {}
        for (name, kind, labels), value in items:
            names = tuple(k for k, _ in labels)
            family = families.get((name, kind, names))
            if family is None:
                make = {"g": GaugeMetricFamily, "c": CounterMetricFamily}.get(kind, SummaryMetricFamily)
                family = families[(name, kind, names)] = make(name, f"StatsD {kind} {name}", labels=list(names))
            if kind in ("g", "c"):
                family.add_metric([v for _, v in labels], value)
            else:
                family.add_metric([v for _, v in labels], count_value=value[0], sum_value=value[1])
        yield from families.values()


def serve(statsd_port: int, web_port: int, host: str = "127.0.0.1") -> None:
    store = Store()
    registry = CollectorRegistry()
    registry.register(store)
    start_http_server(web_port, addr=host, registry=registry)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, statsd_port))
        print(f"statsd on udp {host}:{statsd_port}, metrics at http://{host}:{web_port}/metrics", flush=True)
        while True:
            data, _ = sock.recvfrom(65535)
            for line in data.decode(errors="replace").splitlines():
                store.add(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--statsd-port", type=int, default=9125)
    parser.add_argument("--web-port", type=int, default=9102)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    serve(args.statsd_port, args.web_port, args.host)


if __name__ == "__main__":
    main()
