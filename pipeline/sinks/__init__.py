"""Push sinks: where predictions go in push mode (HTTP webhook, files, RabbitMQ, Redis Streams).

A sink sends one batch per call and raises :class:`DeliveryFailed` when an attempt fails,
saying whether another attempt may succeed. Retries, delivery state, resume and the
dead-letter live in :mod:`pipeline.push`, the same for every sink.
"""

from __future__ import annotations

from typing import Any

from pipeline.connections import Resolver, get
from pipeline.sinks.base import Batch, DeliveryFailed, Sink
from pipeline.sinks.broker import RabbitMQSink, RedisStreamSink
from pipeline.sinks.files import FilesSink
from pipeline.sinks.webhook import WebhookSink

__all__ = ["Batch", "DeliveryFailed", "Sink", "open_sink"]


def open_sink(cfg: Any, job_id: str, resolver: Resolver | None = None) -> Sink:
    """The sink a job's ``output.push.sink`` describes, with credentials from its connection."""
    conn = get(cfg.connection, resolver) if getattr(cfg, "connection", None) else None
    if cfg.kind == "webhook":
        return WebhookSink(cfg, conn)
    if cfg.kind == "files":
        return FilesSink(cfg, conn, job_id)
    if cfg.kind == "rabbitmq":
        return RabbitMQSink(cfg, conn)
    if cfg.kind == "redis":
        return RedisStreamSink(cfg, conn)
    raise ValueError(f"unknown sink kind {cfg.kind!r}")
