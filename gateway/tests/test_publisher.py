"""Publisher: declares the contract's queue and exchange, publishes persistent confirmed messages to the exchange,
retries once, on the next broker node when RABBITMQ_URL lists several."""

from __future__ import annotations

import json
import threading
import time

import pika.exceptions
import pytest

from mp3core.errors import ServiceUnavailable

from gateway.publisher import NACK_RETRY_S, Publisher

URL = "amqp://guest:guest@127.0.0.1:5672/%2F"  # dev-only placeholder credentials
MESSAGE = {"job_id": "j1", "video_fid": "f1", "username": "a@example.com", "filename": "a.mp4"}


class FakeChannel:
    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.is_open = True
        self.confirming = False

    def confirm_delivery(self) -> None:
        self.confirming = True

    def queue_declare(self, queue, **kwargs) -> None:
        if kwargs.get("passive"):  # broker.ensure looks for an interrupted migration's holding queue
            self.is_open = False
            raise pika.exceptions.ChannelClosedByBroker(404, f"NOT_FOUND - no queue '{queue}'")
        self.broker.declared.append((queue, kwargs))

    def exchange_declare(self, exchange, kind, **kwargs) -> None:
        self.broker.declared.append(("exchange", exchange, kind, kwargs))

    def queue_bind(self, queue, exchange, routing_key) -> None:
        self.broker.declared.append(("bind", queue, exchange, routing_key))

    def close(self) -> None:
        self.is_open = False

    def basic_publish(self, exchange, routing_key, body, properties, mandatory=False) -> None:
        kwargs = {"exchange": exchange, "routing_key": routing_key, "body": body, "properties": properties,
                  "mandatory": mandatory}
        assert self.confirming, "published before confirm_delivery()"
        if self.broker.in_publish.locked():
            self.broker.overlapping = True
        with self.broker.in_publish:
            time.sleep(self.broker.publish_delay)
            if self.broker.failures:
                error = self.broker.failures.pop(0)
                if isinstance(error, pika.exceptions.AMQPConnectionError):
                    self.is_open = False
                raise error
            self.broker.published.append(kwargs)


class FakeConnection:
    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.is_open = True

    def channel(self) -> FakeChannel:
        return FakeChannel(self.broker)

    def close(self) -> None:
        self.is_open = False
        self.broker.closed += 1


class FakeBroker:
    def __init__(self) -> None:
        self.connects = 0
        self.closed = 0
        self.declared: list = []
        self.published: list[dict] = []
        self.failures: list[Exception] = []
        self.connect_error: Exception | None = None
        self.params = None
        self.in_publish = threading.Lock()
        self.overlapping = False
        self.publish_delay = 0.0

    def connect(self, params) -> FakeConnection:
        self.params = params
        if self.connect_error is not None:
            raise self.connect_error
        self.connects += 1
        return FakeConnection(self)


@pytest.fixture
def broker() -> FakeBroker:
    return FakeBroker()


@pytest.fixture
def publisher(broker) -> Publisher:
    return Publisher(URL, "video", connect=broker.connect)


def test_connects_lazily(broker, publisher):
    assert broker.connects == 0


def test_prepare_connects_and_declares_without_publishing(broker, publisher):
    publisher.prepare()
    assert broker.connects == 1 and broker.declared and broker.published == []
    publisher.publish(MESSAGE)
    assert broker.connects == 1  # the prepared connection is used


def test_prepare_leaves_a_broker_that_is_down_to_the_first_upload(broker, publisher):
    broker.connect_error = pika.exceptions.AMQPConnectionError("refused")
    publisher.prepare()  # no exception: the gateway starts anyway
    broker.connect_error = None
    publisher.publish(MESSAGE)
    assert len(broker.published) == 1


def test_publish_declares_the_quorum_queue_and_its_exchange_exactly_as_the_contract(broker, publisher):
    publisher.publish(MESSAGE)

    assert broker.declared == [
        ("video", {"durable": True, "arguments": {"x-queue-type": "quorum", "x-delivery-limit": 10,
                                                  "x-dead-letter-exchange": "video.dlx",
                                                  "x-dead-letter-routing-key": "video.dead"}}),
        ("exchange", "video", "direct", {"durable": True}),
        ("bind", "video", "video", "video"),
    ]  # the dead-letter exchange and queue are the consumer's (the gateway's broker user may not declare them)


def test_publish_sends_persistent_json_with_mandatory_flag(broker, publisher):
    publisher.publish(MESSAGE)

    [sent] = broker.published
    assert sent["exchange"] == "video"  # the queue's own exchange, never the default one
    assert sent["routing_key"] == "video"
    assert sent["mandatory"] is True
    assert sent["properties"].delivery_mode == 2
    assert sent["properties"].content_type == "application/json"
    assert json.loads(sent["body"].decode("utf-8")) == MESSAGE


def test_connection_is_reused(broker, publisher):
    for _ in range(3):
        publisher.publish(MESSAGE)
    assert broker.connects == 1
    assert len(broker.published) == 3


def test_connection_settings_fail_fast(broker, publisher):
    publisher.publish(MESSAGE)
    params = broker.params
    assert params.host == "127.0.0.1"
    assert params.socket_timeout == 5
    assert params.blocked_connection_timeout == 30


def test_several_urls_are_tried_in_turn_starting_after_the_node_that_went_away(broker):
    publisher = Publisher(URL + ", amqp://guest:guest@127.0.0.2:5672/%2F,amqp://guest:guest@127.0.0.3:5672/%2F",
                          "video", connect=broker.connect)
    publisher.publish(MESSAGE)
    assert broker.params.host == "127.0.0.1"
    broker.failures = [pika.exceptions.StreamLostError("node 1 stopped")]
    publisher.publish(MESSAGE)
    assert broker.params.host == "127.0.0.2"
    assert len(broker.published) == 2


@pytest.mark.parametrize(
    "error",
    [
        pika.exceptions.StreamLostError("Transport indicated EOF"),
        pika.exceptions.ChannelWrongStateError("Channel is closed."),
        pika.exceptions.ConnectionClosedByBroker(320, "CONNECTION_FORCED"),
    ],
    ids=["stream-lost", "channel-closed", "closed-by-broker"],
)
def test_connection_error_reconnects_and_retries_once(broker, publisher, error):
    publisher.publish(MESSAGE)
    broker.failures = [error]

    publisher.publish(MESSAGE)

    assert broker.connects == 2
    assert len(broker.published) == 2


def test_second_failure_is_service_unavailable(broker, publisher):
    broker.failures = [pika.exceptions.StreamLostError("eof"), pika.exceptions.StreamLostError("eof again")]
    with pytest.raises(ServiceUnavailable) as caught:
        publisher.publish(MESSAGE)
    assert caught.value.message == "the job queue is unavailable, try again later"
    assert broker.connects == 2
    assert broker.published == []


def test_broker_down_is_service_unavailable(broker, publisher):
    broker.connect_error = pika.exceptions.AMQPConnectionError("refused")
    with pytest.raises(ServiceUnavailable):
        publisher.publish(MESSAGE)


def test_unroutable_message_is_service_unavailable_without_retry(broker, publisher):
    broker.failures = [pika.exceptions.UnroutableError([])]
    with pytest.raises(ServiceUnavailable) as caught:
        publisher.publish(MESSAGE)
    assert caught.value.message == "the job queue refused the job, try again later"
    assert broker.connects == 1  # the broker answered; a retry would get the same answer
    assert broker.published == []


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_nacked_message_is_tried_again_while_a_quorum_queue_finds_a_new_leader(broker):
    clock = Clock()
    publisher = Publisher(URL, "video", connect=broker.connect, clock=clock, sleep=clock.sleep)
    broker.failures = [pika.exceptions.NackError([])] * 4
    publisher.publish(MESSAGE)
    assert len(broker.published) == 1 and broker.connects == 1
    assert clock.sleeps == [0.25, 0.5, 1.0, 2.0]


def test_nacks_for_longer_than_the_retry_budget_are_service_unavailable(broker):
    clock = Clock()
    publisher = Publisher(URL, "video", connect=broker.connect, clock=clock, sleep=clock.sleep)
    broker.failures = [pika.exceptions.NackError([])] * 100
    with pytest.raises(ServiceUnavailable) as caught:
        publisher.publish(MESSAGE)
    assert caught.value.message == "the job queue refused the job, try again later"
    assert clock.now == pytest.approx(NACK_RETRY_S) and broker.published == []


def test_threads_never_use_the_channel_at_the_same_time(broker, publisher):
    broker.publish_delay = 0.01
    threads = [threading.Thread(target=publisher.publish, args=(MESSAGE,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(broker.published) == 8
    assert broker.overlapping is False
    assert broker.connects == 1
