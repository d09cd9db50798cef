"""The moviepy approach, for comparison: prints the CPU seconds (self + reaped children) of the conversion call alone."""

import json
import resource
import sys
import time

from moviepy import VideoFileClip


def cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(src: str, dst: str, bitrate: str) -> None:
    # Interpreter start and imports are left out, as the converter's are (it is already running).
    cpu0, wall0 = cpu(), time.perf_counter()
    clip = VideoFileClip(src)
    clip.audio.write_audiofile(dst, bitrate=bitrate, logger=None)
    clip.close()  # reaps moviepy's ffmpeg readers, so their CPU is in RUSAGE_CHILDREN
    print(json.dumps({"cpu_s": cpu() - cpu0, "wall_s": time.perf_counter() - wall0}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
