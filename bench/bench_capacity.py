"""Capacity figures for docs/capacity.md: ffmpeg CPU per minute of audio, the converter's CPU per job (so jobs per
minute per core), the gateway's CPU per uploaded MB (MB/s per core) and GridFS write/read throughput through
mp3core's chunk writer and reader on a client with the cluster's durability settings (mp3core.mongo.connect).

CPU seconds are the figures to plan with: they hardly move when the shared machine is busy, while wall times and
MB/s do (the load average at the start is recorded with the results)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import psutil

import common as c
from bench_convert import Converter
from bench_transfer import drop_bucket, gateway_upload, measured

sys.path.insert(0, str(c.ROOT / "converter"))
from converter.convert import ffmpeg_args  # noqa: E402  (the converter's exact command)

NAME = "capacity"
ROUNDS = 1 if c.SMOKE else 2
# Minutes of audio per input (a 720p H.264 video with AAC audio; the converter decodes only the audio).
AUDIO_MINUTES = (0.05,) if c.SMOKE else (1, 10, 30)
# Converter jobs per input length: the short ones show the fixed cost of a job, the long one the cost per minute.
JOBS = {"60 s clip": 1 if c.SMOKE else 4, "10 min clip": 1 if c.SMOKE else 2}
TRANSFER_MIB = 4 if c.SMOKE else 256


def ffmpeg_per_minute(src: Path, out: Path) -> dict[str, Any]:
    info = c.media_info(src)
    m = c.run_measured(ffmpeg_args(src, out / "capacity.mp3"))
    return {"cpu_s": round(m.cpu_s, 3), "wall_s": round(m.wall_s, 3), "audio_min": info["duration_s"] / 60,
            "cpu_s_per_audio_min": round(m.cpu_s / (info["duration_s"] / 60), 4)}


def gridfs_round(uri: str, src: Path) -> dict[str, Any]:
    """One write and one read of src through ChunkWriter/ChunkReader on a mongo.connect() client."""
    from mp3core import mongo
    from mp3core.gridchunks import ChunkReader, ChunkWriter

    db = mongo.connect(uri)
    try:
        drop_bucket(db, "capacity")
        size = src.stat().st_size

        def write() -> str:
            writer = ChunkWriter(db["capacity.files"], db["capacity.chunks"], src.name, {"owner": "bench"})
            with src.open("rb") as data:
                while piece := data.read(c.MIB):
                    writer.write(piece)
            writer.close()
            return str(writer.file_id)

        wrote = measured(write)
        files = db["capacity.files"].find_one()

        def read() -> int:
            total = 0
            with ChunkReader(db["capacity.chunks"], files["_id"], files["length"]) as reader:
                for chunk in reader.chunks():
                    total += len(chunk)
            return total

        read_run = measured(read)
        if read_run["value"] != size:
            raise RuntimeError(f"read {read_run['value']} bytes of {size}")
        drop_bucket(db, "capacity")
        return {"bytes": size,
                "write": {**wrote, "mb_s": round(size / 1e6 / wrote["wall_s"], 1)},
                "read": {**read_run, "mb_s": round(size / 1e6 / read_run["wall_s"], 1)}}
    finally:
        db.client.close()


def summary(values: list[float]) -> float | None:
    return round(c.median(values), 4) if values else None


def main() -> int:
    c.prepare()
    started = time.monotonic()
    errors = c.Errors()
    c.log("making media (cached in bench/.work)")
    base = c.clip(3 if c.SMOKE else 60)
    out = c.WORK / "out"
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {}

    # 1. ffmpeg alone, the converter's command line: CPU per minute of audio at three lengths.
    per_minute: list[float] = []
    for minutes in AUDIO_MINUTES:
        src = base if minutes == 1 else c.looped(base, seconds=minutes * 60)
        for r in range(ROUNDS):
            c.log(f"ffmpeg: {minutes:g} min of audio, round {r + 1}/{ROUNDS}")
            run = errors.run(f"ffmpeg {minutes:g} min", lambda src=src: ffmpeg_per_minute(src, out))
            if run is not None:
                rows.append({"kind": "ffmpeg", "audio_minutes": minutes, **run})
                per_minute.append(run["cpu_s_per_audio_min"])
    figures["ffmpeg_cpu_s_per_audio_min"] = summary(per_minute)

    # 2. The converter service: CPU per job (its process tree: Python, ffmpeg, GridFS I/O) at two lengths.
    inputs = {"60 s clip": base, "10 min clip": c.looped(base, seconds=6 if c.SMOKE else 600)}
    job_cpu: dict[str, list[float]] = {label: [] for label in inputs}
    fdb_cpu: dict[str, list[float]] = {label: [] for label in inputs}
    minutes_of: dict[str, float] = {}
    with c.lab("bcap") as lab:
        publisher = c.Publisher(lab.env["VIDEO_QUEUE"])
        converter = Converter(lab, publisher)
        try:
            for label, src in inputs.items():
                info = c.media_info(src)
                minutes_of[label] = info["duration_s"] / 60
                for n in range(JOBS[label]):
                    c.log(f"converter: {label}, job {n + 1}/{JOBS[label]}")
                    run = errors.run(f"converter {label}",
                                     lambda src=src, info=info: converter.job(src, timeout=900 + info["duration_s"]))
                    if run is not None:
                        rows.append({"kind": "converter job", "input": label, "audio_minutes": minutes_of[label],
                                     "cpu_s": round(run["cpu_s"], 3), "wall_s": round(run["wall_s"], 3),
                                     "ferretdb_cpu_s": round(run["ferretdb_cpu_s"], 3)})
                        job_cpu[label].append(run["cpu_s"])
                        fdb_cpu[label].append(run["ferretdb_cpu_s"])
        finally:
            publisher.close()
    short, long = (summary(job_cpu[label]) for label in inputs)
    if short is not None and long is not None:
        # CPU per job = fixed + per_minute * minutes of audio, through the two lengths measured.
        (m1, m2) = (minutes_of[label] for label in inputs)
        slope = (long - short) / (m2 - m1)
        figures.update({"converter_cpu_s_job_60s": short, "converter_cpu_s_job_10min": long,
                        "converter_cpu_s_per_audio_min": round(slope, 4),
                        "converter_cpu_s_fixed_per_job": round(short - slope * m1, 4),
                        "ferretdb_cpu_s_job_60s": summary(fdb_cpu["60 s clip"]),
                        "ferretdb_cpu_s_job_10min": summary(fdb_cpu["10 min clip"])})

    # 3. GridFS through mp3core on a client with w:majority, majority reads and retryable writes.
    src = c.looped(base, max_bytes=TRANSFER_MIB * c.MIB)
    tag = c.unique("bcapfs")
    writes, reads = [], []
    try:
        for r in range(ROUNDS):
            c.log(f"GridFS: write and read {TRANSFER_MIB} MiB, round {r + 1}/{ROUNDS}")
            run = errors.run("gridfs", lambda: gridfs_round(f"{c.MONGO_URI}/{tag}", src))
            if run is not None:
                rows.append({"kind": "gridfs", **run})
                writes.append(run["write"])
                reads.append(run["read"])
    finally:
        import pymongo

        client = pymongo.MongoClient(c.MONGO_URI, serverSelectionTimeoutMS=5000)
        client.drop_database(tag)
        client.close()
    if writes:
        gb = src.stat().st_size / 1e9
        figures.update({"gridfs_write_mb_s": summary([w["mb_s"] for w in writes]),
                        "gridfs_read_mb_s": summary([x["mb_s"] for x in reads]),
                        "gridfs_write_ferretdb_cpu_s_per_gb": summary([w["ferretdb_cpu_s"] / gb for w in writes]),
                        "gridfs_read_ferretdb_cpu_s_per_gb": summary([x["ferretdb_cpu_s"] / gb for x in reads]),
                        "gridfs_write_client_cpu_s_per_gb": summary([w["client_cpu_s"] / gb for w in writes]),
                        "gridfs_read_client_cpu_s_per_gb": summary([x["client_cpu_s"] / gb for x in reads])})

    # 4. The gateway: a streamed multipart upload; the worker's CPU per MB is what sizes gateway replicas.
    uploads = []
    with c.lab("bcapgw", auth=True) as lab:
        lab.start("auth")
        gateway = lab.start("gateway")
        token = lab.token()
        worker = psutil.Process(gateway.proc.pid).children()[0]
        for r in range(ROUNDS + 1):  # the first is a warm-up
            drop_bucket(lab.db, "videos")
            c.log(f"gateway: upload {TRANSFER_MIB} MiB, round {r}/{ROUNDS}{' (warm-up)' if r == 0 else ''}")
            run = errors.run("gateway upload", lambda: gateway_upload(lab, token, src, worker))
            if run is not None and r > 0:
                size = src.stat().st_size
                run.pop("value")
                run.update({"bytes": size, "mb_s": round(size / 1e6 / run["wall_s"], 1),
                            "mb_per_gateway_cpu_s": round(size / 1e6 / max(run["gateway_cpu_s"], 0.01), 1)})
                rows.append({"kind": "gateway upload", **run})
                uploads.append(run)
    if uploads:
        gb = src.stat().st_size / 1e9
        figures.update({"gateway_upload_mb_s": summary([u["mb_s"] for u in uploads]),
                        "gateway_upload_mb_per_gateway_cpu_s": summary([u["mb_per_gateway_cpu_s"] for u in uploads]),
                        "gateway_upload_ferretdb_cpu_s_per_gb": summary([u["ferretdb_cpu_s"] / gb for u in uploads])})

    for key, value in figures.items():
        c.log(f"{key}: {value}")
    c.write_results(NAME, rows, [], errors, started, extra={"figures": figures})
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
