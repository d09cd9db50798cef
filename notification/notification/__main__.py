"""Composition root for `python -m notification`: settings -> adapters -> handler -> consumer loop."""

import functools
import sys

from pymongo import MongoClient

from . import config, consumer, handler, health, logs
from .jobs import Jobs
from .mailer import Mailer


def main() -> None:
    try:
        settings = config.Settings.from_env()
    except config.ConfigError as exc:
        sys.exit(f"notification: configuration error: {exc}")
    logs.setup()
    db = MongoClient(settings.mongo_uri, tz_aware=True).get_default_database()
    mailer = Mailer(settings.smtp_host, settings.smtp_port, sender=settings.smtp_from, user=settings.smtp_user,
                    password=settings.smtp_password, starttls=settings.smtp_starttls)
    handle = functools.partial(handler.handle, jobs=Jobs(db["jobs"]), send=mailer.send,
                               public_url=settings.public_url)
    loop = consumer.Consumer(settings.rabbitmq_url, settings.mp3_queue, handle)
    health.serve(settings.host, settings.metrics_port, loop.healthy)
    loop.run()


if __name__ == "__main__":
    main()
