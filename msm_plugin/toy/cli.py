"""msm-demo: distil a video teacher with DMD and with DMD+MSM on CPU, and measure what happens to motion.

The teacher is exact (the posterior mean of a finite set of synthetic videos whose blob
velocity is known); critic and one-step student are that teacher plus zero-initialised tiny
diffusers Wan residuals. Every arm runs the same seeds, prompts and iterations.

examples:
  msm-demo                          default: 3 seeds, DMD and DMD+MSM (about 7 min on 2 idle cores)
  msm-demo --quick --out /tmp/demo  smoke run (under 1 min), not evidence
  msm-demo --pareto                 DMD + lam {0.25, 0.5, 1, 2} x normalization {motion, dmd}
  msm-demo --lam 0.5 --normalization dmd
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

__all__ = ["build_parser", "check_writable", "config_from_args", "main"]


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """The description's examples kept as written, and each real default shown in its option's help."""

    def _get_help_string(self, action):
        if action.default in (None, False, argparse.SUPPRESS) or "default" in (action.help or ""):
            return action.help
        return f"{action.help} (default: {action.default})"


def build_parser() -> argparse.ArgumentParser:
    """The ``msm-demo`` argument parser.

    >>> build_parser().parse_args(["--quick", "--seeds", "3", "4"]).seeds
    [3, 4]
    """
    p = argparse.ArgumentParser(prog="msm-demo", description=__doc__, formatter_class=_Formatter)
    p.add_argument("--out", default="msm-demo-out", help="output folder (checked writable before any work)")
    p.add_argument("--quick", action="store_true", help="2 seeds x 20 iterations: a smoke run, not evidence")
    p.add_argument("--pareto", action="store_true",
                   help="run DMD and MSM at lam 0.25, 0.5, 1, 2 with both normalizations (9 arms, about 30 min)")
    p.add_argument("--options", action="store_true",
                   help="run DMD, the paper's MSM and MSM with each option (binomial smoothing, warm-up, t >= 0.5) at --lam")
    p.add_argument("--framewise-critic", action="store_true",
                   help="the critic's residual sees each frame alone (no temporal structure)")
    p.add_argument("--seeds", type=int, nargs="+", help="training seeds (default 0 1 2; --quick: 0 1)")
    p.add_argument("--iters", type=int, help="training iterations per run (default 400; --quick: 20)")
    p.add_argument("--checkpoints", type=int, help="evaluations during training (default 4; --quick: 2)")
    p.add_argument("--lam", type=float, default=1.0, help="MSM weight of the DMD+MSM arm")
    p.add_argument("--normalization", choices=["motion", "dmd", "none"], default="motion",
                   help="MSM normaliser of the DMD+MSM arm")
    p.add_argument("--num-eval", type=int, help="evaluation videos per run (default 64; --quick: 16)")
    p.add_argument("--wandb", action="store_true", help="log training to Weights & Biases (offline unless WANDB_MODE says otherwise)")
    # One thread: the networks are tiny, and on a shared machine oversubscribed OpenMP threads
    # cost more than they gain (measured: 2 threads under load took 45 min for a 7-min run).
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def config_from_args(args):
    """The :class:`~msm_plugin.toy.experiment.ExperimentConfig` that ``args`` describe."""
    from msm_plugin.toy.experiment import ExperimentConfig, default_arms, options_arms, pareto_arms, quick_config

    if args.pareto and args.options:
        raise ValueError("--pareto and --options are two different sweeps: choose one")
    config = quick_config() if args.quick else ExperimentConfig()
    if args.pareto:
        arms = pareto_arms()
    elif args.options:
        arms = options_arms(args.lam)
    else:
        arms = default_arms(args.lam, args.normalization)
    changes = {"arms": arms, "framewise_critic": args.framewise_critic}
    for name in ("iters", "checkpoints", "num_eval"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.seeds is not None:
        changes["seeds"] = tuple(args.seeds)
    if "iters" in changes and "checkpoints" not in changes:
        changes["checkpoints"] = min(config.checkpoints, changes["iters"])
    return replace(config, **changes)


def check_writable(out) -> None:
    """Create ``out`` and write a probe file there, or raise ``OSError`` saying why not."""
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f".msm-demo-probe-{os.getpid()}"
    probe.write_text("")
    probe.unlink()


def _fail(message: str) -> int:
    print(f"msm-demo: error: {message}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    """Run the demo; prints the results and where the files went. Returns the exit code (2: bad input)."""
    args = build_parser().parse_args(argv)
    if args.threads < 1:
        return _fail(f"--threads should be >= 1, got {args.threads}")
    if args.lam <= 0:
        return _fail(f"--lam should be > 0 (lam 0 is the DMD arm), got {args.lam:g}")
    try:
        check_writable(args.out)
    except OSError as error:
        return _fail(f"cannot write to --out {args.out}: {error.strerror or error}")
    try:
        config = config_from_args(args)
    except (TypeError, ValueError) as error:
        return _fail(str(error))
    import torch

    from msm_plugin.toy.experiment import run_experiment
    from msm_plugin.toy.report import write_report

    torch.set_num_threads(args.threads)
    if args.wandb:
        os.environ.setdefault("WANDB_MODE", "offline")
    started = time.perf_counter()
    result = run_experiment(config, progress=not args.no_progress, wandb=args.wandb)
    paths = write_report(result, args.out)
    print(paths["tables"][1].read_text())
    print(f"parameters: {json.dumps(result['parameters'])}")
    print(f"wrote {sum(len(v) for v in paths.values())} files to {args.out} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
