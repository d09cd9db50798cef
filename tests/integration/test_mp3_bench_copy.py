"""bench/bench_mp3_copy.py runs end to end at a tiny size (BENCH_SMOKE=1); no timing is asserted, only that it
measured each approach."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

pytest.importorskip("psutil", reason="bench/requirements.txt is not installed (make bench installs it)")


def test_the_copy_path_benchmark_measures_copy_re_encode_and_video(servers, tmp_path):
    env = {**os.environ, "BENCH_SMOKE": "1", "BENCH_RESULTS": str(tmp_path / "results"),
           "BENCH_WORK": str(tmp_path / "work")}
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_mp3_copy.py")], env=env, cwd=ROOT / "bench",
                         capture_output=True, text=True, timeout=280)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    doc = json.loads((tmp_path / "results" / "mp3_copy.json").read_text())
    assert doc["smoke"] is True and doc["errors"] == []
    assert [row["approach"] for row in doc["rows"]] == ["copy", "re-encode", "video"]
    assert all(row["cpu_s"] is not None and row["runs"] for row in doc["rows"])
    assert [t["value"] is not None for t in doc["targets"]] == [True]
