"""Composition root for `python -m converter`: settings -> adapters -> handler, reaper -> consumer loop."""

import functools
from datetime import timedelta

from prometheus_client import REGISTRY

from mp3core import health, logs, mongo, settings
from mp3core.consumer import Consumer, ConsumerMetrics

from . import handler
from .config import Settings
from .convert import Limits
from .jobs import Jobs
from .metrics import Metrics
from .reaper import Reaper
from .storage import Bucket


def main() -> None:
    config = settings.load("converter", Settings.from_env)
    logs.setup()
    db = mongo.connect(config.mongo_uri)
    ttl = timedelta(hours=config.mp3_ttl_hours)
    metrics = Metrics.create(REGISTRY)
    limits = Limits(max_duration_s=config.max_duration_s, timeout_s=config.ffmpeg_timeout_s,
                    cpu_s=config.ffmpeg_cpu_s, memory_mb=config.ffmpeg_memory_mb)
    jobs, videos, mp3s = Jobs(db["jobs"], mp3_ttl=ttl), Bucket(db, "videos"), Bucket(db, "mp3s")
    handle = functools.partial(handler.handle, jobs=jobs, videos=videos, mp3s=mp3s, work_dir=config.work_dir,
                               max_attempts=config.max_attempts, metrics=metrics, limits=limits)
    loop = Consumer(config.rabbitmq_url, config.video_queue, handle, publish_queue=config.mp3_queue,
                    on_permanent=functools.partial(handler.fail, jobs=jobs, metrics=metrics),
                    grace_s=config.shutdown_grace_s, metrics=ConsumerMetrics.create(REGISTRY))
    reaper = Reaper(jobs=jobs, videos=videos, mp3s=mp3s, ttl=ttl, interval_s=config.reaper_interval_s,
                    metrics=metrics, job_retention=timedelta(days=config.job_retention_days),
                    orphan_grace=timedelta(hours=config.orphan_grace_h),
                    orphan_sweep_s=config.orphan_sweep_s).start()
    health.serve(config.host, config.metrics_port, loop.healthy, REGISTRY)
    try:
        loop.run()  # returns after SIGTERM/SIGINT once the job in progress settled
    finally:
        reaper.stop()


if __name__ == "__main__":
    main()
