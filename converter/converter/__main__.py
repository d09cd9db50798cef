"""Composition root for `python -m converter`: settings -> adapters -> handler, reaper -> consumer loop."""

import functools
import sys
from datetime import timedelta

from gridfs import GridFSBucket
from pymongo import MongoClient

from . import config, consumer, handler, health, logs
from .jobs import Jobs
from .reaper import Reaper
from .storage import Bucket


def main() -> None:
    try:
        settings = config.Settings.from_env()
    except config.ConfigError as exc:
        sys.exit(f"converter: configuration error: {exc}")
    logs.setup()
    db = MongoClient(settings.mongo_uri, tz_aware=True).get_default_database()
    ttl = timedelta(hours=settings.mp3_ttl_hours)
    jobs = Jobs(db["jobs"], mp3_ttl=ttl)
    videos = Bucket(GridFSBucket(db, "videos"), db["videos.chunks"], db["videos.files"])
    mp3s = Bucket(GridFSBucket(db, "mp3s"), db["mp3s.chunks"], db["mp3s.files"])
    handle = functools.partial(handler.handle, jobs=jobs, videos=videos, mp3s=mp3s, work_dir=settings.work_dir,
                               max_attempts=settings.max_attempts)
    loop = consumer.Consumer(settings.rabbitmq_url, settings.video_queue, handle,
                             publish_queue=settings.mp3_queue,
                             on_permanent=functools.partial(handler.fail, jobs=jobs),
                             grace_s=50)  # the Deployment allows 60 s between SIGTERM and SIGKILL
    reaper = Reaper(jobs=jobs, videos=videos, mp3s=mp3s, ttl=ttl, interval_s=settings.reaper_interval_s).start()
    health.serve(settings.host, settings.metrics_port, loop.healthy)
    try:
        loop.run()  # returns after SIGTERM/SIGINT once the job in progress settled
    finally:
        reaper.stop()


if __name__ == "__main__":
    main()
