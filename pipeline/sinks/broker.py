"""Message broker sinks: RabbitMQ with publisher confirms, Redis Streams with XADD.

One message (stream entry) per batch; "sent" means the broker acknowledged it.
"""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import quote

from pipeline.connections import Conn
from pipeline.errors import ConfigError
from pipeline.redact import redact
from pipeline.sinks.base import Batch, DeliveryFailed, Sink

CONTENT_TYPES = {"jsonl": "application/x-ndjson", "json": "application/json"}


def amqp_url(conn: Conn) -> str:
    """``amqp://login:password@host:port/vhost`` of a connection (schema = the vhost)."""
    if not conn.host:
        raise ConfigError(f"connection {conn.conn_id!r} has no host")
    auth = ""
    if conn.login:
        auth = quote(conn.login, safe="") + (":" + quote(conn.password, safe="") if conn.password else "") + "@"
    vhost = quote(conn.schema or "/", safe="")
    scheme = "amqps" if conn.conn_type == "amqps" else "amqp"
    return f"{scheme}://{auth}{conn.host}:{conn.port or 5672}/{vhost}"


class RabbitMQSink(Sink):
    """Publish persistent messages with publisher confirms and ``mandatory`` routing."""

    def __init__(self, cfg: Any, conn: Conn | None) -> None:
        if conn is None:
            raise ConfigError("the rabbitmq sink needs a connection")
        self.url = amqp_url(conn)
        self.where = f"{conn.host}:{conn.port or 5672}"
        self.cfg = cfg
        self._conn: Any = None
        self._channel: Any = None

    @property
    def target(self) -> str:
        return f"rabbitmq:{self.where}/{self.cfg.exchange or '(default)'}/{self.cfg.routing_key}"

    def _open(self) -> Any:
        import pika

        if self._channel is None or self._channel.is_closed:
            self.close()
            params = pika.URLParameters(self.url)
            params.socket_timeout = 10
            params.blocked_connection_timeout = 30
            self._conn = pika.BlockingConnection(params)
            self._channel = self._conn.channel()
            self._channel.confirm_delivery()
            if self.cfg.declare_queue and not self.cfg.exchange:
                self._channel.queue_declare(self.cfg.routing_key, durable=True)
        return self._channel

    def send(self, batch: Batch) -> None:
        import pika
        from pika import exceptions as pe

        try:
            channel = self._open()
            channel.basic_publish(
                exchange=self.cfg.exchange,
                routing_key=self.cfg.routing_key,
                body=batch.body(self.cfg.format),
                properties=pika.BasicProperties(
                    content_type=CONTENT_TYPES[self.cfg.format],
                    delivery_mode=pika.DeliveryMode.Persistent,
                    message_id=batch.key,
                    headers=batch.headers(),
                ),
                mandatory=True,
            )
        except pe.UnroutableError as exc:
            raise DeliveryFailed(
                f"RabbitMQ at {self.where} could not route the message (exchange {self.cfg.exchange!r}, routing "
                f"key {self.cfg.routing_key!r}): no queue is bound; declare and bind one", retryable=False,
            ) from exc
        except pe.NackError as exc:
            raise DeliveryFailed(f"RabbitMQ at {self.where} refused (nack) the message", retryable=True) from exc
        except (pe.ProbableAuthenticationError, pe.ProbableAccessDeniedError) as exc:
            self.close()
            raise DeliveryFailed(f"RabbitMQ at {self.where} refused the login or the vhost: {exc}; check the "
                                 "connection's credentials", retryable=False) from None
        except pe.ChannelClosedByBroker as exc:
            self.close()
            permanent = exc.reply_code in (403, 404, 406)  # access refused, no such exchange, precondition
            raise DeliveryFailed(f"RabbitMQ at {self.where} closed the channel: {exc.reply_code} {exc.reply_text}",
                                 retryable=not permanent) from exc
        except (pe.AMQPError, OSError) as exc:  # not chained: pika's errors may carry the connection parameters
            self.close()
            raise DeliveryFailed(f"RabbitMQ at {self.where}: {type(exc).__name__}: {exc}", retryable=True) from None

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = self._channel = None


def redis_url(conn: Conn) -> str:
    """``redis://[:password@]host:port/db`` of a connection (db from extra.db or the schema)."""
    if not conn.host:
        raise ConfigError(f"connection {conn.conn_id!r} has no host")
    auth = ""
    if conn.password:
        auth = (quote(conn.login, safe="") if conn.login else "") + ":" + quote(conn.password, safe="") + "@"
    db = conn.extra.get("db", conn.schema or 0)
    scheme = "rediss" if conn.conn_type == "rediss" or conn.extra.get("ssl") else "redis"
    return f"{scheme}://{auth}{conn.host}:{conn.port or 6379}/{db}"


class RedisStreamSink(Sink):
    """XADD one entry per batch; the server's reply (the entry id) is the acknowledgement."""

    def __init__(self, cfg: Any, conn: Conn | None) -> None:
        if conn is None:
            raise ConfigError("the redis sink needs a connection")
        import redis

        self.cfg = cfg
        self.where = f"{conn.host}:{conn.port or 6379}"
        try:
            self.client = redis.Redis.from_url(redis_url(conn), socket_timeout=10, socket_connect_timeout=10)
        except ValueError as exc:  # a bad db number or option; its text may quote the URL
            raise ConfigError(f"connection {conn.conn_id!r} is not a usable Redis connection: "
                              f"{redact(str(exc))}") from None

    @property
    def target(self) -> str:
        return f"redis:{self.where}/{self.cfg.stream}"

    def send(self, batch: Batch) -> None:
        import redis

        fields = {k.lower(): v for k, v in batch.headers().items()}
        fields["content_type"] = CONTENT_TYPES[self.cfg.format]
        fields["body"] = batch.body(self.cfg.format)
        try:
            self.client.xadd(self.cfg.stream, fields, maxlen=self.cfg.maxlen,
                             approximate=self.cfg.maxlen is not None)
        except redis.ResponseError as exc:
            # READONLY (failover), OOM, LOADING, BUSY, TRYAGAIN pass; WRONGTYPE and syntax errors do not
            transient = str(exc).split(" ", 1)[0].upper() in ("READONLY", "OOM", "LOADING", "BUSY", "TRYAGAIN",
                                                              "MASTERDOWN", "CLUSTERDOWN")
            transient = transient or isinstance(exc, redis.exceptions.ReadOnlyError)
            raise DeliveryFailed(f"Redis at {self.where} refused XADD to {self.cfg.stream!r}: {exc}",
                                 retryable=transient) from exc
        except (redis.RedisError, OSError) as exc:  # not chained: the client's errors may carry its URL
            raise DeliveryFailed(f"Redis at {self.where}: {type(exc).__name__}: {exc}", retryable=True) from None

    def close(self) -> None:
        self.client.close()
