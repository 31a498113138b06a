"""``msm-demo``: distil a tiny video teacher with DMD and with DMD+MSM on CPU, and show the difference.

Examples::

    msm-demo                          # default: ~10 min on 2 cores from an empty cache
    msm-demo --quick --out /tmp/demo  # < 2 min smoke run
    msm-demo --sweep 0.5 2 4          # also a lam sweep and the trade-off plot
    msm-demo --lora                   # generator and critic as LoRA adapters on one frozen teacher
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace

__all__ = ["build_parser", "config_from_args", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``msm-demo`` argument parser.

    >>> build_parser().parse_args(["--quick", "--seeds", "3", "4"]).seeds
    [3, 4]
    """
    p = argparse.ArgumentParser(prog="msm-demo", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="msm-demo-out", help="output folder (default: msm-demo-out)")
    p.add_argument("--quick", action="store_true", help="tiny teacher and short runs (< 2 min), for smoke tests")
    p.add_argument("--seeds", type=int, nargs="+", help="training seeds (default 0 1 2; quick: 0 1)")
    p.add_argument("--iters", type=int, help="training iterations per run")
    p.add_argument("--lam", type=float, help="MSM weight of the DMD+MSM arm")
    p.add_argument("--sweep", type=float, nargs="+", default=(), help="extra lam values (adds a trade-off plot)")
    p.add_argument("--normalization", choices=["motion", "dmd", "none"], help="MSM normaliser")
    p.add_argument("--order", type=int, choices=[1, 2], help="order of the temporal difference")
    p.add_argument("--teacher-steps", type=int, help="flow-matching steps of the teacher")
    p.add_argument("--batch-size", type=int, help="distillation batch size")
    p.add_argument("--num-eval", type=int, help="evaluation videos per arm")
    p.add_argument("--lora", action="store_true", help="generator and critic as LoRA adapters on one frozen teacher")
    p.add_argument("--wandb", action="store_true", help="log training to Weights & Biases (offline unless WANDB_MODE says otherwise)")
    p.add_argument("--cache-dir", help="teacher cache (default $MSM_DEMO_CACHE or ~/.cache/msm-plugin/toy)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: min(4, number of cores))")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def config_from_args(args):
    """The :class:`~msm_plugin.toy.experiment.ExperimentConfig` that ``args`` describe."""
    from msm_plugin.toy.experiment import ExperimentConfig, quick_config

    config = quick_config() if args.quick else ExperimentConfig()
    changes = {}
    if args.seeds is not None:
        changes["seeds"] = tuple(args.seeds)
    if args.iters is not None:
        changes["iters"] = args.iters
    if args.lam is not None:
        changes["lam"] = args.lam
    if args.sweep:
        changes["sweep"] = tuple(args.sweep)
    if args.num_eval is not None:
        changes["num_eval"] = args.num_eval
    msm = dict(config.msm_options)
    if args.normalization is not None:
        msm["normalization"] = args.normalization
    if args.order is not None:
        msm["order"] = args.order
    changes["msm_options"] = msm
    if args.teacher_steps is not None:
        changes["teacher"] = replace(config.teacher, train_steps=args.teacher_steps)
    if args.batch_size is not None:
        changes["trainer"] = dict(config.trainer, batch_size=args.batch_size)
    return replace(config, **changes)


def main(argv=None) -> int:
    """Run the demo; prints the table and where the files went. Returns the exit code."""
    args = build_parser().parse_args(argv)
    import torch

    from msm_plugin.toy.experiment import run_experiment
    from msm_plugin.toy.report import write_report

    if args.threads is not None and args.threads < 1:
        raise SystemExit(f"msm-demo: --threads should be >= 1, got {args.threads}")
    # The toy model is small: beyond a few threads, synchronisation costs more than it gains.
    torch.set_num_threads(args.threads or min(4, os.cpu_count() or 1))
    if args.wandb:
        os.environ.setdefault("WANDB_MODE", "offline")
    try:
        config = config_from_args(args)
    except (TypeError, ValueError) as error:
        raise SystemExit(f"msm-demo: {error}") from None
    started = time.perf_counter()
    result = run_experiment(config, cache_dir=args.cache_dir, progress=not args.no_progress, lora=args.lora,
                            wandb=args.wandb)
    paths = write_report(result, args.out)
    print((paths["tables"][1]).read_text())
    print(f"parameters: {json.dumps(result['parameters'])}")
    print(f"wrote {sum(len(v) for v in paths.values())} files to {args.out} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
