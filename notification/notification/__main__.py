"""Composition root for `python -m notification`: settings -> adapters -> handler -> consumer loop."""

import functools

from prometheus_client import REGISTRY

from mp3core import health, logs, mongo, settings
from mp3core.consumer import Consumer, ConsumerMetrics

from . import handler
from .config import Settings
from .jobs import Jobs
from .mailer import Mailer
from .metrics import Metrics


def main() -> None:
    config = settings.load("notification", Settings.from_env)
    logs.setup()
    db = mongo.connect(config.mongo_uri)
    mailer = Mailer(config.smtp_host, config.smtp_port, sender=config.smtp_from, user=config.smtp_user,
                    password=config.smtp_password, starttls=config.smtp_starttls)
    handle = functools.partial(handler.handle, jobs=Jobs(db["jobs"]), send=mailer.send,
                               public_url=config.public_url, metrics=Metrics.create(REGISTRY),
                               retry_s=config.smtp_retry_s, give_up_s=config.notify_give_up_s)
    # The handler's follow-up message is the message itself, moved to the back of its own queue (see handler).
    loop = Consumer(config.rabbitmq_url, config.mp3_queue, handle, publish_queue=config.mp3_queue,
                    grace_s=config.shutdown_grace_s, metrics=ConsumerMetrics.create(REGISTRY))
    health.serve(config.host, config.metrics_port, loop.healthy, REGISTRY)
    loop.run()


if __name__ == "__main__":
    main()
