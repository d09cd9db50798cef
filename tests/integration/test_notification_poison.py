"""notification's consumer against real RabbitMQ, FerretDB and SMTP servers: no one message holds up the rest.

Each test runs the real loop (mp3core's Consumer with notification's handler and Mailer) on its own queue and
database, publishes a message that cannot be delivered and a good one behind it, and checks the good one is
emailed while the bad one ends in the dead-letter queue with its job marked.
"""

from __future__ import annotations

import functools
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

pytestmark = pytest.mark.integration

import pika  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402
from pymongo import MongoClient  # noqa: E402

from mp3core.consumer import Consumer, ConsumerMetrics  # noqa: E402
from mp3core.contract import DONE, Mp3Message, dead_letter_queue, declare_queue  # noqa: E402
from notification import handler  # noqa: E402
from notification.jobs import Jobs  # noqa: E402
from notification.mailer import Mailer  # noqa: E402
from notification.metrics import Metrics  # noqa: E402
from tests.support import SmtpServer, free_port, wait_until  # noqa: E402

GOOD = "good@example.com"


class AsciiSmtpServer(SmtpServer):
    """A real SMTP server that does not announce SMTPUTF8 (many relays still do not)."""

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        self._controller = Controller(self, hostname=self.host, port=self.port, enable_SMTPUTF8=False)
        self._controller.start()


class BusySmtpServer(AsciiSmtpServer):
    """Answers 451 (try again later) for recipients at busy.example, forever: a transient error of one mail."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address.endswith("@busy.example"):
            return "451 4.2.1 mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"


@contextmanager
def notification_running(rabbit_url: str, queue: str, mongo_uri: str, smtp_port: int, *, retry_s: float,
                         give_up_s: float) -> Iterator[Metrics]:
    """The notification consumer as __main__ composes it, in a thread; stopped afterwards."""
    client = MongoClient(mongo_uri, tz_aware=True, serverSelectionTimeoutMS=5000)
    metrics = Metrics.create(CollectorRegistry())
    mailer = Mailer("127.0.0.1", smtp_port, sender="mp3converter@localhost", timeout_s=5)
    handle = functools.partial(handler.handle, jobs=Jobs(client.get_default_database()["jobs"]), send=mailer.send,
                               public_url="https://mp3converter.com", metrics=metrics, retry_s=retry_s,
                               give_up_s=give_up_s)
    loop = Consumer(rabbit_url, queue, handle, publish_queue=queue, grace_s=5,
                    metrics=ConsumerMetrics.create(CollectorRegistry()))
    thread = threading.Thread(target=loop.run, name="notification", daemon=True)
    thread.start()
    try:
        yield metrics
    finally:
        loop.stop()
        thread.join(15)
        client.close()
        assert not thread.is_alive(), "the consumer did not stop"


class Fixture:
    def __init__(self, rabbit_url: str, queue: str, mongo_uri: str) -> None:
        self.rabbit_url, self.queue = rabbit_url, queue
        self.client = MongoClient(mongo_uri, tz_aware=True, serverSelectionTimeoutMS=5000)
        self.jobs = self.client.get_default_database()["jobs"]

    def job(self, owner: str, filename: str = "holiday.mp4") -> dict:
        """Inserts a finished job and returns its `mp3` message."""
        job_id = uuid.uuid4().hex
        self.jobs.insert_one({"_id": job_id, "owner": owner, "status": DONE, "filename": filename,
                              "mp3_fid": "65a1b2c3d4e5f60718293a4b", "notified_at": None})
        return Mp3Message(job_id, "65a1b2c3d4e5f60718290000", owner, filename, DONE,
                          mp3_fid="65a1b2c3d4e5f60718293a4b").to_dict()

    def publish(self, *messages: dict) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(self.rabbit_url))
        try:
            channel = connection.channel()
            declare_queue(channel, self.queue)
            for message in messages:
                channel.basic_publish("", self.queue, json.dumps(message).encode("utf-8"),
                                      pika.BasicProperties(delivery_mode=2, content_type="application/json"))
        finally:
            connection.close()

    def dead_letters(self) -> list[dict]:
        connection = pika.BlockingConnection(pika.URLParameters(self.rabbit_url))
        try:
            channel, found = connection.channel(), []
            while True:
                method, _, body = channel.basic_get(dead_letter_queue(self.queue), auto_ack=False)
                if method is None:
                    return found
                found.append(json.loads(body))
        finally:
            connection.close()

    def get(self, message: dict) -> dict:
        return self.jobs.find_one({"_id": message["job_id"]})


@pytest.fixture
def env(rabbit_url, queues, mongo_uri) -> Iterator[Fixture]:
    fixture = Fixture(rabbit_url, queues["MP3_QUEUE"], mongo_uri)
    yield fixture
    fixture.client.close()


def _subjects(server: SmtpServer) -> list[str]:
    return [str(m["Subject"]) for m in server.messages]


def test_undeliverable_mails_are_dead_lettered_and_do_not_hold_up_the_queue(env, rabbit_url, mongo_uri):
    """Before: the non-ASCII recipient was retried forever and the mails behind it waited; the filename with a
    line separator made building the mail raise, and it was requeued as if transient."""
    server = AsciiSmtpServer("127.0.0.1", free_port())
    server.start()
    try:
        international = env.job("ánn@example.com")
        separator = env.job(GOOD, filename="a\u2028b\x85c\rd.mp4")
        good = env.job(GOOD, filename="good.mp4")
        env.publish(international, separator, good)

        with notification_running(rabbit_url, env.queue, mongo_uri, server.port, retry_s=60,
                                  give_up_s=3600) as metrics:
            wait_until(lambda: env.get(good)["notified_at"], 30, "the mail behind the poisoned ones")
            assert wait_until(lambda: env.get(international).get("notify_failed_at"), 10, "the job marked")

        assert sorted(_subjects(server)) == ["Your MP3 is ready: a b c d.mp4", "Your MP3 is ready: good.mp4"]
        assert all(rcpts == [GOOD] for _, rcpts in server.envelopes)
        assert "SMTPUTF8" in env.get(international)["notify_error"] and env.get(international)["notified_at"] is None
        # A quorum queue dead-letters asynchronously: the message arrives a moment after the reject.
        assert wait_until(lambda: [m["job_id"] for m in env.dead_letters()], 10, "the dead letter") == [international["job_id"]]
        assert metrics.emails_given_up.labels("rejected")._value.get() == 1
    finally:
        server.stop()


def test_a_mail_refused_for_now_moves_back_and_is_given_up_without_holding_up_the_queue(env, rabbit_url, mongo_uri):
    """451 for one recipient, forever: the mails behind it go out meanwhile; after give_up_s it is dead-lettered."""
    server = BusySmtpServer("127.0.0.1", free_port())
    server.start()
    try:
        busy = env.job("someone@busy.example")
        good = env.job(GOOD, filename="good.mp4")
        env.publish(busy, good)

        with notification_running(rabbit_url, env.queue, mongo_uri, server.port, retry_s=1,
                                  give_up_s=4) as metrics:
            wait_until(lambda: env.get(good)["notified_at"], 15, "the mail behind the refused one")
            assert env.get(busy).get("notify_failed_at") is None  # still being tried
            wait_until(lambda: env.get(busy).get("notify_failed_at"), 30, "the refused mail given up")

        job = env.get(busy)
        assert job["notified_at"] is None and "451" in job["notify_error"] and job["notify_attempts"] >= 2
        assert _subjects(server) == ["Your MP3 is ready: good.mp4"]
        # A quorum queue dead-letters asynchronously: the message arrives a moment after the reject.
        assert wait_until(lambda: [m["job_id"] for m in env.dead_letters()], 10, "the dead letter") == [busy["job_id"]]
        assert metrics.emails_deferred._value.get() >= 1
        assert metrics.emails_given_up.labels("unavailable")._value.get() == 1
    finally:
        server.stop()


def test_smtp_down_is_retried_and_every_mail_goes_out_once_it_is_back(env, rabbit_url, mongo_uri):
    server = SmtpServer("127.0.0.1", free_port())  # not started yet: connection refused
    first, second = env.job(GOOD, filename="first.mp4"), env.job(GOOD, filename="second.mp4")
    env.publish(first, second)
    try:
        with notification_running(rabbit_url, env.queue, mongo_uri, server.port, retry_s=1, give_up_s=3600):
            # Both messages take turns at the head of the queue while the server is down.
            wait_until(lambda: all(env.get(m).get("notify_attempts") for m in (first, second)), 30,
                       "both mails tried")
            server.start()
            wait_until(lambda: all(env.get(m)["notified_at"] for m in (first, second)), 30, "both mails sent")

        assert sorted(_subjects(server)) == ["Your MP3 is ready: first.mp4", "Your MP3 is ready: second.mp4"]
        assert env.dead_letters() == []
        assert all(env.get(m).get("notify_failed_at") is None for m in (first, second))
    finally:
        server.stop()
