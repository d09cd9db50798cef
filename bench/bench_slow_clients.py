"""Slow-client benchmark: 256 connections trickling upload bodies and 256 trickling headers against one gateway;
/healthz latency, another user's whole flow (login, upload, done, download) against its unloaded time, and the
gateway's memory meanwhile. Only 127.0.0.1 is contacted."""

from __future__ import annotations

import json
import secrets
import socket
import sys
import threading
import time
from typing import Any

import psutil
import requests

import common as c
from tests.support import local_address, raw_upload_head  # noqa: E402  (common puts the root on sys.path)

NAME = "slow_clients"
SLOW = 16 if c.SMOKE else 256  # connections of each kind
BODY_BYTE_EVERY_S = 15  # the trickle: one byte every 15 s (under BODY_READ_TIMEOUT_S, so they stay)
HEADER_BYTE_EVERY_S = 1
FLOWS = 1 if c.SMOKE else 5
# Under load, flows run one after another for at least this long: more than a body trickle period and several
# header deadlines (gunicorn_conf.keepalive), so the gateway is measured while it deals with both.
LOADED_FOR_S = 3 if c.SMOKE else 60
LOAD_SETTLE_S = 2 if c.SMOKE else 5  # let every slow connection get in before measuring
BOUNDARY = "bench-slow-boundary"


class SlowClients:
    """SLOW connections sending an upload body a byte at a time and SLOW sending headers a byte at a time; a
    header connection the gateway closes is opened again at once (as an attacker would)."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.bodies: list[socket.socket] = []
        self.headers: list[socket.socket] = []
        self.header_reopens = 0
        self.bodies_answered = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._trickle_bodies, daemon=True),
                         threading.Thread(target=self._trickle_headers, daemon=True)]

    def _header_conn(self) -> socket.socket:
        sock = socket.create_connection(local_address(self.url), timeout=5)
        sock.sendall(b"GET /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        sock.setblocking(False)
        return sock

    def __enter__(self) -> SlowClients:
        for _ in range(SLOW):
            sock = socket.create_connection(local_address(self.url), timeout=5)
            sock.sendall(raw_upload_head(self.url, self.token, BOUNDARY, 100_000_000))
            sock.setblocking(False)
            self.bodies.append(sock)
        self.headers = [self._header_conn() for _ in range(SLOW)]
        for thread in self._threads:
            thread.start()
        return self

    def _trickle_bodies(self) -> None:
        while not self._stop.wait(BODY_BYTE_EVERY_S):
            for sock in self.bodies:
                try:
                    sock.send(b"a")
                except OSError:
                    pass

    def _trickle_headers(self) -> None:
        while not self._stop.wait(HEADER_BYTE_EVERY_S):
            for i, sock in enumerate(self.headers):
                try:
                    if sock.recv(1) == b"":
                        raise ConnectionError
                except BlockingIOError:
                    pass
                except OSError:
                    sock.close()
                    self.headers[i] = self._header_conn()
                    self.header_reopens += 1
                    continue
                try:
                    sock.send(b"a")
                except OSError:
                    pass

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        for sock in self.bodies:
            try:
                if sock.recv(1):
                    self.bodies_answered += 1  # the gateway answered (and so stopped reading) this body
            except OSError:
                pass
            sock.close()
        for sock in self.headers:
            sock.close()


class HealthProbe:
    """GET /healthz on a new connection every 0.25 s, as a kubelet probe does; latencies in seconds."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            started = time.perf_counter()
            try:
                ok = requests.get(f"{self.url}/healthz", timeout=10).status_code == 200
            except requests.RequestException as exc:
                ok = False
                self.failures.append(type(exc).__name__)
            self.latencies.append(time.perf_counter() - started)
            if not ok and not self.failures:
                self.failures.append("not 200")

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def result(self) -> dict[str, Any]:
        values = self.latencies
        return {"samples": len(values), "failures": self.failures,
                "p50_s": round(c.median(values), 4) if values else None,
                "p95_s": round(c.percentile(values, 95), 4) if values else None,
                "max_s": round(max(values), 4) if values else None}


def flow(url: str, user: tuple[str, str], clip) -> dict[str, float]:
    """One user's whole flow through the gateway: login, upload, poll until done, download."""
    t0 = time.perf_counter()
    token = requests.post(f"{url}/login", auth=user, timeout=30).text.strip()
    t_login = time.perf_counter()
    status, body = c.upload(url, token, clip)
    if status != 202:
        raise RuntimeError(f"upload answered {status}: {body}")
    t_upload = time.perf_counter()
    deadline = time.monotonic() + 300
    while True:
        job = requests.get(f"{url}/jobs/{body['job_id']}", headers={"Authorization": f"Bearer {token}"},
                           timeout=30).json()
        if job["status"] in ("done", "failed"):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {body['job_id']} not done after 300 s")
        time.sleep(0.1)
    if job["status"] != "done":
        raise RuntimeError(f"job failed: {job['error']}")
    t_done = time.perf_counter()
    c.download(url, token, job["mp3_fid"])
    t_end = time.perf_counter()
    # Not timed: without it every flow would find one more MP3 in the bucket than the one before, and FerretDB
    # reads whole buckets (see "FerretDB reads the whole bucket"), so later flows would be slower for that alone.
    requests.delete(f"{url}/jobs/{body['job_id']}", headers={"Authorization": f"Bearer {token}"},
                    timeout=30).raise_for_status()
    return {"total_s": round(t_end - t0, 3), "login_s": round(t_login - t0, 3), "upload_s": round(t_upload - t_login, 3),
            "until_done_s": round(t_done - t_upload, 3), "download_s": round(t_end - t_done, 3)}


def create_user(url: str, admin_token: str) -> tuple[str, str]:
    email, password = f"bench-{secrets.token_hex(4)}@example.com", secrets.token_urlsafe(16)
    response = requests.post(f"{url}/users", json={"email": email, "password": password},
                             headers={"Authorization": f"Bearer {admin_token}"}, timeout=30)
    response.raise_for_status()
    return email, password


def measure(row: dict[str, Any]) -> dict[str, Any]:
    """Fills `row` as it goes, so a run that fails under load (a starved gateway) still reports its probes."""
    src = c.clip(2 if c.SMOKE else 10)
    with c.lab("bslow", auth=True) as lab:
        lab.start("auth")
        # Every trickling body comes from one user here: the per-user upload limit (default 3) is lifted so all
        # 256 reach the gateway's body reading, the worst case for the worker (many users, or many replicas' worth).
        gateway = lab.start("gateway", MAX_CONCURRENT_UPLOADS_PER_USER="1000")
        lab.start("converter")
        url = lab.gateway_url
        admin = lab.token()
        flow_user, slow_user = create_user(url, admin), create_user(url, admin)
        slow_token = requests.post(f"{url}/login", auth=slow_user, timeout=30).text.strip()
        gateway_proc = psutil.Process(gateway.proc.pid)

        flow(url, flow_user, src)  # warm-up: first-request imports, connections, indexes
        unloaded = [flow(url, flow_user, src) for _ in range(FLOWS)]
        with HealthProbe(url) as idle_probe:
            time.sleep(2)
        idle_rss = c.rss_mb(gateway_proc)

        row.update({"clip": c.media_info(src), "unloaded_flows": unloaded,
                    "unloaded_flow_p50_s": c.median([f["total_s"] for f in unloaded]),
                    "healthz_idle": idle_probe.result(), "gateway_rss_idle_mb": idle_rss})
        memory, slow, probe = c.TreeMemory(gateway_proc), SlowClients(url, slow_token), HealthProbe(url)
        loaded: list[dict[str, float]] = []
        try:
            with memory, slow, probe:
                time.sleep(LOAD_SETTLE_S)
                load_started = time.monotonic()
                while len(loaded) < FLOWS or time.monotonic() - load_started < LOADED_FOR_S:
                    loaded.append(flow(url, flow_user, src))
                row["gateway_tcp_connections_under_load"] = sum(
                    len(p.net_connections(kind="tcp")) for p in c.tree(gateway_proc))
        finally:
            row.update({"slow_connections": {"bodies": SLOW, "headers": SLOW, "header_reopens": slow.header_reopens,
                                             "bodies_answered_early": slow.bodies_answered},
                        "loaded_flows": loaded, "healthz_loaded": probe.result(),
                        "gateway_memory_loaded": memory.result()})
        row["loaded_flow_p50_s"] = c.median([f["total_s"] for f in loaded])
        return row


def main() -> int:
    c.prepare()
    started = time.monotonic()
    errors = c.Errors()
    c.log(f"slow clients: {SLOW} trickling bodies + {SLOW} trickling headers; {FLOWS} flows unloaded and loaded")
    row: dict[str, Any] = {}
    errors.run("slow clients", lambda: measure(row))
    if "loaded_flow_p50_s" in row:
        ratio = round(row["loaded_flow_p50_s"] / row["unloaded_flow_p50_s"], 3)
        row["flow_ratio"] = ratio
        targets = [
            c.Target(f"/healthz slowest answer with {SLOW}+{SLOW} slow connections", row["healthz_loaded"]["max_s"],
                     "<", 1.0, " s", f"p95 {row['healthz_loaded']['p95_s']} s; failures {row['healthz_loaded']['failures']}"),
            c.Target("another user's whole flow, loaded / unloaded (median)", ratio, "<=", 2.0, "x",
                     f"{row['loaded_flow_p50_s']} s vs {row['unloaded_flow_p50_s']} s"),
            c.Target("gateway peak RSS under load (master + worker)", row["gateway_memory_loaded"]["peak_rss_mb"],
                     "<", 300, " MB", f"idle {row['gateway_rss_idle_mb']} MB"),
        ]
        print(json.dumps({k: row[k] for k in ("slow_connections", "healthz_loaded", "unloaded_flow_p50_s",
                                              "loaded_flow_p50_s", "gateway_memory_loaded")}, indent=1))
    else:
        loaded = row.get("healthz_loaded", {})
        targets = [c.Target("/healthz slowest answer under slow connections", loaded.get("max_s"), "<", 1.0, " s",
                            f"failures {loaded.get('failures')}"),
                   c.Target("another user's whole flow, loaded / unloaded (median)", None, "<=", 2.0, "x"),
                   c.Target("gateway peak RSS under load (master + worker)", None, "<", 300, " MB")]
    c.write_results(NAME, [row] if row else [], targets, errors, started)
    return 1 if errors or any(t.met is False for t in targets) else 0


if __name__ == "__main__":
    sys.exit(main())
