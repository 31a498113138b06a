"""How long the motion metrics take on the CPU: 64 toy videos and 16 videos of 49 x 480 x 832.

Times :func:`msm_plugin.metrics.motion_metrics` (generated only, and against a reference set
of the same shape) on random frames, and the part of it spent estimating optical flow (one
Farneback pass over every consecutive pair, the pairs two frames apart and the two end
pairs VBench's static filter uses: ``3F - 1`` flow fields per video). Random frames are the
worst case for Farneback (texture everywhere).

    python benchmarks/metrics_speed.py [--sets toy,wan] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from msm_plugin.metrics import farneback_flow, motion_metrics

SHAPES = {
    "toy": ("64 x 8 x 3 x 16 x 16", (64, 8, 3, 16, 16)),
    "wan": ("16 x 49 x 3 x 480 x 832", (16, 49, 3, 480, 832)),
}


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _flow_seconds(videos: np.ndarray) -> float:
    start = time.perf_counter()
    for video in videos:
        farneback_flow(video[:-1], video[1:])
        farneback_flow(video[:-2], video[2:])
        farneback_flow(video[[0, -1]], video[[-1, 0]])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="toy,wan", help="comma-separated: toy, wan")
    parser.add_argument("--repeats", type=int, default=3, help="median over this many runs (1 for wan)")
    parser.add_argument("--threads", type=int, default=None, help="OpenCV threads (default: library default)")
    args = parser.parse_args()
    if args.threads is not None:
        import cv2

        cv2.setNumThreads(args.threads)
    rng = np.random.default_rng(0)
    motion_metrics(rng.random((2, 3, 3, 16, 16), dtype=np.float32))  # warm-up: first OpenCV calls
    print("| set | motion_metrics (s) | with reference (s) | of which flow, per set (s) |")
    print("|---|---|---|---|")
    for key in args.sets.split(","):
        name, shape = SHAPES[key]
        videos = rng.random(shape, dtype=np.float32)
        reference = rng.random(shape, dtype=np.float32)
        repeats = args.repeats if key == "toy" else 1
        alone = _median_seconds(lambda: motion_metrics(videos), repeats)
        both = _median_seconds(lambda: motion_metrics(videos, reference=reference), repeats)
        flow = _median_seconds(lambda: _flow_seconds(videos), repeats)
        print(f"| {name} | {alone:.2f} | {both:.2f} | {flow:.2f} |", flush=True)
        del videos, reference


if __name__ == "__main__":
    main()
