"""Unit tests for the consumer loop: settle decisions, worker flow, reconnect."""

from __future__ import annotations

import json
import queue
import threading
import time
from types import SimpleNamespace

import pika.exceptions
import pytest
from prometheus_client import CollectorRegistry

from mp3core import consumer
from mp3core.consumer import Outcome
from mp3core.errors import PermanentError

JOB_ID = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(("error", "publish_error", "expected"), [
    (None, None, Outcome.ACK),
    (PermanentError("no audio"), None, Outcome.REJECT),
    (ConnectionError("mongo down"), None, Outcome.REQUEUE),
    (RuntimeError("bug"), None, Outcome.REQUEUE),
    (None, pika.exceptions.UnroutableError([]), Outcome.REQUEUE),
    (PermanentError("no audio"), pika.exceptions.NackError([]), Outcome.REQUEUE),
])
def test_decide(error, publish_error, expected):
    assert consumer.decide(error, publish_error) is expected


def test_backoff_doubles_up_to_the_cap():
    assert [consumer.backoff(n, 1.0, 30.0) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


@pytest.mark.parametrize(("body", "error"), [
    (b"\xff\xfe", "message body is not valid UTF-8 JSON"),
    (b"{not json", "message body is not valid UTF-8 JSON"),
    (b"[1, 2]", "message body is not a JSON object"),
    (b'"text"', "message body is not a JSON object"),
])
def test_decode_rejects_non_objects(body, error):
    with pytest.raises(PermanentError) as caught:
        consumer.decode(body)
    assert str(caught.value).startswith(error)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_liveness_connected_needs_recent_ticks():
    clock = Clock()
    live = consumer.Liveness(clock)
    live.set("connected")
    clock.now += 59
    assert live.healthy()
    clock.now += 2
    assert not live.healthy()
    live.tick()
    assert live.healthy()


def test_liveness_reconnecting_is_healthy_for_a_minute_only():
    clock = Clock()
    live = consumer.Liveness(clock)
    assert live.healthy()  # starting up
    live.set("connected")
    live.set("connecting")
    clock.now += 30
    live.set("connecting")  # another failed attempt does not restart the minute
    clock.now += 29
    assert live.healthy()
    clock.now += 2
    assert not live.healthy()
    live.set("stopped")
    assert not live.healthy()


# --- worker flow: a fake connection whose thread-safe callbacks the test runs on "the connection thread" ---

class FakeConnection:
    def __init__(self) -> None:
        self.callbacks: queue.Queue = queue.Queue()
        self.is_open = True

    def add_callback_threadsafe(self, callback) -> None:
        if not self.is_open:
            raise pika.exceptions.ConnectionWrongStateError()
        self.callbacks.put(callback)


class FakeChannel:
    def __init__(self, events: list, publish_error: Exception | None = None) -> None:
        self.events = events
        self.publish_error = publish_error

    def basic_ack(self, tag):
        self.events.append(("ack", tag))

    def basic_reject(self, tag, requeue):
        self.events.append(("reject", tag, requeue))

    def basic_nack(self, tag, requeue):
        self.events.append(("nack", tag, requeue))

    def basic_publish(self, exchange, routing_key, body, properties, mandatory):
        if self.publish_error:
            error, self.publish_error = self.publish_error, None  # fails once
            raise error
        self.events.append(("publish", exchange, routing_key, json.loads(body), properties.delivery_mode,
                            properties.content_type, mandatory))


@pytest.fixture
def no_delay(monkeypatch):
    delays: list[float] = []
    real = consumer.backoff
    monkeypatch.setattr(consumer, "backoff", lambda n, lo, hi: delays.append(real(n, lo, hi)) or 0.0)
    return delays


def deliver(handler, body: bytes, *, on_permanent=None, publish_error=None, lose_connection=False,
            redelivered=False, metrics=None):
    """Runs one delivery through Consumer's worker, servicing callbacks like the connection thread would."""
    events: list = []
    loop = consumer.Consumer("amqp://unused", "video", handler, publish_queue="mp3", on_permanent=on_permanent,
                             metrics=metrics or consumer.ConsumerMetrics.create(CollectorRegistry()))
    connection = FakeConnection()
    session = consumer._Session(connection)
    session.channel = FakeChannel(events)
    session.publish_channel = FakeChannel(events, publish_error)
    loop._on_message(session, session.channel, SimpleNamespace(delivery_tag=7, redelivered=redelivered), None, body)
    worker = loop._worker
    deadline = time.monotonic() + 10
    while worker.is_alive() or not connection.callbacks.empty():
        assert time.monotonic() < deadline, "worker did not finish"
        try:
            callback = connection.callbacks.get(timeout=0.02)
        except queue.Empty:
            continue
        if lose_connection:
            session.close()  # the connection thread gives up on this connection instead of running callbacks
            connection.is_open = False
            continue
        callback()
    worker.join(5)
    return events


BODY = json.dumps({"job_id": JOB_ID}).encode()


def test_success_publishes_follow_up_then_acks():
    events = deliver(lambda m: {"job_id": m["job_id"], "status": "done"}, BODY)
    assert events == [("publish", "mp3", "mp3", {"job_id": JOB_ID, "status": "done"}, 2, "application/json", True),
                      ("ack", 7)]


def test_success_without_follow_up_acks():
    assert deliver(lambda m: None, BODY) == [("ack", 7)]


def test_permanent_error_publishes_failure_notice_then_rejects_to_dlq():
    def handler(message):
        raise PermanentError("the video has no audio stream")

    seen = []

    def on_permanent(message, error):
        seen.append((message, str(error)))
        return {"job_id": message["job_id"], "status": "failed", "error": str(error)}

    events = deliver(handler, BODY, on_permanent=on_permanent)
    assert seen == [({"job_id": JOB_ID}, "the video has no audio stream")]
    assert [e[0] for e in events] == ["publish", "reject"]
    assert events[0][3]["status"] == "failed" and events[1] == ("reject", 7, False)


def test_undecodable_body_is_rejected():
    seen = []
    events = deliver(lambda m: pytest.fail("handler must not run"), b"\xff", on_permanent=lambda m, e: seen.append(m))
    assert seen == [{}] and events == [("reject", 7, False)]


def failing(times: int, error: Exception, then=None):
    """A handler (or on_permanent) that raises `error` `times` times, then returns `then`."""
    calls = []

    def run(*args):
        calls.append(args)
        if len(calls) <= times:
            raise error
        return then

    return run


def test_transient_error_is_retried_in_place_with_backoff_then_acked(no_delay):
    # Never handed back to the queue: a quorum queue would count each return towards DELIVERY_LIMIT.
    assert deliver(failing(3, ConnectionError("MongoDB unavailable")), BODY) == [("ack", 7)]
    assert no_delay == [1.0, 2.0, 4.0]


def test_a_stop_during_transient_failures_hands_the_message_back(no_delay, monkeypatch):
    loop_holder = []

    def handler(message):
        loop_holder[0].stop()  # SIGTERM while MongoDB is down
        raise ConnectionError("MongoDB unavailable")

    real = consumer.Consumer.__init__
    monkeypatch.setattr(consumer.Consumer, "__init__", lambda self, *a, **kw: (real(self, *a, **kw), loop_holder.append(self))[0])
    assert deliver(handler, BODY) == [("nack", 7, True)]


def test_failure_to_record_permanent_error_is_retried(no_delay):
    def handler(message):
        raise PermanentError("bad")

    on_permanent = failing(1, ConnectionError("MongoDB unavailable"))
    assert deliver(handler, BODY, on_permanent=on_permanent) == [("reject", 7, False)]
    assert no_delay == [1.0]


def test_unconfirmed_publish_is_retried_instead_of_acking(no_delay):
    events = deliver(lambda m: {"status": "done"}, BODY, publish_error=pika.exceptions.NackError([]))
    # the second publish (FakeChannel fails only once) was confirmed: only then the ack
    assert events == [("publish", "mp3", "mp3", {"status": "done"}, 2, "application/json", True), ("ack", 7)]


def test_connection_lost_before_settling_leaves_message_to_broker():
    registry = CollectorRegistry()
    assert deliver(lambda m: {"status": "done"}, BODY, lose_connection=True,
                   metrics=consumer.ConsumerMetrics.create(registry)) == []
    # ... and the worker did not hang waiting for the dead connection
    assert registry.get_sample_value("consumer_messages_total", {"queue": "video", "outcome": "dropped"}) == 1


@pytest.mark.parametrize("redelivered", [True, False])
def test_redeliveries_are_counted(redelivered):
    registry = CollectorRegistry()
    assert deliver(lambda m: None, BODY, redelivered=redelivered,
                   metrics=consumer.ConsumerMetrics.create(registry)) == [("ack", 7)]
    assert registry.get_sample_value("consumer_redeliveries_total", {"queue": "video"}) == (1 if redelivered else 0)
    assert registry.get_sample_value("consumer_messages_total", {"queue": "video", "outcome": "ack"}) == 1


def test_handler_runs_in_the_job_log_context():
    from mp3core.logs import _job_id

    ids = []

    def handler(message):
        ids.append(_job_id.get())

    deliver(handler, BODY)
    assert ids == [JOB_ID]


# --- the run loop, against a scripted fake BlockingConnection -----------------------------------------------

class ScriptedConnection:
    """Enough of pika.BlockingConnection for Consumer.run(): records channel calls, stops after a few ticks."""

    def __init__(self, log: list, loop: consumer.Consumer, ticks: int = 2) -> None:
        self.log, self.loop, self.ticks = log, loop, ticks
        self.is_open = True

    def channel(self):
        log = self.log
        n = sum(1 for e in log if e[0] == "channel")
        log.append(("channel", n))

        class Channel:
            is_open = True

            def queue_declare(self, name, **kw):
                if kw.get("passive"):  # no interrupted migration to finish
                    raise pika.exceptions.ChannelClosedByBroker(404, "NOT_FOUND")
                log.append(("declare", n, name))

            def exchange_declare(self, name, kind, **kw):
                log.append(("exchange", n, name))

            def queue_bind(self, queue, exchange, routing_key):
                log.append(("bind", n, queue, exchange))

            def close(self):
                pass

            def basic_qos(self, prefetch_count):
                log.append(("qos", n, prefetch_count))

            def confirm_delivery(self):
                log.append(("confirm", n))

            def basic_consume(self, queue, callback):
                log.append(("consume", n, queue))
                return "ctag"

            def basic_cancel(self, tag):
                log.append(("cancel", n, tag))

        return Channel()

    def process_data_events(self, time_limit):
        self.ticks -= 1
        if self.ticks <= 0:
            self.loop.stop()

    def add_callback_threadsafe(self, callback):
        raise AssertionError("no deliveries in this test")

    def close(self):
        self.is_open = False
        self.log.append(("close",))


def test_run_reconnects_with_backoff_then_declares_consumes_and_stops_cleanly(monkeypatch):
    monkeypatch.setattr(consumer.signal, "signal", lambda *a: None)  # keep pytest's own handlers
    log: list = []
    attempts = iter([pika.exceptions.AMQPConnectionError("refused"), OSError("unreachable"), None])
    loop = consumer.Consumer("amqp://unused", "video", lambda m: None, publish_queue="mp3", grace_s=0.1,
                             metrics=consumer.ConsumerMetrics.create(CollectorRegistry()))

    def connect():
        error = next(attempts)
        if error:
            raise error
        return ScriptedConnection(log, loop)

    sleeps: list[float] = []
    loop._connect_fn = connect
    monkeypatch.setattr(loop, "_sleep", sleeps.append)

    loop.run()

    assert sleeps == [1.0, 2.0]
    # The converter's part: publishes to `mp3` (its queue and exchange: it may migrate that one), consumes `video`
    # (its queue, dead-letter exchange and queue); then a consuming channel and a confirm-mode publishing channel.
    assert log == [("channel", 0), ("declare", 0, "mp3"), ("exchange", 0, "mp3"), ("bind", 0, "mp3", "mp3"),
                   ("channel", 1),  # looks for an interrupted migration of `mp3`: none
                   ("channel", 2), ("declare", 2, "video"), ("exchange", 2, "video.dlx"), ("declare", 2, "video.dead"),
                   ("bind", 2, "video.dead", "video.dlx"),
                   ("channel", 3), ("channel", 4), ("confirm", 4), ("qos", 3, 1),
                   ("consume", 3, "video"), ("cancel", 3, "ctag"), ("close",)]
    assert loop.liveness.state == "stopped" and not loop.healthy()


def test_run_waits_for_a_job_from_a_lost_connection_before_consuming_again(monkeypatch):
    monkeypatch.setattr(consumer.signal, "signal", lambda *a: None)
    log: list = []
    loop = consumer.Consumer("amqp://unused", "mp3", lambda m: None, grace_s=0.1,
                             metrics=consumer.ConsumerMetrics.create(CollectorRegistry()))
    release = threading.Event()
    loop._worker = threading.Thread(target=release.wait, daemon=True)
    loop._worker.start()

    class Conn(ScriptedConnection):
        def process_data_events(self, time_limit):
            consuming = any(e[0] == "consume" for e in self.log)
            self.log.append(("tick", consuming))
            if not consuming:
                release.set()
                loop._worker.join()
            else:
                loop.stop()

    loop._connect_fn = lambda: Conn(log, loop)
    loop.run()

    ticks = [e for e in log if e[0] in ("tick", "consume")]
    assert ticks[0] == ("tick", False) and ("consume", 1, "mp3") in ticks  # channel 0 declared the queue
    assert ticks.index(("consume", 1, "mp3")) > 0


class DeliveringConnection(ScriptedConnection):
    """Delivers one message on the first tick, then asks to stop; services thread-safe callbacks meanwhile."""

    def __init__(self, log, loop, on_message_holder):
        super().__init__(log, loop)
        self.callbacks: queue.Queue = queue.Queue()
        self.holder = on_message_holder
        self.delivered = False

    def channel(self):
        channel = super().channel()
        log, holder = self.log, self.holder

        def basic_consume(queue_name, callback):
            log.append(("consume", 0, queue_name))
            holder.append(callback)
            return "ctag"

        channel.basic_consume = basic_consume
        channel.basic_ack = lambda tag: log.append(("ack", tag))
        channel.basic_nack = lambda tag, requeue: log.append(("nack", tag, requeue))
        return channel

    def add_callback_threadsafe(self, callback):
        self.callbacks.put(callback)

    def process_data_events(self, time_limit):
        if not self.delivered:
            self.delivered = True
            self.holder[0](None, SimpleNamespace(delivery_tag=1, redelivered=False), None, BODY)
            self.loop.stop()  # SIGTERM arrives while the job runs
            return
        try:
            self.callbacks.get(timeout=time_limit)()
        except queue.Empty:
            pass


@pytest.mark.parametrize(("job_seconds", "settled"), [(0.2, [("ack", 1)]), (5.0, [])])
def test_stop_lets_the_job_in_progress_finish_within_the_grace_period(monkeypatch, job_seconds, settled):
    monkeypatch.setattr(consumer.signal, "signal", lambda *a: None)
    log: list = []
    release = threading.Event()
    loop = consumer.Consumer("amqp://unused", "mp3", lambda m: release.wait(job_seconds) and None, grace_s=1.0,
                             metrics=consumer.ConsumerMetrics.create(CollectorRegistry()))
    loop._connect_fn = lambda: DeliveringConnection(log, loop, [])

    started = time.monotonic()
    loop.run()

    assert time.monotonic() - started < 3.0  # never waits past the grace period
    after_cancel = log[log.index(("cancel", 1, "ctag")) + 1:]  # channel 0 declared the queue
    assert after_cancel == [*settled, ("close",)]
    release.set()
