"""The move from the classic queues of earlier versions to quorum queues, against the real broker: no message is
lost or doubled, with several service processes starting at once, publishers publishing meanwhile, old consumers
still attached, or a migration interrupted halfway.

Each test makes a classic queue as the earlier versions declared it (dead-lettering through the default exchange
to `<queue>.dlq`), with messages in it, then runs the services' own code (mp3core.broker, gateway's Publisher,
mp3core's Consumer) as the services' broker users.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

pytestmark = pytest.mark.integration

import pika  # noqa: E402
import pika.exceptions  # noqa: E402

from mp3core import broker  # noqa: E402
from mp3core.contract import declare_queue, queue_arguments  # noqa: E402
from mp3core.errors import ServiceUnavailable  # noqa: E402
from tests.support import RABBITMQ_URL, service_rabbitmq_url, wait_until  # noqa: E402

OLD_MESSAGES = 40


@contextmanager
def connection_of(url: str) -> Iterator[Any]:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        yield connection
    finally:
        if connection.is_open:
            connection.close()


def make_classic(queue: str, count: int) -> list[bytes]:
    """The earlier versions' queue and dead-letter queue, with `count` persistent messages (and one dead letter)."""
    bodies = [json.dumps({"n": n}).encode() for n in range(count)]
    with connection_of(RABBITMQ_URL) as connection:
        channel = connection.channel()
        channel.queue_declare(queue, durable=True, arguments={"x-dead-letter-exchange": "",
                                                              "x-dead-letter-routing-key": queue + ".dlq"})
        channel.queue_declare(queue + ".dlq", durable=True)
        channel.confirm_delivery()
        for body in bodies:
            channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2), mandatory=True)
        channel.basic_publish("", queue + ".dlq", b'{"dead": true}', pika.BasicProperties(delivery_mode=2))
    return bodies


def queue_type(queue: str) -> str:
    """'quorum' when the queue is declared with the contract's arguments (a classic one refuses them)."""
    with connection_of(RABBITMQ_URL) as connection:
        try:
            connection.channel().queue_declare(queue, durable=True, arguments=queue_arguments(queue))
            return "quorum"
        except pika.exceptions.ChannelClosedByBroker as exc:
            assert exc.reply_code == 406, exc
            return "classic"


def exists(queue: str) -> bool:
    with connection_of(RABBITMQ_URL) as connection:
        try:
            connection.channel().queue_declare(queue, passive=True)
            return True
        except pika.exceptions.ChannelClosedByBroker:
            return False


def drain(queue: str) -> list[bytes]:
    with connection_of(RABBITMQ_URL) as connection:
        channel, bodies = connection.channel(), []
        while True:
            method, _, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return bodies
            bodies.append(body)


def ensure_as(service: str, queue: str, *, publish: bool, consume: bool) -> None:
    with connection_of(service_rabbitmq_url(service)) as connection:
        broker.ensure(connection, queue, publish=publish, consume=consume)


def test_processes_starting_together_move_every_message_once_while_uploads_go_on(queues: dict[str, str]) -> None:
    from gateway.publisher import Publisher

    video = queues["VIDEO_QUEUE"]
    old = make_classic(video, OLD_MESSAGES)
    errors: list[BaseException] = []
    pending: list[str] = []

    def start(service: str, publish: bool, consume: bool) -> None:
        # What a starting service does: its declare-and-migrate step, again after a backoff while not ready.
        try:
            for _ in range(100):
                try:
                    ensure_as(service, video, publish=publish, consume=consume)
                    return
                except broker.MigrationPending as exc:
                    pending.append(str(exc))
                    threading.Event().wait(0.1)
            raise AssertionError("the queue was never ready")
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    # Three gateways (which may migrate `video`) and two converters (which may not: they wait) at once, while a
    # fourth gateway takes uploads: each is confirmed (202) or refused (503), never lost.
    publisher = Publisher(service_rabbitmq_url("gateway"), video)
    confirmed: list[bytes] = []
    refused = 0
    threads = [threading.Thread(target=start, args=("gateway", True, False)) for _ in range(3)]
    threads += [threading.Thread(target=start, args=("converter", False, True)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for n in range(30):
        body = {"new": n}
        try:
            publisher.publish(body)
            confirmed.append(json.dumps(body).encode())
        except ServiceUnavailable:
            refused += 1
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert queue_type(video) == "quorum"
    publisher.publish({"after": True})  # the gateway's connection goes on publishing to the quorum queue
    confirmed.append(json.dumps({"after": True}).encode())

    found = drain(video)
    assert sorted(found) == sorted(old + confirmed), f"{refused} refused"
    assert not exists(broker.upgrade_queue(video))
    # The earlier dead letters stay where they were, for an operator to look at.
    assert drain(video + ".dlq") == [b'{"dead": true}']


def test_the_converter_consumes_the_old_jobs_once_the_gateway_migrated_the_queue(queues: dict[str, str]) -> None:
    """The real consumer loop as the converter's user: it waits while `video` is classic, then gets every job."""
    from prometheus_client import CollectorRegistry

    from mp3core.consumer import Consumer, ConsumerMetrics

    video, mp3 = queues["VIDEO_QUEUE"], queues["MP3_QUEUE"]
    old = make_classic(video, 10)
    make_classic(mp3, 3)  # the converter, publishing to `mp3`, migrates that one itself
    seen: list[dict] = []
    lock = threading.Lock()

    def handle(message: dict) -> dict:
        with lock:
            seen.append(message)
        return {"done": message["n"]}

    loop = Consumer(service_rabbitmq_url("converter"), video, handle, publish_queue=mp3, grace_s=2,
                    metrics=ConsumerMetrics.create(CollectorRegistry()))
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        threading.Event().wait(1.5)
        assert not seen  # `video` is still classic: the converter may not move it (no write on its exchange)
        assert queue_type(mp3) == "quorum"
        ensure_as("gateway", video, publish=True, consume=False)  # a gateway starts (or publishes)
        wait_until(lambda: len(seen) == len(old), 60, "every old job consumed")
    finally:
        loop.stop()
        thread.join(15)
    assert sorted(json.dumps(m).encode() for m in seen) == sorted(old)
    assert sorted(json.loads(b)["n"] for b in drain(mp3) if b"done" not in b) == [0, 1, 2]


def test_old_consumers_hold_the_swap_back_but_nothing_waits_in_vain(queues: dict[str, str]) -> None:
    mp3 = queues["MP3_QUEUE"]
    old = make_classic(mp3, 5)
    with connection_of(RABBITMQ_URL) as old_consumer:
        # A notification of the earlier version, still consuming the classic queue (and holding nothing).
        channel = old_consumer.channel()
        channel.basic_qos(prefetch_count=1)
        channel.basic_consume(mp3, lambda *args: None)
        old_consumer.process_data_events(0.5)
        with pytest.raises(broker.MigrationPending, match="consumers"):
            ensure_as("notification", mp3, publish=True, consume=True)
        # Messages moved aside meanwhile, and what is published now waits with them.
        with connection_of(service_rabbitmq_url("converter")) as connection:
            publishing = connection.channel()
            publishing.confirm_delivery()
            broker.publish_confirmed(publishing, mp3, b'{"meanwhile": 1}', pika.BasicProperties(delivery_mode=2))
        assert queue_type(mp3) == "classic"
    # The old consumer is gone: the next start finishes the move.
    ensure_as("notification", mp3, publish=True, consume=True)
    assert queue_type(mp3) == "quorum"
    assert sorted(drain(mp3)) == sorted(old + [b'{"meanwhile": 1}'])
    assert not exists(broker.upgrade_queue(mp3))


def test_a_migration_interrupted_after_the_classic_queue_was_deleted_is_finished(queues: dict[str, str]) -> None:
    video = queues["VIDEO_QUEUE"]
    # What a gateway that died between deleting the classic queue and declaring the quorum one leaves behind.
    held = [json.dumps({"held": n}).encode() for n in range(5)]
    with connection_of(RABBITMQ_URL) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.exchange_declare(video, "direct", durable=True)
        channel.queue_declare(broker.upgrade_queue(video), durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_bind(broker.upgrade_queue(video), video, routing_key=video)
        for body in held:
            broker.publish_confirmed(channel, video, body, pika.BasicProperties(delivery_mode=2))
    ensure_as("gateway", video, publish=True, consume=False)
    assert queue_type(video) == "quorum" and not exists(broker.upgrade_queue(video))
    assert sorted(drain(video)) == sorted(held)


def test_a_fresh_installation_needs_no_migration(queues: dict[str, str]) -> None:
    video = queues["VIDEO_QUEUE"]
    ensure_as("converter", video, publish=False, consume=True)  # a consumer may create it when nothing exists
    ensure_as("gateway", video, publish=True, consume=False)
    with connection_of(RABBITMQ_URL) as connection:
        declare_queue(connection.channel(), video)
    assert queue_type(video) == "quorum" and not exists(broker.upgrade_queue(video))


def test_a_quorum_queue_with_other_arguments_is_never_taken_for_a_classic_one(queues: dict[str, str]) -> None:
    """A quorum queue declared with other arguments (a future DELIVERY_LIMIT, or a service redeclaring it) also
    refuses this version's declare; moving it would copy its messages back into itself forever."""
    video = queues["VIDEO_QUEUE"]
    other = {**queue_arguments(video), "x-delivery-limit": 20}
    with connection_of(RABBITMQ_URL) as connection:
        channel = connection.channel()
        channel.queue_declare(video, durable=True, arguments=other)
        channel.confirm_delivery()
        for n in range(3):
            channel.basic_publish("", video, json.dumps({"n": n}).encode(), pika.BasicProperties(delivery_mode=2),
                                  mandatory=True)
    with pytest.raises(RuntimeError, match="not the earlier classic queue"):
        ensure_as("gateway", video, publish=True, consume=False)
    with connection_of(service_rabbitmq_url("gateway")) as connection:
        with pytest.raises(broker.MigrationPending, match="migrated meanwhile"):
            broker.migrate(connection, video)
    assert not exists(broker.upgrade_queue(video))
    assert len(drain(video)) == 3
