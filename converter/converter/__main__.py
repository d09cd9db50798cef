"""Composition root for `python -m converter`: settings -> adapters -> handler -> consumer loop."""

import functools
import sys

from gridfs import GridFSBucket
from pymongo import MongoClient

from . import config, consumer, handler, health, logs
from .jobs import Jobs
from .storage import Bucket


def main() -> None:
    try:
        settings = config.Settings.from_env()
    except config.ConfigError as exc:
        sys.exit(f"converter: configuration error: {exc}")
    logs.setup()
    db = MongoClient(settings.mongo_uri, tz_aware=True).get_default_database()
    jobs = Jobs(db["jobs"])
    handle = functools.partial(handler.handle, jobs=jobs, videos=Bucket(GridFSBucket(db, "videos")),
                               mp3s=Bucket(GridFSBucket(db, "mp3s")), work_dir=settings.work_dir,
                               max_attempts=settings.max_attempts)
    loop = consumer.Consumer(settings.rabbitmq_url, settings.video_queue, handle,
                             publish_queue=settings.mp3_queue,
                             on_permanent=functools.partial(handler.fail, jobs=jobs),
                             grace_s=50)  # the Deployment allows 60 s between SIGTERM and SIGKILL
    health.serve(settings.host, settings.metrics_port, loop.healthy)
    loop.run()


if __name__ == "__main__":
    main()
