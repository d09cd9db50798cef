"""The benchmarks execute end to end at tiny sizes (BENCH_SMOKE=1); no timing is asserted, only that each measured."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

# The bench tools are installed by `make bench` (bench/requirements.txt), not by the dev requirements.
pytest.importorskip("psutil", reason="bench/requirements.txt is not installed (make bench installs it)")
pytest.importorskip("moviepy", reason="bench/requirements.txt is not installed (make bench installs it)")
if not (shutil.which("py-spy") or Path(sys.executable).with_name("py-spy").exists()):
    pytest.skip("py-spy from bench/requirements.txt is not installed", allow_module_level=True)

BENCHMARKS = ("convert", "transfer", "e2e", "profile", "slow_clients", "mp3_copy", "capacity")


def test_every_benchmark_runs_and_measures_every_target(servers, tmp_path):
    env = {**os.environ, "BENCH_SMOKE": "1", "BENCH_RESULTS": str(tmp_path / "results"),
           "BENCH_WORK": str(tmp_path / "work")}
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "run_all.py")], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=280)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]

    for name in BENCHMARKS:
        doc = json.loads((tmp_path / "results" / f"{name}.json").read_text())
        assert doc["smoke"] is True
        assert doc["errors"] == [], doc["errors"]
        assert doc["rows"], f"{name} recorded no measurements"
        # Every target got a number: a None would mean a measurement silently did not happen.
        assert [t["name"] for t in doc["targets"] if t["value"] is None] == []
    summary = json.loads((tmp_path / "results" / "summary.json").read_text())
    assert summary["failed"] == []
    assert {row["benchmark"] for row in summary["targets"]} == {"convert", "transfer", "e2e", "slow_clients", "mp3_copy"}

    [row] = json.loads((tmp_path / "results" / "slow_clients.json").read_text())["rows"]
    assert row["healthz_loaded"]["samples"] > 0 and row["healthz_loaded"]["failures"] == []
    assert row["slow_connections"]["bodies_answered_early"] == 0  # every trickling body was being read

    copy = json.loads((tmp_path / "results" / "mp3_copy.json").read_text())
    assert [row["approach"] for row in copy["rows"]] == ["copy", "re-encode", "video"]
    assert all(row["cpu_s"] is not None and row["runs"] for row in copy["rows"])
    capacity = json.loads((tmp_path / "results" / "capacity.json").read_text())
    assert capacity["figures"] and None not in capacity["figures"].values()
