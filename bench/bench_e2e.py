"""End-to-end benchmark: latency from the upload's 202 to job `done`, and job throughput with 1 and 2 converters."""

from __future__ import annotations

import sys
import time
from typing import Any

import psutil

import common as c
from bench_convert import phases

NAME = "e2e"
UPLOADS = 3 if c.SMOKE else 20
CLIPS = 3 if c.SMOKE else 20


def latency(errors: c.Errors) -> dict[str, Any]:
    """UPLOADS uploads of a 10 s clip through the gateway, one after another, each waited for until `done`."""
    src = c.clip(2 if c.SMOKE else 10)
    samples: list[dict[str, Any]] = []
    with c.lab("be2e", auth=True) as lab:
        lab.start("auth")
        lab.start("gateway")
        converter = lab.start("converter")
        token = lab.token()

        def one_upload() -> dict[str, Any]:
            t_send = time.time()
            status, body = c.upload(lab.gateway_url, token, src)
            t_202 = time.time()
            if status != 202:
                raise RuntimeError(f"upload answered {status}: {body}")
            job = c.wait_finished(lab.db, [body["job_id"]], timeout=120)[body["job_id"]]
            # The next upload starts once this job's handling is over (the video deleted, the message acked).
            c.wait_settled(converter, body["job_id"])
            # updated_at is stamped by the converter as it sets `done`: exact, unlike our polling interval.
            return {"latency_s": round(job["updated_at"].timestamp() - t_202, 3), "upload_s": round(t_202 - t_send, 3),
                    "phases_s": phases(c.job_log(converter, body["job_id"]), t_202)}

        for i in range(UPLOADS + 1):
            sample = errors.run(f"upload {i}", one_upload)
            if sample is not None and i > 0:  # upload 0 warms up: first-request imports and connection set-up
                samples.append(sample)
    values = [s["latency_s"] for s in samples]
    phase_names = sorted({k for s in samples for k in s["phases_s"]})
    return {"clip": c.media_info(src), "samples": samples,
            "p50_s": round(c.median(values), 3) if values else None,
            "p95_s": c.percentile(values, 95) if values else None,
            "phase_p50_s": {k: round(c.median([s["phases_s"][k] for s in samples if k in s["phases_s"]]), 3)
                            for k in phase_names}}


def throughput(converters: int) -> dict[str, Any]:
    """CLIPS jobs published at once to `converters` running converters; jobs per minute until the last is `done`."""
    # 10 s clips, not 60 s ones: FerretDB scans the whole bucket for every GridFS read and delete, so 20 x 50 MB
    # waiting at once would make each job cost minutes of database scans (see docs/performance.md).
    src = c.clip(2 if c.SMOKE else 10)
    with c.lab(f"bthr{converters}") as lab:
        c.log(f"throughput with {converters} converter(s): staging {CLIPS} videos in GridFS")
        messages = [c.stage_video(lab.db, src) for _ in range(CLIPS)]
        procs = [psutil.Process(lab.start("converter").proc.pid) for _ in range(converters)]
        publisher = c.Publisher(lab.env["VIDEO_QUEUE"])
        fdb = c.ferretdb()
        cpu0 = [c.tree_cpu(p)["total"] for p in procs]
        fdb0, machine0, w0 = c.proc_cpu(fdb), c.machine_cpu(), time.time()
        try:
            t0 = time.time()
            for message in messages:
                publisher.publish(message)
            # Polled twice a second: the finish time comes from the jobs' own `updated_at`, and polling as
            # often as the latency benchmark does would put 50 FerretDB queries a second on the machine measured.
            jobs = c.wait_finished(lab.db, [m["job_id"] for m in messages], timeout=1800, poll_s=0.5)
        finally:
            publisher.close()
        machine1, w1 = c.machine_cpu(), time.time()
        elapsed = max(j["updated_at"].timestamp() for j in jobs.values()) - t0
        return {"converters": converters, "jobs": CLIPS, "clip": c.media_info(src), "elapsed_s": round(elapsed, 2),
                "jobs_per_min": round(CLIPS / elapsed * 60, 2),
                "converter_cpu_s": [round(c.tree_cpu(p)["total"] - x, 2) for p, x in zip(procs, cpu0)],
                "ferretdb_cpu_s": round(c.proc_cpu(fdb) - fdb0, 2),
                # Busy share of all cores: near 1.0 means the machine itself, not the converter, is the limit.
                "machine_busy": round((machine1 - machine0) / ((w1 - w0) * (psutil.cpu_count() or 1)), 2)}


def main() -> int:
    c.prepare()
    started = time.monotonic()
    errors = c.Errors()
    c.log(f"latency: {UPLOADS} uploads one after another")
    lat = latency(errors)
    runs: dict[int, dict[str, Any]] = {}
    for n in (1, 2):
        run = errors.run(f"throughput with {n} converter(s)", lambda n=n: throughput(n))
        if run is not None:
            runs[n] = run
    scale = (round(runs[2]["jobs_per_min"] / runs[1]["jobs_per_min"], 3) if 1 in runs and 2 in runs else None)
    targets = [
        c.Target(f"median time from 202 to done ({UPLOADS} sequential 10 s clips)", lat["p50_s"], "<", 0.5, " s",
                 f"p95 {lat['p95_s']} s"),
        c.Target(f"jobs/min with 2 converters / with 1 ({CLIPS} x 10 s clips at once)", scale, ">=", 1.8, "x"),
    ]
    print()
    c.print_table(["measurement", "value", "detail"],
                  [["202 -> done p50", f"{lat['p50_s']} s", f"p95 {lat['p95_s']} s over {len(lat['samples'])} uploads"],
                   *[[f"202 -> done p50 phase: {k}", f"{v} s", ""] for k, v in lat["phase_p50_s"].items()],
                   *[[f"throughput, {n} converter(s)", f"{r['jobs_per_min']} jobs/min",
                      f"{r['jobs']} jobs in {r['elapsed_s']} s; converter CPU {r['converter_cpu_s']} s; "
                      f"FerretDB CPU {r['ferretdb_cpu_s']} s; machine busy {r['machine_busy']:.0%}"]
                     for n, r in runs.items()]])
    rows = [{"kind": "latency", **lat}, *({"kind": "throughput", **r} for r in runs.values())]
    c.write_results(NAME, rows, targets, errors, started, {"scaling": scale,
                                                          "retried_after_server_loss": errors.retried})
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
