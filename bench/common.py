"""Shared benchmark helpers: media made by ffmpeg, process-tree CPU/memory sampling, the local stack, results."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

from mp3core.contract import VideoMessage, dead_letter_exchange, dead_letter_queue, declare_queue

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))
from procs import Service  # noqa: E402  (the lead's runner: a service started from its Dockerfile CMD)
from tests.support import (  # noqa: E402
    FERRETDB_PORT, MARIADB_PORT, RABBITMQ_PORT, STATE, free_port, mariadb_root, port_open, unique)

# BENCH_SMOKE=1 shrinks every size so the whole suite only proves it runs (tests/integration/test_bench_smoke.py).
SMOKE = os.environ.get("BENCH_SMOKE") == "1"
WORK = Path(os.environ.get("BENCH_WORK", ROOT / "bench" / ".work"))
RESULTS = Path(os.environ.get("BENCH_RESULTS", ROOT / "bench" / "results"))
MIB = 1024 * 1024
MONGO_URI = f"mongodb://127.0.0.1:{FERRETDB_PORT}"
# dev-only placeholder credentials: RabbitMQ's default guest account, which `make infra` allows on loopback only.
# The benchmark's services use it too, not their own users (tests/support.py: service_rabbitmq_url): those may
# only use `video`/`mp3` and the tests' video_<hex>/mp3_<hex> queues, while a lab names its queues after itself
# (<lab>_video) so leftovers say which benchmark made them; permission checks cost nothing measurable here.
RABBITMQ_URL = f"amqp://guest:guest@127.0.0.1:{RABBITMQ_PORT}/%2F"
SAMPLE_S = 0.02


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def prepare() -> None:
    """Fails fast when `make infra` has not run; makes SIGTERM unwind (stopping our services) like Ctrl-C."""
    down = [name for name, port in (("RabbitMQ", RABBITMQ_PORT), ("MariaDB", MARIADB_PORT),
                                    ("FerretDB", FERRETDB_PORT)) if not port_open(port)]
    if down:
        sys.exit(f"bench: not running: {', '.join(down)}; start them with `make infra`")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


# --- media -------------------------------------------------------------------------------------------------

def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True, timeout=1800)


def _cached(path: Path, make: Callable[[Path], None]) -> Path:
    """Builds path once (through a temp name, so an interrupted run never leaves half a file to reuse)."""
    if path.exists() and path.stat().st_size > 0:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + ".partial" + path.suffix)
    make(partial)
    partial.rename(path)
    return path


def clip(seconds: float, size: str = "1280x720") -> Path:
    """An H.264/AAC MP4 of ffmpeg's testsrc2 and a sine tone, encoded fast (ultrafast preset)."""
    size = "320x240" if SMOKE else size

    def make(out: Path) -> None:
        _ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds}",
                "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}",
                "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                "-c:a", "aac", "-b:a", "128k", "-shortest", str(out))

    return _cached(WORK / f"clip-{size}-{seconds:g}s.mp4", make)


def looped(src: Path, *, seconds: float | None = None, max_bytes: int | None = None) -> Path:
    """src repeated by stream copy (no re-encode): a long or large real video in seconds, not minutes."""
    tag = f"{seconds:g}s" if seconds else f"{max_bytes // MIB}MiB"

    def make(out: Path) -> None:
        limit = ["-t", str(seconds)] if seconds else ["-fs", str(max_bytes)]
        _ffmpeg("-stream_loop", "-1", "-i", str(src), "-c", "copy", *limit, str(out))

    return _cached(WORK / f"{src.stem}-x-{tag}.mp4", make)


def media_info(path: Path) -> dict[str, Any]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration,size", "-of", "json", str(path)],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    fmt = json.loads(out)["format"]
    return {"file": path.name, "bytes": int(fmt["size"]), "duration_s": round(float(fmt["duration"]), 2)}


# --- measuring ---------------------------------------------------------------------------------------------

def _status_kib(pid: int, key: bytes) -> int:
    # /proc/<pid>/status costs microseconds; psutil's PSS/USS (smaps) costs milliseconds on big processes.
    with open(f"/proc/{pid}/status", "rb") as status:
        for line in status:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_cpu(proc: psutil.Process) -> dict[str, float]:
    """CPU seconds so far of proc (own), of its children it has reaped, and of the descendants still running.

    Exact at moments when no child is running (the measurements start and end there); in between it may miss
    or double count a child reaped during the call, which only matters for live display.
    """
    times = proc.cpu_times()
    live = 0.0
    for child in tree(proc)[1:]:
        with contextlib.suppress(psutil.NoSuchProcess):
            ct = child.cpu_times()
            live += ct.user + ct.system + ct.children_user + ct.children_system
    own = times.user + times.system
    children = times.children_user + times.children_system + live
    return {"own": own, "children": children, "total": own + children}


class TreeMemory:
    """Samples a process tree every SAMPLE_S in a thread; keeps the peak of the summed RSS and anonymous RSS."""

    def __init__(self, proc: psutil.Process, include_root: bool = True) -> None:
        self.proc, self.include_root = proc, include_root
        self.peak_rss_kib = self.peak_anon_kib = self.samples = 0
        self.peak_procs: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="tree-memory")

    def _sample(self) -> None:
        rss = anon = 0
        names = []
        for p in tree(self.proc)[(0 if self.include_root else 1):]:
            try:
                rss += _status_kib(p.pid, b"VmRSS:")
                anon += _status_kib(p.pid, b"RssAnon:")
                names.append(p.name())
            except (OSError, psutil.NoSuchProcess):
                pass  # it exited between listing and reading
        self.samples += 1
        if rss > self.peak_rss_kib:
            self.peak_rss_kib, self.peak_procs = rss, names
        self.peak_anon_kib = max(self.peak_anon_kib, anon)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(SAMPLE_S)

    def __enter__(self) -> TreeMemory:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def result(self) -> dict[str, Any]:
        return {"peak_rss_mb": round(self.peak_rss_kib / 1024, 1), "peak_anon_mb": round(self.peak_anon_kib / 1024, 1),
                "peak_procs": self.peak_procs, "samples": self.samples}


def rss_mb(proc: psutil.Process) -> float:
    return round(sum(_status_kib(p.pid, b"VmRSS:") for p in tree(proc)) / 1024, 1)


@dataclass
class Measured:
    cpu_s: float
    wall_s: float
    peak_rss_mb: float
    peak_anon_mb: float
    stdout: str


def run_measured(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 1800) -> Measured:
    """Runs cmd to completion: CPU (user+sys) of it and the children it reaped, from wait4(); peak memory sampled.

    Not wait4's ru_maxrss: a child's counts the parent's RSS at fork time, i.e. this benchmark process's.
    """
    started = time.perf_counter()
    # Popen returns after the exec, so the first sample already sees the new program, not a copy of us.
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        with TreeMemory(psutil.Process(proc.pid)) as memory:
            # Read both pipes in threads: wait4 must be ours (Popen.wait would reap the child and lose its rusage).
            out: dict[str, bytes] = {}
            readers = [threading.Thread(target=lambda k, s: out.__setitem__(k, s.read()), args=(k, s))
                       for k, s in (("out", proc.stdout), ("err", proc.stderr))]
            for reader in readers:
                reader.start()
            _, status, usage = os.wait4(proc.pid, 0)
            for reader in readers:
                reader.join()
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {proc.returncode}: {out.get('err', b'').decode(errors='replace')[-2000:]}")
    peak = memory.result()
    return Measured(usage.ru_utime + usage.ru_stime, wall, peak["peak_rss_mb"], peak["peak_anon_mb"],
                    out.get("out", b"").decode())


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def ferretdb() -> psutil.Process | None:
    """The FerretDB server `make infra` started (its CPU is reported alongside, never added to a service's)."""
    with contextlib.suppress(OSError, ValueError, psutil.NoSuchProcess):
        return psutil.Process(int((STATE / "ferretdb" / "ferretdb.pid").read_text().strip()))
    return None


def proc_cpu(proc: psutil.Process | None) -> float:
    if proc is None:
        return 0.0
    with contextlib.suppress(psutil.NoSuchProcess):
        return tree_cpu(proc)["total"]
    return 0.0


def machine_cpu() -> float:
    """Busy CPU seconds of the whole machine so far (all cores), to show how saturated it was."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): an observed value, no interpolation."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


# --- the local stack ---------------------------------------------------------------------------------------

def _quiet(line: str) -> None:
    if os.environ.get("BENCH_SERVICE_LOGS"):
        print(line, flush=True)


@dataclass
class Lab:
    """One isolated system on the shared servers: its own MongoDB database, queues, MySQL database, work dir."""

    name: str
    env: dict[str, str]
    workdir: Path
    services: list[Service] = field(default_factory=list)
    admin: tuple[str, str] | None = None
    gateway_url: str | None = None
    _mongo: Any = None

    @property
    def db(self) -> Any:
        if self._mongo is None:
            import pymongo

            self._mongo = pymongo.MongoClient(self.env["MONGO_URI"], tz_aware=True, serverSelectionTimeoutMS=5000)
        return self._mongo.get_default_database()

    def start(self, name: str, **extra: str) -> Service:
        """Starts one service from its Dockerfile CMD and waits until /healthz answers 200."""
        port = str(free_port())
        key = "PORT" if name in ("auth", "gateway") else "METRICS_PORT"
        service = Service(name, {**self.env, **extra, key: port}, sink=_quiet).start()
        self.services.append(service)
        service.wait_healthy(f"http://127.0.0.1:{port}/healthz", timeout=90)
        if name == "auth":
            self.env["AUTH_SVC_ADDRESS"] = f"127.0.0.1:{port}"
        if name == "gateway":
            self.gateway_url = f"http://127.0.0.1:{port}"
        return service

    def stop(self, service: Service) -> None:
        service.stop()
        self.services.remove(service)

    def token(self) -> str:
        assert self.gateway_url and self.admin
        import requests

        response = requests.post(f"{self.gateway_url}/login", auth=self.admin, timeout=30)
        response.raise_for_status()
        return response.text.strip()


@contextlib.contextmanager
def lab(name: str, *, auth: bool = False) -> Iterator[Lab]:
    """A Lab whose database, queues (and MySQL account) are removed afterwards, whatever happens."""
    tag = unique(name)
    workdir = WORK / "tmp" / tag
    workdir.mkdir(parents=True)
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "MONGO_URI": f"{MONGO_URI}/{tag}",
        "RABBITMQ_URL": RABBITMQ_URL,
        "VIDEO_QUEUE": f"{tag}_video",
        "MP3_QUEUE": f"{tag}_mp3",
        "WORK_DIR": str(workdir),
        # The benchmark uploads up to a few GiB; the default 2048 MiB limit would refuse nothing we send anyway.
        "MAX_UPLOAD_MB": "4096",
    }
    the_lab = Lab(tag, env, workdir)
    mysql_user = None
    try:
        if auth:
            mysql_user, mysql_password = tag, secrets.token_urlsafe(18)
            mariadb_root(f"CREATE USER '{mysql_user}'@'%' IDENTIFIED BY '{mysql_password}'; "
                         f"CREATE DATABASE `{tag}`; GRANT ALL PRIVILEGES ON `{tag}`.* TO '{mysql_user}'@'%';")
            the_lab.admin = (f"bench-{secrets.token_hex(3)}@example.com", secrets.token_urlsafe(16))
            env.update({"MYSQL_HOST": "127.0.0.1", "MYSQL_PORT": str(MARIADB_PORT),
                        "MYSQL_USER": mysql_user, "MYSQL_PASSWORD": mysql_password, "MYSQL_DB": tag,
                        "JWT_SECRET": secrets.token_urlsafe(48), "JWT_LIFETIME_MINUTES": "240",
                        "ADMIN_EMAIL": the_lab.admin[0], "ADMIN_PASSWORD": the_lab.admin[1]})
        yield the_lab
    finally:
        for service in reversed(the_lab.services):
            service.stop()
        cleanups = [("MongoDB database", lambda: the_lab.db.client.drop_database(tag)),
                    ("queues", lambda: delete_queues(env["VIDEO_QUEUE"], env["MP3_QUEUE"]))]
        if mysql_user:
            cleanups.append(("MySQL database and user", lambda: mariadb_root(
                f"DROP DATABASE IF EXISTS `{tag}`; DROP USER IF EXISTS '{mysql_user}'@'%';")))
        for what, cleanup in cleanups:
            try:
                cleanup()
            except Exception as exc:  # noqa: BLE001 - the other cleanups still run; the leftover is named
                log(f"could not remove {what} {tag}: {type(exc).__name__}: {exc}")
        if the_lab._mongo is not None:
            the_lab._mongo.close()
        shutil.rmtree(workdir, ignore_errors=True)


def delete_queues(*names: str) -> None:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        channel = connection.channel()
        for name in names:
            for queue in (name, dead_letter_queue(name)):
                channel.queue_delete(queue)
            for exchange in (name, dead_letter_exchange(name)):
                channel.exchange_delete(exchange)
    finally:
        connection.close()


class Publisher:
    """Publishes `video` messages exactly as the gateway does (persistent, confirmed, mandatory); reconnects."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.connection: Any = None
        self._connect()

    def _connect(self) -> None:
        import pika

        self.close()
        params = pika.URLParameters(RABBITMQ_URL)
        # No heartbeats: this thread spends minutes in ffmpeg and moviepy runs without servicing the connection,
        # and the broker would close it for missed heartbeats (the converter's own connection is not affected).
        params.heartbeat = 0
        self.connection = pika.BlockingConnection(params)
        self.channel = self.connection.channel()
        declare_queue(self.channel, self.queue)
        self.channel.confirm_delivery()

    def _call(self, fn: Callable[[], Any]) -> Any:
        import pika.exceptions

        try:
            if not self.connection.is_open or not self.channel.is_open:
                self._connect()
            return fn()
        except pika.exceptions.AMQPError:
            self._connect()  # the broker dropped us (restart, connection reset): once more on a new connection
            return fn()

    def publish(self, message: dict[str, Any]) -> None:
        import pika

        self._call(lambda: self.channel.basic_publish(
            "", self.queue, json.dumps(message).encode(), mandatory=True,
            properties=pika.BasicProperties(delivery_mode=2, content_type="application/json")))

    def depth(self, queue: str) -> int:
        return self._call(lambda: self.channel.queue_declare(queue, passive=True).method.message_count)

    def purge(self, queue: str) -> None:
        self._call(lambda: self.channel.queue_purge(queue))

    def close(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(Exception):
                self.connection.close()


def stage_video(db: Any, path: Path, owner: str = "bench@example.com") -> dict[str, str]:
    """Puts a video in GridFS and its `queued` job in `jobs` as the gateway would; returns the `video` message."""
    from mp3core.gridchunks import ChunkWriter  # the gateway's writer

    job_id = secrets.token_hex(16)
    writer = ChunkWriter(db["videos.files"], db["videos.chunks"], path.name,
                         {"owner": owner, "job_id": job_id, "content_type": "video/mp4"})
    with path.open("rb") as data:
        while piece := data.read(MIB):
            writer.write(piece)
    writer.close()
    fid = writer.file_id
    now = datetime.now(timezone.utc)
    db["jobs"].insert_one({"_id": job_id, "owner": owner, "status": "queued", "filename": path.name,
                           "video_fid": str(fid), "mp3_fid": None, "error": None, "attempts": 0,
                           "created_at": now, "updated_at": now, "notified_at": None})
    return VideoMessage(job_id, str(fid), owner, path.name).to_dict()


def wait_finished(db: Any, job_ids: list[str], timeout: float, poll_s: float = SAMPLE_S) -> dict[str, dict[str, Any]]:
    """Polls `jobs` every poll_s until every job is done or failed; returns the jobs. Raises on failure or timeout."""
    pending, finished = set(job_ids), {}
    deadline = time.monotonic() + timeout
    while pending:
        for job in db["jobs"].find({"_id": {"$in": list(pending)}, "status": {"$in": ["done", "failed"]}}):
            if job["status"] == "failed":
                raise RuntimeError(f"job {job['_id']} failed: {job.get('error')}")
            finished[job["_id"]] = job
            pending.discard(job["_id"])
        if pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} of {len(job_ids)} jobs not finished after {timeout:.0f} s")
            time.sleep(poll_s)
    return finished


def job_log(service: Service, job_id: str) -> list[dict[str, Any]]:
    """The service's JSON log lines tagged with job_id (the converter logs each step of a job)."""
    lines = []
    for line in list(service.lines):
        if job_id in line:
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
    return lines


def wait_settled(service: Service, job_id: str, timeout: float = 60) -> None:
    """Waits for the consumer's "message <outcome>" line: the job's handling is over (cleanup and ack included)."""
    deadline = time.monotonic() + timeout
    while not any(str(e.get("msg", "")).startswith("message ") for e in job_log(service, job_id)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no 'message ...' log line for job {job_id} after {timeout:.0f} s")
        time.sleep(SAMPLE_S)


def log_ts(entry: dict[str, Any]) -> float:
    return datetime.fromisoformat(entry["ts"]).timestamp()


# --- HTTP client that streams (requests would build a multipart body in memory) ------------------------------

def _connection(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)


def upload(url: str, token: str, path: Path, piece: int = MIB) -> tuple[int, dict[str, Any]]:
    """POST /upload of path as the single multipart `file` part, streamed from disk with a Content-Length."""
    boundary = secrets.token_hex(16)
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
            f"Content-Type: video/mp4\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    conn = _connection(url)
    try:
        conn.putrequest("POST", "/upload")
        conn.putheader("Authorization", f"Bearer {token}")
        conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        conn.putheader("Content-Length", str(len(head) + path.stat().st_size + len(tail)))
        conn.endheaders()
        try:
            conn.send(head)
            with path.open("rb") as data:
                while chunk := data.read(piece):
                    conn.send(chunk)
            conn.send(tail)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early (e.g. 413/415): its response says why
        response = conn.getresponse()
        body = response.read()
        try:
            return response.status, json.loads(body)
        except ValueError:
            return response.status, {"raw": body[:500].decode(errors="replace")}
    finally:
        conn.close()


def download(url: str, token: str, fid: str, piece: int = MIB) -> int:
    """GET /download, reading the body in pieces and discarding it; returns the byte count (checked)."""
    conn = _connection(url)
    try:
        conn.request("GET", f"/download?fid={fid}", headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"download answered {response.status}: {response.read()[:300]!r}")
        expected = int(response.headers["Content-Length"])
        total = 0
        try:
            while chunk := response.read(piece):
                total += len(chunk)
        except http.client.IncompleteRead as exc:
            total += len(exc.partial)
        if total != expected:
            raise RuntimeError(f"download ended after {total} of {expected} bytes")
        return total
    finally:
        conn.close()


# --- results -----------------------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    ffmpeg = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split("\n", 1)[0]
    return {
        "cpu": model.group(1) if model else platform.processor(),
        "cores": psutil.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "ffmpeg": ffmpeg.removeprefix("ffmpeg version ").split(" Copyright")[0],
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


@dataclass
class Target:
    """One goal from the issue: met when value compares to limit as `op` says."""

    name: str
    value: float | None
    op: str  # "<=", ">=", "<"
    limit: float
    unit: str = ""
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return {"<=": self.value <= self.limit, "<": self.value < self.limit, ">=": self.value >= self.limit}[self.op]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "op": self.op, "limit": self.limit, "unit": self.unit,
                "met": self.met, "note": self.note}


def verdict(met: bool | None) -> str:
    return {True: "met", False: "MISSED", None: "NOT MEASURED"}[met]


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def write_results(name: str, rows: list[dict[str, Any]], targets: list[Target], errors: list[str],
                  started: float, extra: dict[str, Any] | None = None) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    doc = {"name": name, "smoke": SMOKE, "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "duration_s": round(time.monotonic() - started, 1), "machine": machine(),
           "targets": [t.as_dict() for t in targets], "rows": rows, "errors": errors, **(extra or {})}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    if targets:
        print()
        print_table(["target", "value", "limit", "verdict"],
                    [[t.name, "-" if t.value is None else f"{t.value:g}{t.unit}", f"{t.op} {t.limit:g}{t.unit}",
                      verdict(t.met)] for t in targets])
    for error in errors:
        print(f"ERROR: {error}")
    log(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return path


def infra_trouble(exc: BaseException) -> bool:
    """The shared servers went away (restarted by someone's test, say), rather than the code under test failing."""
    import pika.exceptions
    import pymongo.errors

    if isinstance(exc, (pymongo.errors.ConnectionFailure, pika.exceptions.AMQPError, ConnectionError)):
        return True
    # The converter's own log says so when it lost a server in the middle of the measured job.
    text = str(exc)
    return "unavailable" in text or "connection lost" in text.lower()


def wait_for_servers(timeout: float = 180) -> None:
    """Waits until RabbitMQ, MariaDB and FerretDB accept connections and FerretDB answers a ping."""
    import pymongo

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(port_open(p) for p in (RABBITMQ_PORT, MARIADB_PORT, FERRETDB_PORT)):
            with contextlib.suppress(Exception):
                client = pymongo.MongoClient(MONGO_URI, serverSelectionTimeoutMS=2000)
                try:
                    client.admin.command("ping")
                    return
                finally:
                    client.close()
        time.sleep(1)
    raise TimeoutError(f"the servers were not back after {timeout:.0f} s")


class Errors(list):
    """Collects a failed measurement's error instead of aborting the others; the run exits non-zero at the end."""

    def __init__(self) -> None:
        super().__init__()
        self.retried: list[str] = []

    def run(self, what: str, fn: Callable[[], Any], *, on_retry: Callable[[], None] | None = None) -> Any:
        """fn()'s value, or None with the error recorded. A measurement cut short because a shared server went
        away is made once more when the servers are back (and the retry is recorded): it measured nothing."""
        for attempt in (1, 2):
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - recorded and reported; the other measurements still run
                message = f"{what}: {type(exc).__name__}: {str(exc)[:600]}"
                if attempt == 1 and infra_trouble(exc):
                    log(f"{message}; waiting for the servers, then measuring again")
                    self.retried.append(message)
                    try:
                        wait_for_servers()
                        if on_retry:
                            on_retry()
                        continue
                    except Exception as again:  # noqa: BLE001
                        message += f" (and then {type(again).__name__}: {again})"
                log(f"ERROR {message}")
                self.append(message)
                return None
        return None
