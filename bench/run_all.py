"""`make bench`: runs each benchmark in turn, then prints every target in one table and writes results/summary.*."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import common as c

HERE = Path(__file__).resolve().parent
# name -> script; `run_all.py convert e2e` runs a subset.
BENCHMARKS = {"convert": "bench_convert.py", "transfer": "bench_transfer.py", "e2e": "bench_e2e.py",
              "profile": "profile_steps.py", "slow_clients": "bench_slow_clients.py",
              "mp3_copy": "bench_mp3_copy.py", "capacity": "bench_capacity.py"}


def main(argv: list[str]) -> int:
    c.prepare()
    chosen = argv or list(BENCHMARKS)
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        sys.exit(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    began = datetime.now(timezone.utc).replace(microsecond=0)
    machine = c.machine()  # load average before we add any
    started = time.monotonic()
    failed = []
    for name in chosen:
        c.log(f"=== {name}: python bench/{BENCHMARKS[name]}")
        # One process per benchmark: a crash in one still lets the others run and report.
        proc = subprocess.Popen([sys.executable, str(HERE / BENCHMARKS[name])], cwd=HERE)
        try:
            returncode = proc.wait()
        except BaseException:
            # Stopped (Ctrl-C, SIGTERM): let the benchmark stop the services it started and drop its databases.
            proc.terminate()
            proc.wait(60)
            raise
        if returncode != 0:
            failed.append(name)

    rows, docs = [], {}
    for name in chosen:
        path = c.RESULTS / f"{name}.json"
        doc = json.loads(path.read_text()) if path.exists() else None
        if doc is None or datetime.fromisoformat(doc["finished_at"]) < began:
            if name not in failed:
                failed.append(name)
            rows.append([name, "(no fresh results)", "-", "-", "NOT MEASURED"])
            continue
        docs[name] = doc
        for t in doc["targets"]:
            value = "-" if t["value"] is None else f"{t['value']:g}{t['unit']}"
            rows.append([name, t["name"], value, f"{t['op']} {t['limit']:g}{t['unit']}", c.verdict(t["met"])])
        for error in doc["errors"]:
            rows.append([name, f"error: {error[:110]}", "-", "-", "ERROR"])

    print()
    c.print_table(["benchmark", "target", "value", "limit", "verdict"], rows)
    summary = {"started_at": began.isoformat(), "duration_s": round(time.monotonic() - started),
               "smoke": c.SMOKE, "machine": machine, "failed": failed,
               "targets": [dict(zip(("benchmark", "target", "value", "limit", "verdict"), r)) for r in rows]}
    (c.RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (c.RESULTS / "summary.md").write_text(markdown(rows, summary))
    c.log(f"total {summary['duration_s']} s; summary in {c.RESULTS / 'summary.md'}")
    if failed:
        c.log(f"benchmarks with errors: {', '.join(failed)} (see their output above)")
    return 1 if failed else 0


def markdown(rows: list[list[str]], summary: dict) -> str:
    m = summary["machine"]
    lines = [f"Run {summary['started_at']}, {summary['duration_s']} s; {m['cores']} x {m['cpu']}, {m['memory_gib']} GiB, "
             f"Linux {m['kernel']}, Python {m['python']}, ffmpeg {m['ffmpeg']}, load {m['load_avg_at_start']}.", "",
             "| benchmark | target | value | limit | verdict |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
