"""MP3 copy path benchmark: what an MP3 upload costs the converter when it is copied (no option that needs
re-encoding) against converting the same file (bitrate=192), and against converting a video's sound track.

Each approach runs the converter's own steps in this process: convert.to_mp3 (ffmpeg under prlimit, exactly the
converter's command) and convert.finish_mp3 (the tag). CPU is this process's plus its reaped children's (ffmpeg),
so the Python tag rewrite counts too; GridFS is left out, as it is the same for all three.
"""

from __future__ import annotations

import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import common as c

sys.path.insert(0, str(c.ROOT / "converter"))
from converter.convert import finish_mp3, to_mp3  # noqa: E402
from mp3core.contract import Options  # noqa: E402

NAME = "mp3_copy"
ROUNDS = 1 if c.SMOKE else 5
SECONDS = 6 if c.SMOKE else 600  # a 10 minute MP3 (a podcast episode, an album side)


def mp3_source(seconds: float) -> Path:
    """A 192 kbit/s MP3 with a title and an artist, like one a user would upload."""
    def make(out: Path) -> None:
        c._ffmpeg("-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}",
                  "-ac", "2", "-c:a", "libmp3lame", "-b:a", "192k", "-metadata", "title=Episode",
                  "-metadata", "artist=Someone", "-f", "mp3", str(out))
    return c._cached(c.WORK / f"episode-{seconds:g}s.mp3", make)


def cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def job(src: Path, work: Path, options: Options, container: str) -> dict[str, Any]:
    """One job's conversion steps, as handler._convert runs them; CPU and wall time, and the MP3's size."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    dst = work / "audio.mp3"
    cpu0, t0 = cpu(), time.perf_counter()
    converted: list[float] = []
    to_mp3(src, dst, options, on_progress=converted.append, container=container)
    finish_mp3(src, dst, options, title="episode", duration_s=max(converted, default=None), container=container)
    result = {"cpu_s": cpu() - cpu0, "wall_s": time.perf_counter() - t0, "mp3_bytes": dst.stat().st_size}
    shutil.rmtree(work)
    return result


def main() -> int:
    c.prepare()
    started = time.monotonic()
    errors = c.Errors()
    c.log("making media (cached in bench/.work)")
    mp3 = mp3_source(SECONDS)
    video = c.looped(c.clip(3 if c.SMOKE else 60), seconds=SECONDS)
    work = c.WORK / "mp3-copy"
    approaches: dict[str, Callable[[], dict[str, Any]]] = {
        "copy": lambda: job(mp3, work, Options(), "audio/mpeg"),
        "re-encode": lambda: job(mp3, work, Options(bitrate=192), "audio/mpeg"),
        "video": lambda: job(video, work, Options(), "video/mp4"),
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in approaches}
    order = list(approaches)
    for r in range(ROUNDS):
        # Interleaved, the order rotating each round: a slow spell of the shared machine hits every approach.
        for name in order[r % len(order):] + order[:r % len(order)]:
            c.log(f"round {r + 1}/{ROUNDS}: {name}")
            result = errors.run(name, approaches[name])
            if result is not None:
                runs[name].append(result)
    med = {name: c.median([r["cpu_s"] for r in rs]) if rs else None for name, rs in runs.items()}
    wall = {name: c.median([r["wall_s"] for r in rs]) if rs else None for name, rs in runs.items()}
    ratio = round(med["copy"] / med["re-encode"], 4) if med["copy"] and med["re-encode"] else None
    rows = [{"approach": name, "input": (mp3 if name != "video" else video).name,
             "cpu_s": med[name], "wall_s": wall[name], "runs": rs} for name, rs in runs.items()]
    targets = [c.Target(f"MP3 upload copied / converted, CPU, {SECONDS:g} s MP3", ratio, "<=", 0.1, "x",
                        "copy: -c:a copy and the tag; converted: the same file with bitrate=192")]
    print()
    c.print_table(["approach", "input", "CPU s (median)", "wall s (median)"],
                  [[r["approach"], r["input"], f"{r['cpu_s']:.3f}" if r["cpu_s"] is not None else "-",
                    f"{r['wall_s']:.3f}" if r["wall_s"] is not None else "-"] for r in rows])
    c.write_results(NAME, rows, targets, errors, started, {"rounds": ROUNDS, "seconds": SECONDS})
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
