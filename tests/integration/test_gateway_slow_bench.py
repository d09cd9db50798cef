"""bench/bench_slow_clients.py runs end to end at a tiny size (BENCH_SMOKE=1) and measures every target."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

pytest.importorskip("psutil", reason="bench/requirements.txt is not installed (make bench installs it)")


def test_the_slow_client_benchmark_runs_and_measures_every_target(servers, tmp_path):
    env = {**os.environ, "BENCH_SMOKE": "1", "BENCH_RESULTS": str(tmp_path / "results"),
           "BENCH_WORK": str(tmp_path / "work")}
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_slow_clients.py")], env=env,
                         cwd=ROOT / "bench", capture_output=True, text=True, timeout=280)
    doc = json.loads((tmp_path / "results" / "slow_clients.json").read_text())
    assert doc["smoke"] is True
    assert doc["errors"] == [], run.stdout[-3000:] + run.stderr[-2000:]
    assert [t["name"] for t in doc["targets"] if t["value"] is None] == []
    [row] = doc["rows"]
    assert row["healthz_loaded"]["samples"] > 0 and row["healthz_loaded"]["failures"] == []
    assert row["slow_connections"]["bodies_answered_early"] == 0  # every trickling body was being read
