"""AMQP consumer loop: connect (to the next node when several), declare, prefetch 1, handle each message in a
worker thread, settle, reconnect."""

from __future__ import annotations

import enum
import functools
import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from . import broker
from .errors import PermanentError
from .logs import job_context

log = logging.getLogger(__name__)

Message = dict[str, Any]
# handler(message) -> follow-up message to publish to publish_queue, or None.
Handler = Callable[[Message], "Message | None"]
# on_permanent(message, error) -> follow-up message (e.g. a `failed` notice), or None; runs before the reject.
OnPermanent = Callable[[Message, PermanentError], "Message | None"]


@dataclass(frozen=True)
class ConsumerMetrics:
    """The loop's instruments, on the service's registry (labelled by queue, so every consumer shares names)."""

    messages: Counter
    handle_seconds: Histogram
    connected: Gauge
    redeliveries: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ConsumerMetrics:
        return cls(
            messages=Counter("consumer_messages_total", "Deliveries settled, by queue and outcome.",
                             ["queue", "outcome"], registry=registry),
            handle_seconds=Histogram("consumer_handle_seconds", "Time from delivery to settlement.", ["queue"],
                                     buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600), registry=registry),
            connected=Gauge("consumer_broker_connected", "1 while connected to RabbitMQ and consuming.", ["queue"],
                            registry=registry),
            redeliveries=Counter("consumer_redeliveries_total",
                                 "Deliveries flagged redelivered: an earlier delivery was requeued or never settled.",
                                 ["queue"], registry=registry),
        )

HEARTBEAT_S = 30
RECONNECT_MIN_S, RECONNECT_MAX_S = 1.0, 30.0
REQUEUE_MIN_S, REQUEUE_MAX_S = 1.0, 30.0
UNHEALTHY_AFTER_S = 60.0
TICK_S = 1.0  # how often the connection thread wakes up to notice a stop request


class Outcome(enum.Enum):
    """What happens to a delivery once its handler is done."""

    ACK = "ack"
    REJECT = "reject"    # basic_reject(requeue=False): the broker dead-letters it to <queue>.dead
    REQUEUE = "requeue"  # transient failure: retried in place after a backoff delay; basic_nack(requeue=True)
                         # only when the consumer stops meanwhile (a quorum queue counts returns, DELIVERY_LIMIT)
    DROPPED = "dropped"  # the connection went away first: the broker redelivers it by itself


class ConnectionLost(Exception):
    """The connection a delivery came on is gone; its delivery tag is meaningless now."""


def decide(error: BaseException | None, publish_error: BaseException | None) -> Outcome:
    """Settlement for a handled delivery: ack only when the work and its follow-up message are both durable."""
    if publish_error is not None:
        return Outcome.REQUEUE
    if error is None:
        return Outcome.ACK
    if isinstance(error, PermanentError):
        return Outcome.REJECT
    return Outcome.REQUEUE


def backoff(failures: int, low: float, high: float) -> float:
    """Capped exponential delay for the n-th consecutive failure (1-based): low, 2*low, 4*low, ... high."""
    return min(high, low * 2 ** max(0, min(failures, 32) - 1))


def decode(body: bytes) -> Message:
    """The message body as a dict; anything else can never be handled."""
    try:
        message = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PermanentError(f"message body is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(message, dict):
        raise PermanentError("message body is not a JSON object")
    return message


class Liveness:
    """Health of the loop: alive and connected, or (re)connecting for less than UNHEALTHY_AFTER_S."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.state = "connecting"
        self._since = self._last_tick = clock()

    def set(self, state: str) -> None:
        if state != self.state:
            self.state, self._since = state, self._clock()
        self._last_tick = self._clock()

    def tick(self) -> None:
        self._last_tick = self._clock()

    def healthy(self) -> bool:
        now = self._clock()
        if self.state == "connected":
            # A stale tick means the connection thread is stuck (e.g. blocked publishing under a broker alarm).
            return now - self._last_tick < UNHEALTHY_AFTER_S
        if self.state == "connecting":
            return now - self._since < UNHEALTHY_AFTER_S
        return False


class _Session:
    """One connection and its channels; lets worker threads run calls on the connection thread."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.channel: Any = None
        self.publish_channel: Any = None
        self.consumer_tag: str | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._waiting: set[Future] = set()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Runs fn on the connection thread (pika is not thread-safe) and returns its result; blocks meanwhile."""
        future: Future = Future()

        def run() -> None:
            if future.done():  # failed by close() already
                return
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting worker
                future.set_exception(exc)

        with self._lock:
            if self._closed:
                raise ConnectionLost()
            try:
                self.connection.add_callback_threadsafe(run)
            except pika.exceptions.ConnectionWrongStateError:
                raise ConnectionLost() from None
            self._waiting.add(future)
        try:
            return future.result()
        finally:
            with self._lock:
                self._waiting.discard(future)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Fails pending calls: once the connection thread leaves this connection they would never run."""
        with self._lock:
            self._closed = True
            for future in self._waiting:
                if not future.done():
                    future.set_exception(ConnectionLost())


class Consumer:
    """Consumes `queue` one message at a time; publishes the handler's follow-up messages to `publish_queue`."""

    def __init__(self, url: str, queue: str, handler: Handler, *, publish_queue: str | None = None,
                 metrics: ConsumerMetrics, on_permanent: OnPermanent | None = None, grace_s: float = 25.0,
                 connect: Callable[[], Any] | None = None) -> None:
        self._brokers = broker.Brokers(url, _tune)  # RABBITMQ_URL: one node, or several comma-separated
        self._queue = queue
        self._handler = handler
        self._publish_queue = publish_queue
        self._on_permanent = on_permanent
        self._grace_s = grace_s
        self._connect_fn = connect or self._connect
        self._metrics = metrics
        # Every series exported from the start at 0, so rate() and alerts see them before the first event.
        for outcome in Outcome:
            self._metrics.messages.labels(queue, outcome.value)
        self._metrics.redeliveries.labels(queue)
        self._metrics.connected.labels(queue).set(0)
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        self._failures = 0  # consecutive transient failures, for the requeue delay
        self.liveness = Liveness()

    def healthy(self) -> bool:
        return self.liveness.healthy()

    def stop(self) -> None:
        """Asks the loop to stop consuming, let the in-flight job finish (up to grace_s) and return.

        Safe from a signal handler: it only sets an Event, which the main thread never waits on.
        """
        self._stopping.set()

    def run(self) -> None:
        """Consumes until stop(); reconnects forever with capped exponential backoff on connection loss."""
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: self.stop())
        failures = 0
        try:
            while not self._stopping.is_set():
                session: _Session | None = None
                try:
                    self.liveness.set("connecting")
                    session = _Session(self._connect_fn())
                    self._setup(session)
                    self.liveness.set("connected")
                    self._wait_for_worker(session)
                    if self._stopping.is_set():
                        break
                    session.consumer_tag = session.channel.basic_consume(
                        self._queue, functools.partial(self._on_message, session))
                    self._metrics.connected.labels(self._queue).set(1)
                    failures = 0  # reset only once consuming: a failing declare must keep backing off
                    log.info("consuming from %s", self._queue)
                    while not self._stopping.is_set():
                        session.connection.process_data_events(time_limit=TICK_S)
                        self.liveness.tick()
                    self._drain(session)
                except (pika.exceptions.AMQPError, OSError, broker.MigrationPending) as exc:
                    failures += 1
                    delay = backoff(failures, RECONNECT_MIN_S, RECONNECT_MAX_S)
                    log.warning("RabbitMQ connection failed or lost, or the queue is not ready (%s); "
                                "reconnecting in %.0f s", repr(exc)[:300], delay)
                    self._close(session)
                    session = None
                    self.liveness.set("connecting")
                    self._sleep(delay)
                finally:
                    self._metrics.connected.labels(self._queue).set(0)
                    self._close(session)
        finally:
            self.liveness.set("stopped")
            log.info("consumer stopped")

    # --- connection thread -------------------------------------------------------------------------------

    def _connect(self) -> Any:
        # Each attempt starts at the node after the last one used: a node that went away is tried last.
        return self._brokers.connect()

    def _setup(self, session: _Session) -> None:
        connection = session.connection
        # Declares only what this consumer's role needs (its broker user may do no more); a classic queue of an
        # earlier version is migrated here when this role may publish to it (broker.ensure).
        # The queue it publishes to first: it may migrate that one, while its own may wait for its publishers.
        if self._publish_queue and self._publish_queue != self._queue:
            broker.ensure(connection, self._publish_queue, publish=True, consume=False)
        broker.ensure(connection, self._queue, publish=self._publish_queue == self._queue, consume=True)
        session.channel = connection.channel()
        if self._publish_queue:
            # A separate confirm-mode channel: basic_publish then returns only once the broker has the message.
            session.publish_channel = session.connection.channel()
            session.publish_channel.confirm_delivery()
        session.channel.basic_qos(prefetch_count=1)

    def _wait_for_worker(self, session: _Session) -> None:
        """A job from a lost connection must finish first: consuming now would redeliver it to a second worker."""
        while self._worker is not None and self._worker.is_alive() and not self._stopping.is_set():
            session.connection.process_data_events(time_limit=TICK_S)
            self.liveness.tick()

    def _drain(self, session: _Session) -> None:
        """Stops deliveries, then keeps the connection serviced so the in-flight job can settle, up to grace_s."""
        log.info("stopping: no new messages, waiting up to %.0f s for the job in progress", self._grace_s)
        session.channel.basic_cancel(session.consumer_tag)
        deadline = time.monotonic() + self._grace_s
        while self._worker is not None and self._worker.is_alive() and time.monotonic() < deadline:
            session.connection.process_data_events(time_limit=min(TICK_S, self._grace_s))
            self.liveness.tick()
        if self._worker is not None and self._worker.is_alive():
            log.warning("job still running after %.0f s; leaving it unacked for redelivery", self._grace_s)

    def _close(self, session: _Session | None) -> None:
        if session is None:
            return
        session.close()
        try:
            if session.connection.is_open:
                session.connection.close()
        except Exception:  # noqa: BLE001 - the connection is being thrown away anyway
            log.debug("error while closing the connection", exc_info=True)

    def _sleep(self, seconds: float) -> None:
        # Small slices rather than Event.wait(): a signal handler must not contend for a lock the main thread holds.
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set() and time.monotonic() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def _on_message(self, session: _Session, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        if method.redelivered:
            self._metrics.redeliveries.labels(self._queue).inc()
        # The handler may run for minutes; the connection thread must keep servicing heartbeats meanwhile.
        self._worker = threading.Thread(target=self._work, args=(session, method.delivery_tag, body,
                                                                 bool(method.redelivered)),
                                        name="worker", daemon=True)
        self._worker.start()

    def _publish(self, session: _Session, message: Message) -> None:
        # With confirms on, this raises UnroutableError (mandatory) or NackError unless the broker took it.
        broker.publish_confirmed(session.publish_channel, self._publish_queue, json.dumps(message).encode("utf-8"),
                                 pika.BasicProperties(delivery_mode=2, content_type="application/json"))

    def _settle(self, session: _Session, delivery_tag: int, outcome: Outcome) -> None:
        if outcome is Outcome.ACK:
            session.channel.basic_ack(delivery_tag)
        elif outcome is Outcome.REJECT:
            session.channel.basic_reject(delivery_tag, requeue=False)
        else:
            session.channel.basic_nack(delivery_tag, requeue=True)

    # --- worker thread -----------------------------------------------------------------------------------

    def _work(self, session: _Session, delivery_tag: int, body: bytes, redelivered: bool = False) -> None:
        started = time.monotonic()
        job_id = _peek_job_id(body)
        with job_context(job_id):
            try:
                while True:
                    outcome = self._attempt(session, body)
                    if outcome is not Outcome.REQUEUE:
                        self._failures = 0
                        break
                    # Retried here, the message staying unacked: handing it back to a quorum queue would count
                    # towards its DELIVERY_LIMIT, and an outage of MongoDB or SMTP must not dead-letter jobs.
                    self._failures += 1
                    delay = backoff(self._failures, REQUEUE_MIN_S, REQUEUE_MAX_S)
                    if self._stopping.is_set():
                        break  # stopping: hand it back (nack) for another consumer
                    log.warning("transient failure; trying the message again in %.0f s", delay)
                    self._stopping.wait(delay)  # a stop request cuts the delay short
                    if self._stopping.is_set():
                        break
                    if session.closed:
                        raise ConnectionLost()
                session.call(functools.partial(self._settle, session, delivery_tag, outcome))
            except (ConnectionLost, pika.exceptions.AMQPError) as exc:
                outcome = Outcome.DROPPED
                log.warning("connection lost before the message was settled (%s); the broker will redeliver it",
                            type(exc).__name__)
            self._metrics.messages.labels(self._queue, outcome.value).inc()
            self._metrics.handle_seconds.labels(self._queue).observe(time.monotonic() - started)
            log.info("message %s", outcome.value, extra={"seconds": round(time.monotonic() - started, 3),
                                                          "redelivered": redelivered})

    def _attempt(self, session: _Session, body: bytes) -> Outcome:
        """Runs the handler once and publishes its follow-up message; what to do with the delivery."""
        error, follow_up = self._run_handler(body)
        publish_error: BaseException | None = None
        if follow_up is not None and self._publish_queue:
            try:
                session.call(functools.partial(self._publish, session, follow_up))
            except ConnectionLost:
                raise
            except Exception as exc:  # noqa: BLE001 - any publish failure means: not durable, retry
                publish_error = exc
                log.warning("could not publish to %s (%s: %s)", self._publish_queue, type(exc).__name__, exc)
        return decide(error, publish_error)

    def _run_handler(self, body: bytes) -> tuple[BaseException | None, Message | None]:
        """(error, follow-up message): error is None, a PermanentError, or a transient exception."""
        message: Message = {}
        try:
            message = decode(body)
            return None, self._handler(message)
        except PermanentError as exc:
            log.warning("permanent failure: %s", exc)
            if self._on_permanent is None:
                return exc, None
            try:
                return exc, self._on_permanent(message, exc)
            except Exception as inner:  # noqa: BLE001 - recording the failure failed: retry the whole message
                log.exception("could not record the permanent failure")
                return inner, None
        except Exception as exc:  # noqa: BLE001 - anything else is transient by definition
            log.exception("transient failure (%s)", type(exc).__name__)
            return exc, None


def _tune(params: pika.URLParameters) -> None:
    params.heartbeat = HEARTBEAT_S
    # Under a broker resource alarm publishes block; give up and reconnect rather than hang forever.
    params.blocked_connection_timeout = 120
    # A node that is down must not hold up trying the next one for long.
    params.socket_timeout = 5
    params.connection_attempts = 1


def _peek_job_id(body: bytes) -> str | None:
    """job_id for log lines, best effort: the handler does the real validation."""
    try:
        job_id = json.loads(body).get("job_id")
    except Exception:  # noqa: BLE001
        return None
    return job_id if isinstance(job_id, str) else None
