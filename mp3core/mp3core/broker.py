"""RabbitMQ plumbing every service shares: a list of broker URLs to fail over between, and the queues' topology,
declared (and migrated from the classic queues of earlier versions) before a service uses a queue."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions

from .contract import declare_queue, exchange, queue_arguments
from .settings import split_amqp_urls

log = logging.getLogger(__name__)

PRECONDITION_FAILED, RESOURCE_LOCKED, NOT_FOUND = 406, 405, 404


# --- several brokers ----------------------------------------------------------------------------------------


class Brokers:
    """RABBITMQ_URL's nodes (comma-separated URLs), connected to in turn: a reconnect tries the node after the one
    last used first, so the node that went away is tried last."""

    def __init__(self, value: str, configure: Callable[[pika.URLParameters], None] = lambda params: None) -> None:
        self._params = []
        for url in split_amqp_urls(value):
            params = pika.URLParameters(url)
            configure(params)
            self._params.append(params)
        self._next = 0

    def __len__(self) -> int:
        return len(self._params)

    def in_turn(self) -> list[pika.URLParameters]:
        """Every node once, in the order the next connect() tries them."""
        return self._params[self._next:] + self._params[:self._next]

    def connect(self, connect: Callable[[pika.URLParameters], Any] = pika.BlockingConnection) -> Any:
        """A connection to the first node in turn that answers; the next call starts after that node, so a
        reconnect after losing it tries the others first. The last error when no node answers."""
        error: Exception | None = None
        for offset in range(len(self._params)):
            index = (self._next + offset) % len(self._params)
            try:
                connection = connect(self._params[index])
            except (pika.exceptions.AMQPConnectionError, OSError) as exc:
                error = exc
                log.warning("RabbitMQ node %s:%s did not answer (%r)", self._params[index].host,
                            self._params[index].port, exc)
                continue
            self._next = (index + 1) % len(self._params)
            return connection
        assert error is not None
        raise error


# --- topology and migration ----------------------------------------------------------------------------------


class MigrationPending(Exception):
    """`queue` is still the classic queue of an earlier version and this process may not (or could not yet)
    move it: try again later. Publishing is safe meanwhile (messages wait in the migration queue)."""


def upgrade_queue(queue: str) -> str:
    """Holds the messages of `queue` while it is swapped from a classic to a quorum queue."""
    return queue + ".upgrade"


def upgrade_lock(queue: str) -> str:
    """An exclusive queue: whoever holds it migrates `queue`; the broker frees it when its connection goes."""
    return queue + ".upgrade-lock"


def classic_arguments(queue: str) -> dict[str, Any]:
    """The declare arguments of `queue` as the version before quorum queues made it (classic, dead-lettering
    through the default exchange to `<queue>.dlq`): the only queue migrate() moves."""
    return {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue + ".dlq"}


def is_classic(connection: Any, queue: str) -> bool:
    """Whether `queue` exists as the earlier version's classic queue: a declare with its exact arguments is
    accepted. Anything else refused (a quorum queue with other arguments, say) is not ours to move."""
    try:
        _on_channel(connection, lambda channel: channel.queue_declare(queue, durable=True, passive=True))
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == NOT_FOUND:
            return False
        raise
    try:
        _on_channel(connection, lambda channel: channel.queue_declare(queue, durable=True,
                                                                      arguments=classic_arguments(queue)))
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == PRECONDITION_FAILED:
            return False
        raise
    return True


def ensure(connection: Any, queue: str, *, publish: bool, consume: bool) -> None:
    """Declares `queue`'s topology for this role (contract.declare_queue), migrating a classic queue of an
    earlier version first when this role may (a publisher: it may write to the queue's exchange).

    Raises MigrationPending when the queue is still classic and this process cannot finish the move now; a
    publisher may still publish then (see migrate)."""
    try:
        _on_channel(connection, lambda channel: declare_queue(channel, queue, publish=publish, consume=consume))
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != PRECONDITION_FAILED:
            raise
        if not is_classic(connection, queue):
            # Not the earlier version's queue (e.g. a quorum queue declared with other arguments): moving it
            # would feed its own messages back to itself forever. An operator has to look.
            raise RuntimeError(f"{queue} exists with other arguments than this version declares "
                               f"{queue_arguments(queue)} and is not the earlier classic queue: not migrating it")
        if not publish:
            raise MigrationPending(f"{queue} is still a classic queue; its publishers move it to a quorum queue") from None
        migrate(connection, queue)
        _on_channel(connection, lambda channel: declare_queue(channel, queue, publish=publish, consume=consume))
    if publish:
        _finish_interrupted(connection, queue)


def migrate(connection: Any, queue: str) -> None:
    """Replaces the classic `queue` by a quorum queue of the same name without losing a message.

    Under a lock (an exclusive queue), so that processes starting together take turns:
    1. exchange `queue` is bound to the quorum queue `<queue>.upgrade`: new messages wait there;
    2. every message of the classic queue is moved there (get, publish with confirm, then ack);
    3. the classic queue is deleted only if empty and without consumers (old consumers must stop first; until
       then this raises MigrationPending and a later call goes on from step 2);
    4. the quorum queue is declared, the exchange unbound from `<queue>.upgrade` and bound to it (a publish
       in between is unroutable: refused, never lost or doubled), and the waiting messages are moved over.
    A process that dies in between leaves a state the next call goes on from (_finish_interrupted)."""
    lock_channel = connection.channel()
    try:
        lock_channel.queue_declare(upgrade_lock(queue), exclusive=True, auto_delete=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == RESOURCE_LOCKED:
            raise MigrationPending(f"another process is migrating {queue}") from None
        raise
    channels = [lock_channel]  # all closed at the end: a migration retried for hours must not pile them up
    try:
        if not is_classic(connection, queue):  # migrated by the lock's holder before us
            raise MigrationPending(f"{queue} was migrated meanwhile")
        log.warning("migrating the classic queue %s to a quorum queue", queue)
        channel = connection.channel()
        channels.append(channel)
        channel.confirm_delivery()
        holding = upgrade_queue(queue)
        channel.exchange_declare(exchange(queue), "direct", durable=True)
        channel.queue_declare(holding, durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_bind(holding, exchange(queue), routing_key=queue)
        waiting = channel.queue_declare(queue, passive=True).method.message_count
        moved = _move(channel, queue, queue, limit=waiting)
        state = channel.queue_declare(queue, passive=True).method
        if state.consumer_count:
            raise MigrationPending(f"{queue}: {moved} messages moved; waiting for the {state.consumer_count} "
                                   "consumers of the classic queue (an earlier version) to stop")
        try:
            channel.queue_delete(queue, if_empty=True, if_unused=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == PRECONDITION_FAILED:  # a message or a consumer came in meanwhile: next time
                raise MigrationPending(f"{queue} got a message or a consumer while it was moved") from None
            raise
        channel = connection.channel()
        channels.append(channel)
        channel.confirm_delivery()
        channel.queue_declare(queue, durable=True, arguments=queue_arguments(queue))
        _swap_back(channel, queue)
        log.warning("%s is a quorum queue now (%d messages moved)", queue, moved)
    finally:
        _release(lock_channel, queue, channels)


def _swap_back(channel: Any, queue: str) -> None:
    """Exchange `queue` from the holding queue to the (quorum) queue, then the held messages after it."""
    holding = upgrade_queue(queue)
    channel.queue_unbind(holding, exchange(queue), routing_key=queue)
    channel.queue_bind(queue, exchange(queue), routing_key=queue)
    # Unbound, and only the lock's holder reads it: once moved it stays empty. (Quorum queues do not support
    # queue.delete's if-empty, so that is checked here.)
    while _move(channel, holding, queue) or channel.queue_declare(holding, passive=True).method.message_count:
        pass
    channel.queue_delete(holding)


def _finish_interrupted(connection: Any, queue: str) -> None:
    """A holding queue left by a migration that stopped after the classic queue was gone: move it over."""
    try:
        _on_channel(connection, lambda channel: channel.queue_declare(upgrade_queue(queue), passive=True))
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == NOT_FOUND:  # the usual case: nothing was interrupted
            return
        raise
    lock_channel = connection.channel()
    try:
        lock_channel.queue_declare(upgrade_lock(queue), exclusive=True, auto_delete=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == RESOURCE_LOCKED:
            return  # its migrator is at work
        raise
    channels = [lock_channel]
    try:
        channel = connection.channel()
        channels.append(channel)
        channel.confirm_delivery()
        try:
            channel.queue_declare(upgrade_queue(queue), passive=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == NOT_FOUND:  # finished by the migrator that held the lock before us
                return
            raise
        log.warning("finishing an interrupted migration of %s", queue)
        _swap_back(channel, queue)
    finally:
        _release(lock_channel, queue, channels)


def _release(lock_channel: Any, queue: str, channels: list[Any]) -> None:
    """Gives the lock back and closes the migration's channels (the broker does both if the connection went)."""
    if lock_channel.is_open:
        lock_channel.queue_delete(upgrade_lock(queue))
    for channel in channels:
        if channel.is_open:
            channel.close()


def _move(channel: Any, source: str, queue: str, *, limit: int | None = None) -> int:
    """Moves the messages of `source` (at most `limit`) to exchange `queue`: each is acked only once the broker
    confirmed its copy (a crash in between leaves it in both: a duplicate, which the consumers' handlers
    tolerate, never a loss). The limit keeps a move whose copies land back in `source` from going on forever;
    the rest waits for the next call."""
    moved = 0
    while limit is None or moved < limit:
        method, properties, body = channel.basic_get(source, auto_ack=False)
        if method is None:
            return moved
        channel.basic_publish(exchange(queue), queue, body, properties, mandatory=True)
        channel.basic_ack(method.delivery_tag)
        moved += 1
    return moved


def _on_channel(connection: Any, action: Callable[[Any], Any]) -> Any:
    """Runs action on a channel of its own (a refused declare closes its channel), closed afterwards."""
    channel = connection.channel()
    try:
        return action(channel)
    finally:
        if channel.is_open:
            channel.close()


def publish_confirmed(channel: Any, queue: str, body: bytes, properties: Any) -> None:
    """Publishes to `queue`'s exchange on a confirm-mode channel: returns once the broker stored the message (on
    a majority of a quorum queue's nodes); UnroutableError or NackError otherwise."""
    channel.basic_publish(exchange(queue), queue, body, properties, mandatory=True)

