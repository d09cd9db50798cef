"""Transfer benchmark: gateway upload and download of a 1 GiB file against bare pymongo GridFS, with the worker's memory."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import psutil
from bson import ObjectId
from gridfs import GridFSBucket

import common as c

NAME = "transfer"
ROUNDS = 1 if c.SMOKE else 2
SIZE = (4 if c.SMOKE else 1024) * c.MIB
BATCH = 16  # docs/design.md: FerretDB cannot answer a larger getMore on chunks; the gateway must read the same way


def measured(fn, *, worker: psutil.Process | None = None) -> dict[str, Any]:  # noqa: ANN001
    """Runs fn() and returns its wall time with the CPU of this process, the gateway worker and FerretDB."""
    fdb = c.ferretdb()
    cpu0, fdb0, gw0 = c.self_cpu(), c.proc_cpu(fdb), c.proc_cpu(worker)
    memory = c.TreeMemory(worker) if worker else None
    base_rss = c.rss_mb(worker) if worker else None
    t0 = time.perf_counter()
    if memory:
        with memory:
            value = fn()
    else:
        value = fn()
    wall = time.perf_counter() - t0
    out: dict[str, Any] = {"wall_s": round(wall, 3), "client_cpu_s": round(c.self_cpu() - cpu0, 2),
                           "ferretdb_cpu_s": round(c.proc_cpu(fdb) - fdb0, 2), "value": value}
    if worker:
        peak = memory.result()
        out.update({"gateway_cpu_s": round(c.proc_cpu(worker) - gw0, 2), "worker_rss_before_mb": base_rss,
                    "worker_peak_rss_mb": peak["peak_rss_mb"],
                    "worker_rss_growth_mb": round(peak["peak_rss_mb"] - base_rss, 1)})
    return out


def bare_upload(db: Any, src: Path, owner: str, bucket: str) -> dict[str, Any]:
    def run() -> str:
        with src.open("rb") as data:
            return str(GridFSBucket(db, bucket).upload_from_stream(
                "big.mp3", data, metadata={"owner": owner, "job_id": "bench"}))
    return measured(run)


def drop_bucket(db: Any, bucket: str) -> None:
    # FerretDB deletes a GridFS file by scanning every chunk of the bucket (no index use): dropping is instant.
    db[f"{bucket}.files"].drop()
    db[f"{bucket}.chunks"].drop()


def gateway_upload(lab: c.Lab, token: str, src: Path, worker: psutil.Process) -> dict[str, Any]:
    def run() -> str:
        status, body = c.upload(lab.gateway_url, token, src)
        if status != 202:
            raise RuntimeError(f"upload answered {status}: {body}")
        return body["job_id"]
    return measured(run, worker=worker)


def bare_download(db: Any, fid: str) -> dict[str, Any]:

    def run() -> int:
        total = 0
        for n, chunk in enumerate(db["mp3s.chunks"].find({"files_id": ObjectId(fid)}, sort=[("n", 1)], batch_size=BATCH)):
            if chunk["n"] != n:
                raise RuntimeError(f"chunk {n} missing")
            total += len(chunk["data"])
        return total
    return measured(run)


def gateway_download(lab: c.Lab, token: str, fid: str, worker: psutil.Process) -> dict[str, Any]:
    return measured(lambda: c.download(lab.gateway_url, token, fid), worker=worker)


def main() -> int:
    c.prepare()
    started = time.monotonic()
    errors = c.Errors()
    c.log("making media (cached in bench/.work)")
    small = c.clip(3)
    src = c.looped(c.clip(3 if c.SMOKE else 60), max_bytes=SIZE)
    size = src.stat().st_size
    runs: dict[str, list[dict[str, Any]]] = {"bare upload": [], "gateway upload": [], "bare download": [],
                                             "gateway download": []}
    with c.lab("bxfer", auth=True) as lab:
        lab.start("auth")
        gateway = lab.start("gateway")
        token = lab.token()
        owner = lab.admin[0]
        # gthread runs requests in its one worker process, the master's child.
        worker = psutil.Process(gateway.proc.pid).children()[0]

        c.log("warm-up: one small upload and download (imports, pools and buffers settle first)")

        def warm_up() -> None:
            status, body = c.upload(lab.gateway_url, token, small)
            if status != 202:
                raise RuntimeError(f"upload answered {status}: {body}")
            c.download(lab.gateway_url, token, bare_upload(lab.db, small, owner, "mp3s")["value"])

        errors.run("warm-up", warm_up)

        def upload(kind: str, keep: bool) -> dict[str, Any]:
            # Each upload starts from an empty bucket (a retry, too); `mp3s` keeps the file the downloads serve.
            bucket = "videos" if kind == "gateway" else "mp3s" if keep else "scratch"
            drop_bucket(lab.db, bucket)
            return gateway_upload(lab, token, src, worker) if kind == "gateway" else bare_upload(lab.db, src, owner,
                                                                                                   bucket)

        download_fid = None
        for r in range(ROUNDS):
            # ABBA order: a drift of the shared machine over time hits both sides alike.
            for kind in (("bare", "gateway") if r % 2 == 0 else ("gateway", "bare")):
                c.log(f"round {r + 1}/{ROUNDS}: {kind} upload of {size / 1e6:.0f} MB")
                keep = kind == "bare" and download_fid is None
                run = errors.run(f"{kind} upload", lambda kind=kind, keep=keep: upload(kind, keep))
                if run is not None:
                    runs[f"{kind} upload"].append(run)
                    if keep:
                        download_fid = run["value"]

        def download(kind: str) -> dict[str, Any]:
            if download_fid is None:
                raise RuntimeError("no file to download: the bare upload failed")
            run = (bare_download(lab.db, download_fid) if kind == "bare"
                   else gateway_download(lab, token, download_fid, worker))
            if run["value"] != size:
                raise RuntimeError(f"read {run['value']} bytes of {size}")
            return run

        for r in range(ROUNDS):
            for kind in (("bare", "gateway") if r % 2 == 0 else ("gateway", "bare")):
                c.log(f"round {r + 1}/{ROUNDS}: {kind} download of {size / 1e6:.0f} MB")
                run = errors.run(f"{kind} download", lambda kind=kind: download(kind))
                if run is not None:
                    runs[f"{kind} download"].append(run)

    rows = []
    for name, items in runs.items():
        for item in items:
            item["mb_s"] = round(size / 1e6 / item["wall_s"], 1)
        rows.append({"transfer": name, "bytes": size, "runs": items,
                     "mb_s": round(c.median([i["mb_s"] for i in items]), 1) if items else None,
                     "worker_rss_growth_mb": max((i["worker_rss_growth_mb"] for i in items if "worker_rss_growth_mb" in i),
                                                 default=None)})
    by = {r["transfer"]: r for r in rows}

    def ratio(a: str, b: str) -> float | None:
        x, y = by[a]["mb_s"], by[b]["mb_s"]
        return round(x / y, 3) if x and y else None

    targets = [
        c.Target("gateway upload throughput / bare GridFS upload", ratio("gateway upload", "bare upload"), ">=", 0.8, "x"),
        c.Target(f"gateway worker RSS growth during a {SIZE // c.MIB} MiB upload", by["gateway upload"]["worker_rss_growth_mb"],
                 "<", 50, " MiB"),
        c.Target("gateway download throughput / bare GridFS read", ratio("gateway download", "bare download"), ">=", 0.8, "x"),
        c.Target(f"gateway worker RSS growth during a {SIZE // c.MIB} MiB download", by["gateway download"]["worker_rss_growth_mb"],
                 "<", 50, " MiB", "'memory flat' read with the upload's bound"),
    ]
    print()
    c.print_table(["transfer", "MB/s (median)", "runs MB/s", "client CPU s", "gateway CPU s", "FerretDB CPU s",
                   "worker RSS growth MiB"],
                  [[r["transfer"], r["mb_s"] or "-", " ".join(str(i["mb_s"]) for i in r["runs"]) or "-",
                    " ".join(str(i["client_cpu_s"]) for i in r["runs"]) or "-",
                    " ".join(str(i.get("gateway_cpu_s", "-")) for i in r["runs"]) or "-",
                    " ".join(str(i["ferretdb_cpu_s"]) for i in r["runs"]) or "-",
                    "-" if r["worker_rss_growth_mb"] is None else r["worker_rss_growth_mb"]] for r in rows])
    c.write_results(NAME, rows, targets, errors, started, {"rounds": ROUNDS, "file": c.media_info(src),
                                                          "retried_after_server_loss": errors.retried})
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
