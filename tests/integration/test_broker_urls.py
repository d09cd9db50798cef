"""RABBITMQ_URL with several nodes, against the real broker: when the node a service is connected to goes away,
its consumer and its publisher carry on through the next URL by themselves.

"A node" here is a TCP relay in front of the local broker, which the test can cut like a stopped node; the
next URL reaches the broker directly. (The three-node cluster, quorum queues failing over included, is
tests/e2e/test_broker_failover.py.)
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.integration

import pika  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from mp3core.consumer import Consumer, ConsumerMetrics  # noqa: E402
from mp3core.contract import declare_queue  # noqa: E402
from tests.support import RABBITMQ_PORT, RABBITMQ_URL, free_port, wait_until  # noqa: E402


class Relay:
    """Forwards 127.0.0.1:<port> to the broker; cut() closes it and every connection through it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.accepted = 0
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", RABBITMQ_PORT))
            with self._lock:
                self.accepted += 1
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self._server.close()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()


@pytest.fixture
def relay() -> Iterator[Relay]:
    relay = Relay()
    yield relay
    relay.cut()


def count(queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


def test_the_publisher_moves_to_the_next_node_when_its_node_goes(relay: Relay, queues: dict[str, str]) -> None:
    from gateway.publisher import Publisher

    video = queues["VIDEO_QUEUE"]
    publisher = Publisher(f"{relay.url},{RABBITMQ_URL}", video)
    publisher.publish({"n": 1})
    assert relay.accepted == 1  # the first URL first
    relay.cut()
    publisher.publish({"n": 2})  # no 503: the lost connection is replaced by one to the next node at once
    assert count(video) == 2


def test_the_publisher_skips_a_node_that_is_down_at_start(queues: dict[str, str]) -> None:
    from gateway.publisher import Publisher

    video = queues["VIDEO_QUEUE"]
    down = f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"
    Publisher(f"{down},{RABBITMQ_URL}", video).publish({"n": 1})
    assert count(video) == 1


def test_the_consumer_reconnects_to_the_next_node_and_goes_on(relay: Relay, queues: dict[str, str]) -> None:
    video, mp3 = queues["VIDEO_QUEUE"], queues["MP3_QUEUE"]
    handled: list[dict] = []
    loop = Consumer(f"{relay.url},{RABBITMQ_URL}", video, lambda message: handled.append(message) or message,
                    publish_queue=mp3, grace_s=2, metrics=ConsumerMetrics.create(CollectorRegistry()))
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
        channel = connection.channel()
        declare_queue(channel, video)  # the exchange too (the gateway's part)

        def publish(n: int) -> None:
            channel.basic_publish(video, video, json.dumps({"n": n}).encode(), pika.BasicProperties(delivery_mode=2))

        wait_until(lambda: loop.liveness.state == "connected", 30, "the consumer connected")
        assert relay.accepted == 1
        publish(1)
        wait_until(lambda: handled == [{"n": 1}], 30, "the first message handled through the first node")
        relay.cut()
        wait_until(lambda: loop.liveness.state == "connecting", 10, "the consumer noticed")
        publish(2)
        wait_until(lambda: handled == [{"n": 1}, {"n": 2}], 30, "the second message handled through the next node")
        assert loop.healthy() and relay.accepted == 1
        connection.close()
    finally:
        loop.stop()
        thread.join(15)
    assert count(mp3) == 2  # and both follow-ups were published
