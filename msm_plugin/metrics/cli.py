"""``msm-eval``: motion metrics of generated videos, optionally against a reference.

    msm-eval GENERATED [--reference REF] [--out msm-eval-out/results.json] [--force] [--groups K|files]
             [--backend auto|decord|imageio] [--feature-extractor extractor.pt2] [--flow-network raft.pt2]
             [--fps 16] [--static-threshold 0.00196]

Writes the JSON result and a Markdown report next to it (default ``msm-eval-out/results.json`` and
``results.md`` in the current folder) and prints the report. A file already at either path that
msm-eval did not write (another tool's ``results.json``) is refused unless ``--force``. The
generated videos are scored as one pooled set, and with ``--groups`` per group as well; the report
says which. Unreadable items are listed under ``errors`` and skipped. Exit status: 0 scored; 1 when
no generated video could be scored (nothing is written) or when a reference was given but none of
it could be compared (the generated set's scores are written); 2 for a usage error, such as a path
that does not exist or a report in the way (checked before any work). Failures are one line on
stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._load import load_network
from .energy import DEFAULT_STATIC_THRESHOLD
from .flow import load_flow_network
from .report import evaluate, foreign_report, markdown_report, report_paths, write_results

__all__ = ["DEFAULT_OUT", "build_parser", "main"]

#: Where the report goes without ``--out``: a folder of its own, so that running msm-eval inside
#: another tool's output folder (``msm-demo-out/``) cannot clobber that tool's ``results.json``.
DEFAULT_OUT = Path("msm-eval-out") / "results.json"


def build_parser() -> argparse.ArgumentParser:
    """The ``msm-eval`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="msm-eval",
        description="Motion metrics (motion energy, speed/acceleration, optical flow, smoothness, "
        "VBench-protocol proxies, FVMD-style and Fréchet distances) of generated videos.",
    )
    parser.add_argument("generated", type=Path, help="video file, tensor file (.pt/.npy) or folder of them")
    parser.add_argument("--reference", type=Path, default=None, help="reference videos, same formats")
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="JSON report; the Markdown report goes beside it as .md (default: %(default)s, in the current folder)",
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite files at --out that msm-eval did not write (it replaces its own reports anyway)"
    )
    parser.add_argument(
        "--groups",
        type=_groups,
        default=None,
        metavar="K|files",
        help="besides the pooled set, score K equal consecutive groups of the generated videos (e.g. the seeds "
        "in msm-demo's tensors/<arm>.pt) or each file of a GENERATED folder, with their mean ± std "
        "(default: the pooled set only)",
    )
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
        "in [0, 1] to their flow [P, 2, H, W] in pixels (e.g. RAFT, see the metrics docs); default OpenCV Farneback",
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


def _groups(text: str):
    """``--groups``: a positive int or ``files``."""
    if text == "files":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of groups or 'files', got {text!r}")
    return value


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
    for path in report_paths(args.out):
        if not args.force and foreign_report(path):
            return _fail(
                f"error: --out: {path} exists and is not a report msm-eval wrote; give another --out, "
                "or --force to overwrite it",
                2,
            )
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
    try:
        result = evaluate(
            args.generated,
            args.reference,
            backend=args.backend,
            feature_extractor=extractor,
            static_threshold=args.static_threshold,
            flow=flow,
            fps=args.fps,
            groups=args.groups,
        )
    except ValueError as error:  # --groups that do not divide the videos read
        return _fail(f"error: {error}", 2)
    if not result["metrics"]:  # an empty report would only repeat the errors
        (name, reason), more = next(iter(result["errors"].items())), len(result["errors"]) - 1
        also = f" (and {more} more)" if more else ""
        return _fail(f"no video in {args.generated} could be scored: {name}: {reason}{also}", 1)
    json_path, markdown_path = write_results(result, args.out)
    print(markdown_report(result), end="")
    print(f"wrote {json_path} and {markdown_path}")
    if args.reference is not None and not result["reference_metrics"]:
        reasons = {name: reason for name, reason in result["errors"].items() if name.startswith("reference")}
        name, reason = next(iter(reasons.items()), ("reference", "no video read"))
        return _fail(f"the comparison with {args.reference} could not be made: {name}: {reason}", 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
