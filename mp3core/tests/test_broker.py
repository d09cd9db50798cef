"""Queue topology per role, RABBITMQ_URL's list of nodes and the order they are tried in (no broker here; the
migration from classic queues runs against the real one in tests/integration/test_broker_migration.py)."""

from __future__ import annotations

import pika.exceptions
import pytest

from mp3core import broker, contract
from mp3core.settings import ConfigError, Env, split_amqp_urls


class Recorder:
    def __init__(self) -> None:
        self.calls: list = []

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))


QUORUM = {"x-queue-type": "quorum", "x-delivery-limit": contract.DELIVERY_LIMIT,
          "x-dead-letter-exchange": "video.dlx", "x-dead-letter-routing-key": "video.dead"}


def test_a_publisher_declares_the_quorum_queue_and_its_exchange_only():
    channel = Recorder()
    contract.declare_queue(channel, "video", publish=True, consume=False)
    assert channel.calls == [
        ("queue_declare", ("video",), {"durable": True, "arguments": QUORUM}),
        ("exchange_declare", ("video", "direct"), {"durable": True}),
        ("queue_bind", ("video", "video"), {"routing_key": "video"}),
    ]


def test_a_consumer_declares_the_quorum_queue_and_its_dead_letter_exchange_and_queue():
    channel = Recorder()
    contract.declare_queue(channel, "video", publish=False, consume=True)
    assert channel.calls == [
        ("queue_declare", ("video",), {"durable": True, "arguments": QUORUM}),
        ("exchange_declare", ("video.dlx", "direct"), {"durable": True}),
        ("queue_declare", ("video.dead",), {"durable": True, "arguments": {"x-queue-type": "quorum"}}),
        ("queue_bind", ("video.dead", "video.dlx"), {"routing_key": "video.dead"}),
    ]


def test_names_never_collide_with_the_classic_queues_of_earlier_versions():
    # `<queue>.dlq` was the classic dead-letter queue: redeclaring it as a quorum queue would be refused.
    for queue in (contract.VIDEO_QUEUE, contract.MP3_QUEUE):
        names = {contract.dead_letter_queue(queue), contract.dead_letter_exchange(queue),
                 broker.upgrade_queue(queue), broker.upgrade_lock(queue)}
        assert queue + ".dlq" not in names and len(names) == 4
        assert contract.exchange(queue) == queue  # publishers' exchange: the queue's own name


@pytest.mark.parametrize(("value", "urls"), [
    ("amqp://u:p@127.0.0.1:5672/%2F", ["amqp://u:p@127.0.0.1:5672/%2F"]),
    ("amqp://u:p@a:5672/%2F,amqp://u:p@b:5673/%2F", ["amqp://u:p@a:5672/%2F", "amqp://u:p@b:5673/%2F"]),
    (" amqp://u:p@a/%2F , amqps://u:p@b/%2F ", ["amqp://u:p@a/%2F", "amqps://u:p@b/%2F"]),
])
def test_rabbitmq_url_lists_one_or_more_nodes(value, urls):
    assert split_amqp_urls(value) == urls
    assert split_amqp_urls(Env({"RABBITMQ_URL": value}).amqp_url()) == urls


@pytest.mark.parametrize(("value", "message"), [
    ("amqp://a/%2F,", "RABBITMQ_URL must be one amqp:// URL, or several separated by commas, none empty"),
    (",amqp://a/%2F", "RABBITMQ_URL must be one amqp:// URL, or several separated by commas, none empty"),
    ("amqp://a/%2F,,amqp://b/%2F", "RABBITMQ_URL must be one amqp:// URL, or several separated by commas, none empty"),
    ("amqp://a/%2F,http://b/", "RABBITMQ_URL must start with amqp:// or amqps://"),
    ("amqp://a/%2F;amqp://b/%2F", None),  # one URL with an odd path: pika's problem, not a list
])
def test_a_bad_list_fails_fast_naming_the_variable(value, message):
    if message is None:
        split_amqp_urls(value)
        return
    with pytest.raises(ConfigError) as caught:
        Env({"RABBITMQ_URL": value}).amqp_url()
    assert str(caught.value) == message


def test_a_placeholder_password_in_any_url_is_refused():
    with pytest.raises(ConfigError):
        Env({"RABBITMQ_URL": "amqp://u:p@a/%2F,amqp://u:dev-only-pw@b/%2F"}).amqp_url()


def test_nodes_are_tried_in_turn_each_reconnect_starting_after_the_node_last_used():
    seen: list[str] = []
    down = {"a"}

    def connect(params):
        seen.append(params.host)
        if params.host in down:
            raise pika.exceptions.AMQPConnectionError("refused")
        return params.host

    brokers = broker.Brokers("amqp://a/%2F,amqp://b/%2F,amqp://c/%2F", lambda params: setattr(params, "socket_timeout", 5))
    assert brokers.connect(connect) == "b" and seen == ["a", "b"]  # a is down: b
    down = {"b"}  # b goes away: c first, not b again
    seen.clear()
    assert brokers.connect(connect) == "c" and seen == ["c"]
    down = {"a", "b", "c"}
    seen.clear()
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        brokers.connect(connect)
    assert seen == ["a", "b", "c"]
    assert len(brokers) == 3 and all(p.socket_timeout == 5 for p in brokers.in_turn())
