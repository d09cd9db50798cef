"""ffmpeg and ffprobe as the tests use them to make media and to read an MP3 back (one place for every tier)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True, timeout=120)


def probe(path: Path) -> dict:
    """ffprobe's format and streams of `path`, as JSON."""
    out = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
                          str(path)], capture_output=True, check=True, timeout=60).stdout
    return json.loads(out)


def decoded_seconds(path: Path) -> float:
    """The audio's length as decoded (the MP3 decoder drops the encoder's delay and padding; ffprobe's format
    duration counts whole frames)."""
    out = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "null",
                          "-progress", "pipe:1", "-"], capture_output=True, text=True, check=True, timeout=60).stdout
    times = re.findall(r"^out_time=(\d+):(\d+):([\d.]+)$", out, re.M)
    return max(int(h) * 3600 + int(m) * 60 + float(s) for h, m, s in times)


def integrated_loudness(path: Path) -> float:
    """ffmpeg's EBU R128 meter (ebur128): the integrated loudness of the whole file, in LUFS."""
    err = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-i", str(path), "-map", "0:a:0",
                          "-af", "ebur128", "-f", "null", "-"], capture_output=True, text=True, check=True,
                         timeout=120).stderr
    return float(re.search(r"I:\s+(-?[0-9.]+) LUFS", err[err.rindex("Summary:"):]).group(1))
