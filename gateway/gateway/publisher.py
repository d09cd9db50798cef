"""AMQP adapter: publishes `video` messages with publisher confirms on one shared connection."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

import pika
import pika.exceptions
from mp3core.contract import declare_queue
from mp3core.errors import ServiceUnavailable
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

log = logging.getLogger(__name__)

_MESSAGE_PROPERTIES = pika.BasicProperties(delivery_mode=2, content_type="application/json")


class Publisher:
    """One connection per gunicorn worker, shared by its requests (greenlets under the gevent worker) behind a
    lock, because pika's BlockingConnection is not safe to use from two at once. The lock is made after gevent's
    monkey-patching, so it is gevent's. Connects lazily so the app starts while RabbitMQ is down."""

    def __init__(
        self,
        url: str,
        queue: str,
        *,
        connect: Callable[[pika.URLParameters], BlockingConnection] = pika.BlockingConnection,
    ) -> None:
        self._params = pika.URLParameters(url)
        # Fail fast instead of hanging a request thread when the broker is unreachable or
        # blocks publishers (memory/disk alarm).
        self._params.socket_timeout = 5
        self._params.blocked_connection_timeout = 30
        self._queue = queue
        self._connect = connect
        self._lock = threading.Lock()
        self._connection: BlockingConnection | None = None
        self._channel: BlockingChannel | None = None

    def publish(self, message: dict) -> None:
        """Publish and wait for the broker's confirm; raise ServiceUnavailable when it is not stored."""
        body = json.dumps(message).encode("utf-8")
        with self._lock:
            for attempt in (1, 2):
                try:
                    channel = self._ensure_channel()
                    channel.basic_publish(
                        exchange="",
                        routing_key=self._queue,
                        body=body,
                        properties=_MESSAGE_PROPERTIES,
                        mandatory=True,
                    )
                    return
                except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
                    # The broker answered: retrying the same publish would get the same answer.
                    log.error("broker refused message: %s", type(exc).__name__, extra=_ids(message))
                    raise ServiceUnavailable("the job queue refused the job, try again later") from exc
                except (pika.exceptions.AMQPError, OSError) as exc:
                    # Typically a connection the broker dropped while we were idle (missed
                    # heartbeats): reconnect once. A duplicate on retry is harmless because the
                    # converter's effects are idempotent per job.
                    self._reset()
                    if attempt == 2:
                        log.error("publish failed after reconnect: %r", exc, extra=_ids(message))
                        raise ServiceUnavailable("the job queue is unavailable, try again later") from exc
                    log.warning("publish failed, reconnecting: %r", exc, extra=_ids(message))

    def _ensure_channel(self) -> BlockingChannel:
        if self._channel is not None and self._channel.is_open:
            return self._channel
        self._reset()
        self._connection = self._connect(self._params)
        channel = self._connection.channel()
        channel.confirm_delivery()
        declare_queue(channel, self._queue)
        self._channel = channel
        return channel

    def _reset(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail any way
                pass


def _ids(message: dict) -> dict:
    return {"job_id": message.get("job_id")}
