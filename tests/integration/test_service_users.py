"""Each service's own RabbitMQ user (made by `make infra` with rabbit/service-users.sh) against the real broker:
it can do what its service does with its queues, and the broker refuses it the other services' queues. Every
message goes through the queue's own exchange: no user may write to the default exchange, so no user can put a
message into a queue it does not feed.

The queues are the tests' unique video_<hex>/mp3_<hex> names, which the local users are allowed besides
`video` and `mp3` (scripts/infra.sh); the cluster's users get the same rules without that suffix.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

pytestmark = pytest.mark.integration

import pika  # noqa: E402
import pika.exceptions  # noqa: E402

from mp3core import broker  # noqa: E402
from mp3core.contract import dead_letter_exchange, dead_letter_queue, declare_queue  # noqa: E402
from tests.support import RABBITMQ_URL, service_rabbitmq_url, unique, wait_until  # noqa: E402


@contextmanager
def channel_of(url: str) -> Iterator[Any]:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()  # a refused publish then fails here instead of passing silently
        yield channel
    finally:
        if connection.is_open:
            connection.close()


def as_user(service: str, action: Callable[[Any], Any]) -> Any:
    with channel_of(service_rabbitmq_url(service)) as channel:
        return action(channel)


def publish(queue: str, body: bytes = b"{}") -> Callable[[Any], None]:
    """What the services do: publish to the queue's own exchange."""
    return lambda channel: broker.publish_confirmed(channel, queue, body, pika.BasicProperties(delivery_mode=2))


def publish_via(exchange: str, routing_key: str, body: bytes = b"{}") -> Callable[[Any], None]:
    return lambda channel: channel.basic_publish(exchange, routing_key, body, pika.BasicProperties(delivery_mode=2),
                                                 mandatory=True)


def declare(queue: str, *, publish: bool, consume: bool) -> Callable[[Any], None]:
    return lambda channel: declare_queue(channel, queue, publish=publish, consume=consume)


def get(queue: str) -> Callable[[Any], Any]:
    def action(channel: Any) -> Any:
        method, _, body = channel.basic_get(queue, auto_ack=True)
        return body if method else None

    return action


@pytest.fixture
def names(queues: dict[str, str]) -> dict[str, str]:
    """The tests' queues, declared by the admin account first so a refusal is never a missing queue."""
    with channel_of(RABBITMQ_URL) as channel:
        for queue in queues.values():
            declare_queue(channel, queue)
    return {"video": queues["VIDEO_QUEUE"], "mp3": queues["MP3_QUEUE"]}


def test_each_user_does_its_service_s_part_of_the_flow(names: dict[str, str]) -> None:
    video, mp3 = names["video"], names["mp3"]
    # gateway: declares its part of `video` (queue, exchange), publishes an upload's message.
    as_user("gateway", lambda channel: (declare(video, publish=True, consume=False)(channel),
                                        publish(video, b'{"n": 1}')(channel)))
    # converter: consumes `video` (queue, dead letters), publishes to `mp3`.
    as_user("converter", lambda channel: (declare(video, publish=False, consume=True)(channel),
                                          declare(mp3, publish=True, consume=False)(channel)))
    assert as_user("converter", get(video)) == b'{"n": 1}'
    as_user("converter", publish(mp3, b'{"n": 2}'))
    # notification: consumes `mp3`, and puts a mail it cannot send yet back at the end.
    as_user("notification", declare(mp3, publish=True, consume=True))
    assert as_user("notification", get(mp3)) == b'{"n": 2}'
    as_user("notification", publish(mp3, b'{"n": 3}'))
    assert as_user("notification", get(mp3)) == b'{"n": 3}'


def test_each_user_runs_its_service_s_broker_code(names: dict[str, str]) -> None:
    """The services' own declare-and-migrate step (broker.ensure) passes with their users' permissions."""
    video, mp3 = names["video"], names["mp3"]
    for service, queue, roles in (("gateway", video, [dict(publish=True, consume=False)]),
                                  ("converter", video, [dict(publish=False, consume=True)]),
                                  ("converter", mp3, [dict(publish=True, consume=False)]),
                                  ("notification", mp3, [dict(publish=True, consume=True)])):
        connection = pika.BlockingConnection(pika.URLParameters(service_rabbitmq_url(service)))
        try:
            for role in roles:
                broker.ensure(connection, queue, **role)
        finally:
            connection.close()


def test_a_rejected_message_is_dead_lettered_by_the_broker(names: dict[str, str]) -> None:
    video = names["video"]
    as_user("gateway", publish(video, json.dumps({"bad": True}).encode()))

    def reject(channel: Any) -> None:
        method, _, _ = channel.basic_get(video)
        assert method is not None
        channel.basic_reject(method.delivery_tag, requeue=False)

    as_user("converter", reject)
    # Nobody but an operator (the admin account) reads a dead-letter queue. A quorum queue dead-letters
    # asynchronously: the message arrives a moment after the reject.
    with channel_of(RABBITMQ_URL) as channel:
        assert wait_until(lambda: get(dead_letter_queue(video))(channel), 10, "the dead letter") == b'{"bad": true}'


REFUSED = [
    # (service, what it must not do): an action on the test's queues, by kind
    ("gateway", "consume mp3", lambda q: get(q["mp3"])),
    ("gateway", "declare mp3", lambda q: lambda channel: declare_queue(channel, q["mp3"])),
    ("gateway", "read the video dead letters", lambda q: get(dead_letter_queue(q["video"]))),
    ("converter", "read the video dead letters", lambda q: get(dead_letter_queue(q["video"]))),
    ("converter", "read the mp3 dead letters", lambda q: get(dead_letter_queue(q["mp3"]))),
    ("notification", "consume video", lambda q: get(q["video"])),
    ("notification", "declare video", lambda q: lambda channel: declare_queue(channel, q["video"])),
    ("notification", "read the mp3 dead letters", lambda q: get(dead_letter_queue(q["mp3"]))),
    ("notification", "delete video", lambda q: lambda channel: channel.queue_delete(q["video"])),
    ("gateway", "delete mp3", lambda q: lambda channel: channel.queue_delete(q["mp3"])),
    ("converter", "declare another queue", lambda q: lambda channel: channel.queue_declare(unique("other"))),
    ("gateway", "publish through another exchange", lambda q: lambda channel: channel.basic_publish("amq.direct", q["video"], b"{}")),
    # No one writes to the default exchange, which would reach any queue by its name: ...
    ("gateway", "publish to mp3 through the default exchange", lambda q: publish_via("", q["mp3"])),
    ("gateway", "publish to video through the default exchange", lambda q: publish_via("", q["video"])),
    ("converter", "publish to video through the default exchange", lambda q: publish_via("", q["video"])),
    ("notification", "publish to video through the default exchange", lambda q: publish_via("", q["video"])),
    ("notification", "publish to mp3 through the default exchange", lambda q: publish_via("", q["mp3"])),
    # ... nor to another service's queue through that queue's exchange ...
    ("gateway", "publish to mp3", lambda q: publish(q["mp3"])),
    ("notification", "publish to video", lambda q: publish(q["video"])),
    ("converter", "publish to video", lambda q: publish(q["video"])),
    # ... nor route its own exchange into another queue, nor write into the dead letters it does not produce.
    ("gateway", "bind its exchange to mp3", lambda q: lambda channel: channel.queue_bind(q["mp3"], q["video"], q["mp3"])),
    ("converter", "bind its exchange to video", lambda q: lambda channel: channel.queue_bind(q["video"], q["mp3"], q["video"])),
    ("notification", "bind its exchange to video", lambda q: lambda channel: channel.queue_bind(q["video"], q["mp3"], q["video"])),
    ("gateway", "publish mp3 dead letters", lambda q: publish_via(dead_letter_exchange(q["mp3"]), dead_letter_queue(q["mp3"]))),
    ("notification", "publish video dead letters", lambda q: publish_via(dead_letter_exchange(q["video"]), dead_letter_queue(q["video"]))),
    ("gateway", "declare the dead-letter queue", lambda q: lambda channel: channel.queue_declare(
        dead_letter_queue(q["video"]), durable=True, arguments={"x-queue-type": "quorum"})),
    ("notification", "declare an exchange", lambda q: lambda channel: channel.exchange_declare(unique("ex"), "fanout")),
]


@pytest.mark.parametrize(("service", "what", "action"), REFUSED, ids=[f"{s}-{w}" for s, w, _ in REFUSED])
def test_the_broker_refuses_a_user_what_its_service_never_does(names: dict[str, str], service: str, what: str,
                                                              action: Callable[[dict[str, str]], Callable[[Any], Any]]) -> None:
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        as_user(service, action(names))
    assert refused.value.reply_code == 403, refused.value
    assert "ACCESS_REFUSED" in refused.value.reply_text


@pytest.mark.parametrize("service", ["gateway", "converter", "notification"])
def test_a_wrong_password_is_refused(service: str) -> None:
    url = service_rabbitmq_url(service)
    user_info, host = url.split("://", 1)[1].split("@", 1)
    wrong = f"amqp://{user_info.split(':', 1)[0]}:not-the-password@{host}"
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(pika.URLParameters(wrong))
