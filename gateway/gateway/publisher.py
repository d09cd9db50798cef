"""AMQP adapter: publishes `video` messages with publisher confirms on one shared connection, to the next broker
node when its node goes away."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

import pika
import pika.exceptions
from mp3core import broker
from mp3core.errors import ServiceUnavailable
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

log = logging.getLogger(__name__)

MIGRATION_RETRY_S = 10.0
NACK_RETRY_S = 15.0  # how long refused (nacked) publishes are tried again before the upload gets its 503
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
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # RABBITMQ_URL may list several nodes; a reconnect starts at the node after the one that went away.
        self._brokers = broker.Brokers(url, _fail_fast)
        self._queue = queue
        self._connect = connect
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._connection: BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._migration_retry_at: float | None = None  # the queue is still being migrated: try again then

    def prepare(self) -> None:
        """Connects and declares now (migrating a classic `video` queue of an earlier version) instead of at
        the first upload; a broker that is down is left for that upload to find."""
        with self._lock:
            try:
                self._ensure_channel()
            except (pika.exceptions.AMQPError, OSError) as exc:
                log.warning("RabbitMQ not reachable at start (%r); connecting at the first upload", exc)
                self._reset()

    def publish(self, message: dict) -> None:
        """Publish and wait for the broker's confirm; raise ServiceUnavailable when it is not stored."""
        body = json.dumps(message).encode("utf-8")
        with self._lock:
            started, attempt, nacks = self._clock(), 0, 0
            while True:
                attempt += 1
                try:
                    channel = self._ensure_channel()
                    broker.publish_confirmed(channel, self._queue, body, _MESSAGE_PROPERTIES)
                    return
                except pika.exceptions.NackError as exc:
                    # A quorum queue whose leader's node just went away refuses messages until another node
                    # leads it (measured: seconds to about 12 s on a busy machine). Not stored, so try again
                    # for a while rather than turn every upload of that moment into a 503.
                    nacks += 1
                    waited = self._clock() - started
                    if waited >= NACK_RETRY_S:
                        log.error("broker refused message for %.0f s: NackError", waited, extra=_ids(message))
                        raise ServiceUnavailable("the job queue refused the job, try again later") from exc
                    log.warning("broker refused message (NackError); trying again", extra=_ids(message))
                    self._sleep(min(2.0, 0.25 * 2 ** (nacks - 1), NACK_RETRY_S - waited))
                except pika.exceptions.UnroutableError as exc:
                    # No queue behind the exchange: retrying would get the same answer. (Also for the instant
                    # a queue migration swaps its queues: refused, so never lost.)
                    log.error("broker refused message: %s", type(exc).__name__, extra=_ids(message))
                    raise ServiceUnavailable("the job queue refused the job, try again later") from exc
                except (pika.exceptions.AMQPError, OSError) as exc:
                    # Typically a connection the broker dropped while we were idle (missed heartbeats), or a
                    # node that went away: reconnect (to the next node) once. A duplicate on retry is harmless
                    # because the converter's effects are idempotent per job.
                    self._reset()
                    if attempt >= 2 + nacks:
                        log.error("publish failed after reconnect: %r", exc, extra=_ids(message))
                        raise ServiceUnavailable("the job queue is unavailable, try again later") from exc
                    log.warning("publish failed, reconnecting: %r", exc, extra=_ids(message))

    def _ensure_channel(self) -> BlockingChannel:
        if self._channel is not None and self._channel.is_open:
            if self._migration_retry_at is not None and time.monotonic() >= self._migration_retry_at:
                self._ensure_topology(self._connection)
            return self._channel
        self._reset()
        self._connection = self._brokers.connect(self._connect)
        log.info("connected to RabbitMQ")
        self._ensure_topology(self._connection)
        channel = self._connection.channel()
        channel.confirm_delivery()
        self._channel = channel
        return channel

    def _ensure_topology(self, connection: BlockingConnection) -> None:
        """Declares the queue and its exchange, migrating a classic `video` queue of an earlier version."""
        try:
            broker.ensure(connection, self._queue, publish=True, consume=False)
            self._migration_retry_at = None
        except broker.MigrationPending as pending:
            # Publishing is still safe: the exchange leads to the migration's holding queue, or nowhere (then the
            # publish is unroutable: 503). The migration goes on at a later publish.
            log.warning("queue migration not finished: %s", pending)
            self._migration_retry_at = time.monotonic() + MIGRATION_RETRY_S

    def _reset(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail any way
                pass


def _fail_fast(params: pika.URLParameters) -> None:
    # Fail fast instead of hanging a request when a node is unreachable or blocks publishers (memory/disk alarm).
    params.socket_timeout = 5
    params.blocked_connection_timeout = 30
    params.connection_attempts = 1


def _ids(message: dict) -> dict:
    return {"job_id": message.get("job_id")}
