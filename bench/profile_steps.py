"""Step profile: the converter's own adapters and ffmpeg calls timed one by one, and FerretDB's GridFS query plan."""

from __future__ import annotations

import collections
import cProfile
import io
import os
import pstats
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from bson import ObjectId
from gridfs import GridFSBucket

import common as c

sys.path.insert(0, str(c.ROOT / "converter"))
from converter.convert import to_mp3  # noqa: E402
from converter.jobs import Jobs  # noqa: E402
from converter.storage import Bucket  # noqa: E402

NAME = "profile"
BESIDE_MB = 8 if c.SMOKE else 200  # other files in the bucket while a small one is read and deleted
BATCH_MB = 4 if c.SMOKE else 64  # written per chunks-per-insert setting
SPY_MB = 4 if c.SMOKE else 256  # uploaded through the gateway while py-spy samples its worker
READ_MB = 4 if c.SMOKE else 512  # read back by the converter's reader and by a plain chunk loop
MP3_MB = 1 if c.SMOKE else 31  # a 192 kbit/s MP3 of a 22-minute video (the 1 GiB test video's length)
CHUNK = 255 * 1024  # GridFS's default chunk size, which the gateway and the converter both use


def cpu() -> tuple[float, float]:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def timed(steps: list[dict[str, Any]], name: str, fn: Callable[[], Any], profile: bool = False) -> Any:
    """Runs one step; records wall, this process's CPU and its children's (ffmpeg, ffprobe) CPU."""
    profiler = cProfile.Profile() if profile else None
    (own0, kids0), t0 = cpu(), time.perf_counter()
    if profiler:
        profiler.enable()
    result = fn()
    if profiler:
        profiler.disable()
    (own1, kids1), wall = cpu(), time.perf_counter() - t0
    step = {"step": name, "wall_s": round(wall, 3), "own_cpu_s": round(own1 - own0, 3),
            "children_cpu_s": round(kids1 - kids0, 3)}
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(8)
        step["top_functions"] = [line.strip() for line in out.getvalue().splitlines()
                                 if line.strip() and line.strip()[0].isdigit()][:8]
    steps.append(step)
    return result


def buckets(db: Any) -> tuple[Bucket, Bucket]:
    """The converter's two buckets, wired exactly as converter/__main__.py wires them (its chunk reader and writer)."""
    return Bucket(db, "videos"), Bucket(db, "mp3s")


def transfer_memory(db: Any, src: Path, work: Path) -> list[dict[str, Any]]:
    """This process's CPU and peak RSS growth (sampled) for: the converter's download (Bucket.download_to) against
    a plain loop writing each chunk as it comes, and the converter's MP3 store (Bucket.replace) of an MP3 as large
    as a 20-minute video gives (192 kbit/s)."""
    videos, mp3s = buckets(db)
    fid = c.stage_video(db, src)["video_fid"]
    mp3 = work / "mp3"
    with mp3.open("wb") as out:
        for _ in range(MP3_MB):
            out.write(os.urandom(c.MIB))
    me = psutil.Process()

    def plain() -> None:
        with (work / "plain").open("wb") as out:
            for chunk in db["videos.chunks"].find({"files_id": ObjectId(fid)}, sort=[("n", 1)], batch_size=16):
                out.write(chunk["data"])

    out = []
    for name, size, fn in (
            ("download: converter Bucket.download_to", src.stat().st_size, lambda: videos.download_to(fid, work / "v")),
            ("download: plain chunk loop", src.stat().st_size, plain),
            ("store MP3: converter Bucket.replace", MP3_MB * c.MIB,
             lambda: mp3s.replace(str(ObjectId()), "a.mp3", mp3, {"owner": "bench"}))):
        base = c.rss_mb(me)
        # thread_time: this thread's CPU only, not the memory sampler's.
        cpu0, t0 = time.thread_time(), time.perf_counter()
        with c.TreeMemory(me) as memory:
            fn()
        cpu1, wall = time.thread_time(), time.perf_counter() - t0
        out.append({"step": name, "bytes": size, "cpu_s": round(cpu1 - cpu0, 2), "wall_s": round(wall, 1),
                    "rss_growth_mb": round(memory.result()["peak_rss_mb"] - base, 1)})
        for leftover in ("v", "plain"):
            (work / leftover).unlink(missing_ok=True)
    return out


def job_steps(db: Any, src: Path, work: Path) -> list[dict[str, Any]]:
    """What converter/handler.py does for one job, step by step, with the converter's own code."""
    steps: list[dict[str, Any]] = []
    videos, mp3s = buckets(db)
    jobs = Jobs(db["jobs"])
    message = c.stage_video(db, src)
    job_id, fid = message["job_id"], message["video_fid"]
    timed(steps, "jobs.get + start_attempt + plan_mp3_fid", lambda: (
        jobs.get(job_id), jobs.start_attempt(job_id), jobs.plan_mp3_fid(job_id, str(ObjectId()))))
    timed(steps, "download video from GridFS", lambda: videos.download_to(fid, work / "video"), profile=True)
    timed(steps, "ffmpeg (also reports the duration)", lambda: to_mp3(work / "video", work / "audio.mp3"))
    # Not a step any more, for comparison: the probe the converter ran before ffmpeg until ffmpeg's report replaced it.
    timed(steps, "comparison: bare ffprobe (no longer run)", lambda: subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(work / "video")],
        stdin=subprocess.DEVNULL, capture_output=True, check=True, timeout=120))
    mp3_fid = str(ObjectId())
    timed(steps, "store mp3 in GridFS (replace)", lambda: mp3s.replace(mp3_fid, "a.mp3", work / "audio.mp3", {"owner": "x"}))
    timed(steps, "jobs.mark_done", lambda: jobs.mark_done(job_id, mp3_fid))
    timed(steps, "delete video from GridFS", lambda: videos.delete(fid))
    return steps


def scan_evidence(db: Any, beside: Path) -> dict[str, Any]:
    """FerretDB reads GridFS chunks by scanning the whole bucket: a small file's read cost grows with its neighbours."""
    db["scan.files"].drop()  # a retry starts from an empty bucket
    db["scan.chunks"].drop()
    bucket = GridFSBucket(db, "scan")
    small = bucket.upload_from_stream("small", io.BytesIO(b"\0" * 300_000))

    def read() -> float:
        t0 = time.perf_counter()
        for _ in db["scan.chunks"].find({"files_id": small}, sort=[("n", 1)], batch_size=16):
            pass
        return round(time.perf_counter() - t0, 3)

    alone = read()
    with beside.open("rb") as data:
        bucket.upload_from_stream("beside", data)
    crowded = read()
    t0 = time.perf_counter()
    bucket.delete(small)
    delete = round(time.perf_counter() - t0, 3)
    plan = db.command("explain", {"find": "scan.chunks", "filter": {"files_id": small}, "sort": {"n": 1}})
    return {"small_file_bytes": 300_000, "beside_bytes": beside.stat().st_size,
            "read_small_alone_s": alone, "read_small_with_beside_s": crowded, "delete_small_with_beside_s": delete,
            "plan": plan.get("queryPlanner"), "filter_pushdown": plan.get("filterPushdown"),
            "indexes": sorted(db["scan.chunks"].index_information())}


def insert_batching(db: Any) -> list[dict[str, Any]]:
    """GridFS chunks written with 1..192 chunks per insert_many: what batching buys on this server."""
    fdb = c.ferretdb()
    data, count = os.urandom(CHUNK), BATCH_MB * c.MIB // CHUNK
    out = []
    for per_insert in (1, 4, 16, 64, 192):
        db["batch.chunks"].drop()
        db["batch.chunks"].create_index([("files_id", 1), ("n", 1)], unique=True)
        fid, n = ObjectId(), 0
        fdb0, t0 = c.proc_cpu(fdb), time.perf_counter()
        while n < count:
            k = min(per_insert, count - n)
            db["batch.chunks"].insert_many([{"files_id": fid, "n": n + i, "data": data} for i in range(k)])
            n += k
        wall = time.perf_counter() - t0
        out.append({"chunks_per_insert": per_insert, "mb_s": round(count * CHUNK / 1e6 / wall, 1),
                    "ferretdb_cpu_s_per_gb": round((c.proc_cpu(fdb) - fdb0) / (count * CHUNK / 1e9), 1)})
    db["batch.chunks"].drop()
    return out


def gateway_upload_profile() -> dict[str, Any]:
    """py-spy samples the gateway worker during one upload: where its time goes, by function."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    src = c.looped(c.clip(3 if c.SMOKE else 60), max_bytes=SPY_MB * c.MIB)
    raw = c.WORK / "gateway-upload.pyspy.txt"
    with c.lab("bspy", auth=True) as lab:
        lab.start("auth")
        gateway = lab.start("gateway")
        token = lab.token()
        c.upload(lab.gateway_url, token, c.clip(2 if c.SMOKE else 10))  # warm-up, not sampled
        worker = psutil.Process(gateway.proc.pid).children()[0]
        # --idle: count time blocked in I/O too, since waiting on FerretDB is exactly what we want to see.
        raw.unlink(missing_ok=True)
        spy = subprocess.Popen([py_spy, "record", "--pid", str(worker.pid), "--rate", "200", "--idle",
                                "--format", "raw", "--output", str(raw), "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # py-spy attaches
        t0 = time.perf_counter()
        status, body = c.upload(lab.gateway_url, token, src)
        wall = time.perf_counter() - t0
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        spy.wait(60)
        if status != 202:
            raise RuntimeError(f"upload answered {status}: {body}")
        if not raw.exists():
            raise RuntimeError(f"py-spy wrote no profile (exit {spy.returncode}); it needs ptrace rights")
    return {"bytes": src.stat().st_size, "wall_s": round(wall, 2), "mb_s": round(src.stat().st_size / 1e6 / wall, 1),
            **summarize_stacks(raw, must_contain="receive_upload")}


def summarize_stacks(raw: Path, must_contain: str) -> dict[str, Any]:
    """Share of the request thread's samples in a few named places, and the hottest leaf functions."""
    # First match wins, most specific first, so the shares add up to 1.
    groups = {"waiting on FerretDB (insert_many)": "insert_many",
              "reading the request body from the client": "Unreader.read",
              "multipart parsing (werkzeug)": "MultipartDecoder",
              "building chunk documents": "VideoUpload.write",
              "other": ""}
    total, inside, leaves = 0, collections.Counter(), collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if must_contain not in stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        leaves[stack.split(";")[-1].split(" (")[0]] += n
        inside[next(name for name, needle in groups.items() if needle in stack)] += n
    share = {name: round(inside[name] / total, 3) if total else None for name in groups}
    return {"samples": total, "share_of_request_time": share,
            "top_leaf_functions": [[f, round(n / total, 3)] for f, n in leaves.most_common(8)] if total else []}


def main() -> int:
    c.prepare()
    started = time.monotonic()
    errors = c.Errors()
    inputs = {"10 s clip": c.clip(2 if c.SMOKE else 10), "60 s clip": c.clip(3 if c.SMOKE else 60)}
    beside = c.looped(c.clip(3 if c.SMOKE else 60), max_bytes=BESIDE_MB * c.MIB)
    rows: list[dict[str, Any]] = []
    with c.lab("bprof") as lab:
        for label, src in inputs.items():
            work = Path(tempfile.mkdtemp(dir=lab.workdir))
            c.log(f"{label}: the converter's steps one by one")
            steps = errors.run(f"{label} steps", lambda src=src, work=work: job_steps(lab.db, src, work))
            if steps is not None:
                rows.append({"kind": "steps", "input": label, **c.media_info(src), "steps": steps})
            shutil.rmtree(work, ignore_errors=True)
        c.log(f"memory: reading {READ_MB} MiB to disk two ways; storing a {MP3_MB} MiB MP3")
        read_src = c.looped(c.clip(3 if c.SMOKE else 60), max_bytes=READ_MB * c.MIB)
        work = Path(tempfile.mkdtemp(dir=lab.workdir))
        moves = errors.run("transfer memory", lambda: transfer_memory(lab.db, read_src, work))
        if moves is not None:
            rows.append({"kind": "transfer_memory", "runs": moves})
        lab.db["videos.files"].drop()  # what read_memory staged; dropped, as FerretDB deletes by scanning
        lab.db["videos.chunks"].drop()
        c.log(f"FerretDB: a 300 kB file read alone and beside {BESIDE_MB} MiB")
        scan = errors.run("FerretDB scan evidence", lambda: scan_evidence(lab.db, beside))
        if scan is not None:
            rows.append({"kind": "ferretdb_scan", **scan})
        c.log(f"FerretDB: {BATCH_MB} MiB of GridFS chunks, 1..192 chunks per insert_many")
        batching = errors.run("insert batching", lambda: insert_batching(lab.db))
        if batching is not None:
            rows.append({"kind": "insert_batching", "runs": batching})
    c.log(f"gateway: py-spy on the worker during a {SPY_MB} MiB upload")
    spy = errors.run("gateway upload profile", gateway_upload_profile)
    if spy is not None:
        rows.append({"kind": "gateway_upload_profile", **spy})
    for row in rows:
        if row["kind"] == "steps":
            print(f"\n{row['input']} ({row['bytes'] / 1e6:.1f} MB)")
            c.print_table(["step", "wall s", "converter CPU s", "ffmpeg/ffprobe CPU s"],
                          [[s["step"], s["wall_s"], s["own_cpu_s"], s["children_cpu_s"]] for s in row["steps"]])
        elif row["kind"] == "ferretdb_scan":
            print(f"\nFerretDB: 300 kB read alone {row['read_small_alone_s']} s; beside "
                  f"{row['beside_bytes'] / 1e6:.0f} MB: read {row['read_small_with_beside_s']} s, delete "
                  f"{row['delete_small_with_beside_s']} s; plan {row['plan']}, filterPushdown {row['filter_pushdown']}")
        elif row["kind"] == "transfer_memory":
            print()
            c.print_table(["step", "MB", "CPU s", "wall s", "RSS growth MiB"],
                          [[r["step"], f"{r['bytes'] / 1e6:.0f}", r["cpu_s"], r["wall_s"], r["rss_growth_mb"]]
                           for r in row["runs"]])
        elif row["kind"] == "insert_batching":
            print()
            c.print_table(["GridFS chunks per insert_many", "MB/s", "FerretDB CPU s per GB"],
                          [[r["chunks_per_insert"], r["mb_s"], r["ferretdb_cpu_s_per_gb"]] for r in row["runs"]])
        else:
            print(f"\ngateway upload of {row['bytes'] / 1e6:.0f} MB at {row['mb_s']} MB/s; "
                  f"request thread time by place ({row['samples']} samples):")
            c.print_table(["where", "share"], [[k, v] for k, v in row["share_of_request_time"].items()]
                          + [[f"leaf: {f}", v] for f, v in row["top_leaf_functions"]])
    c.write_results(NAME, rows, [], errors, started)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
