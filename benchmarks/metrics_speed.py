"""How long the weight-free motion metrics take on the CPU, per set size and per stage.

Times :func:`msm_plugin.metrics.motion_metrics` (generated only, and against a reference of
the same size) on random videos, plus its most expensive stage, the Farneback flow, alone.
Random frames are the worst case for Farneback (texture everywhere).

    python benchmarks/metrics_speed.py [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from msm_plugin.metrics import flow_statistics, motion_metrics

SHAPES = {
    "toy 64x8x3x16x16": (64, 8, 3, 16, 16),
    "64x16x3x64x64": (64, 16, 3, 64, 64),
    "16x16x3x256x256": (16, 16, 3, 256, 256),
}


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: first OpenCV call and allocator growth
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch/OpenCV threads (default: library default)")
    args = parser.parse_args()
    if args.threads is not None:
        import cv2

        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    rng = np.random.default_rng(0)
    print("| set | motion_metrics (s) | with reference (s) | flow only (s) |")
    print("|---|---|---|---|")
    for name, shape in SHAPES.items():
        videos = torch.from_numpy(rng.random(shape, dtype=np.float32))
        reference = torch.from_numpy(rng.random(shape, dtype=np.float32))
        repeats = args.repeats if shape[-1] <= 64 else max(1, args.repeats // 2)
        alone = _median_seconds(lambda: motion_metrics(videos), repeats)
        both = _median_seconds(lambda: motion_metrics(videos, reference=reference), repeats)
        flow = _median_seconds(lambda: flow_statistics(videos), repeats)
        print(f"| {name} | {alone:.3f} | {both:.3f} | {flow:.3f} |")


if __name__ == "__main__":
    main()
