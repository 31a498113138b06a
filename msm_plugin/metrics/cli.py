"""``msm-eval``: motion metrics of generated videos, optionally against a reference.

    msm-eval GENERATED [--reference REF] [--out results.json] [--backend auto|decord|imageio]
             [--feature-extractor extractor.pt2] [--flow-network raft.pt2] [--fps 16]
             [--static-threshold 0.00196]

Writes the JSON result and a Markdown table next to it (``results.md``) and prints the
table. Unreadable items are listed under ``errors`` and skipped. Exit status: 0 scored; 1 when
no generated video could be scored (nothing is written) or when a reference was given but none
of it could be compared (the generated set's scores are written); 2 for a usage error, such as
a path that does not exist (checked before any work). Failures are one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._load import load_network
from .energy import DEFAULT_STATIC_THRESHOLD
from .flow import load_flow_network
from .report import evaluate, markdown_table, write_results

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``msm-eval`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="msm-eval",
        description="Motion metrics (motion energy, speed/acceleration, optical flow, smoothness, "
        "VBench-protocol proxies, FVMD-style and Fréchet distances) of generated videos.",
    )
    parser.add_argument("generated", type=Path, help="video file, tensor file (.pt/.npy) or folder of them")
    parser.add_argument("--reference", type=Path, default=None, help="reference videos, same formats")
    parser.add_argument("--out", type=Path, default=Path("results.json"), help="JSON output (Markdown beside it)")
    parser.add_argument("--backend", choices=("auto", "decord", "imageio"), default="auto", help="video decoder")
    parser.add_argument(
        "--feature-extractor",
        type=Path,
        default=None,
        help="torch.export program (.pt2, dynamic batch) or TorchScript file mapping "
        "[B, F, C, H, W] videos in [0, 1] to [B, D] features, for feature_fd",
    )
    parser.add_argument(
        "--flow-network",
        type=Path,
        default=None,
        help="torch.export program (.pt2) or TorchScript file mapping two [P, 3, H, W] frame batches "
        "in [0, 1] to their flow [P, 2, H, W] in pixels (e.g. RAFT, see README); default OpenCV Farneback",
    )
    parser.add_argument(
        "--fps", type=float, default=None, help="frame rate, for VBench's dynamic-degree frame sampling"
    )
    parser.add_argument(
        "--static-threshold",
        type=float,
        default=DEFAULT_STATIC_THRESHOLD,
        help="mean |x[f+1] - x[f]| below which a video counts as static (default: half an 8-bit level)",
    )
    return parser


def _fail(message: str, status: int) -> int:
    print(f"msm-eval: {message}", file=sys.stderr)
    return status


def main(argv=None) -> int:
    """Run ``msm-eval``; returns the exit status (0 scored, 1 nothing scored or reference not compared, 2 usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag, path in (("GENERATED", args.generated), ("--reference", args.reference)):
        if path is not None and not path.exists():
            return _fail(f"error: {flag} {path}: no such file or folder", 2)
    if not args.static_threshold > 0:
        parser.error(f"--static-threshold should be positive, got {args.static_threshold}")
    if args.fps is not None and not args.fps > 0:
        parser.error(f"--fps should be positive, got {args.fps}")
    extractor = None
    if args.feature_extractor is not None:
        if args.reference is None:
            parser.error("--feature-extractor needs --reference to compare against")
        try:
            extractor = load_network(args.feature_extractor, what="feature extractor")
        except ValueError as error:
            parser.error(str(error))
    flow = None
    if args.flow_network is not None:
        try:
            flow = load_flow_network(args.flow_network)
        except ValueError as error:
            parser.error(str(error))
    result = evaluate(
        args.generated,
        args.reference,
        backend=args.backend,
        feature_extractor=extractor,
        static_threshold=args.static_threshold,
        flow=flow,
        fps=args.fps,
    )
    if not result["metrics"]:  # an empty report would only repeat the errors
        (name, reason), more = next(iter(result["errors"].items())), len(result["errors"]) - 1
        also = f" (and {more} more)" if more else ""
        return _fail(f"no video in {args.generated} could be scored: {name}: {reason}{also}", 1)
    json_path, markdown_path = write_results(result, args.out)
    print(markdown_table(result), end="")
    print(f"wrote {json_path} and {markdown_path}")
    if args.reference is not None and not result["reference_metrics"]:
        reasons = {name: reason for name, reason in result["errors"].items() if name.startswith("reference")}
        name, reason = next(iter(reasons.items()), ("reference", "no video read"))
        return _fail(f"the comparison with {args.reference} could not be made: {name}: {reason}", 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
