"""msm-demo: distil a video teacher with DMD and with DMD+MSM on CPU, and measure what happens to motion.

The teacher is exact (the posterior mean of a finite set of synthetic videos whose blob
velocity is known); critic and one-step student are that teacher plus zero-initialised MLP
residuals. Every arm runs the same seeds, prompts and steps, and the report first says whether
the DMD student learnt the data at all.

examples:
  msm-demo                  default: the regime worst for DMD, DMD vs DMD+MSM, 3 seeds (about 10 min CPU)
  msm-demo --quick          smoke run (under 1 min), not evidence; writes msm-demo-quick-out
  msm-demo --regimes        where does DMD lose motion? DMD only, 10 regimes x 3 seeds (about 45 min CPU)
  msm-demo --benchmark      every motion loss against DMD in that regime, 5 seeds (about 50 min CPU)
  msm-demo --lam 0.25 --out my-run

Times are CPU time on one thread of a 2-core x86 machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

__all__ = ["MODES", "build_parser", "check_output_folder", "config_from_args", "main"]

#: mode -> default output folder; each mode writes its own, so one never overwrites another's.
MODES = {
    "default": "msm-demo-out",
    "quick": "msm-demo-quick-out",
    "regimes": "msm-demo-regimes-out",
    "benchmark": "msm-demo-benchmark-out",
}
_REPORT_FILES = ("results.json", "results.md", "regimes.json", "regimes.md")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """The description's examples kept as written, and each real default shown in its option's help."""

    def _get_help_string(self, action):
        if action.default in (None, False, argparse.SUPPRESS) or "default" in (action.help or ""):
            return action.help
        return f"{action.help} (default: {action.default})"


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (``msm-demo: error: ...``, exit 2), as every other refused input."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``msm-demo`` argument parser.

    >>> build_parser().parse_args(["--quick", "--seeds", "3", "4"]).seeds
    [3, 4]
    """
    p = _Parser(prog="msm-demo", description=__doc__, formatter_class=_Formatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="2 seeds x 10 generator steps: a smoke run, not evidence")
    mode.add_argument("--regimes", action="store_true", help="the regime map: plain DMD in 10 regimes, 3 seeds each")
    mode.add_argument("--benchmark", action="store_true",
                      help="DMD against DMD+MSM at lam 0.25, 0.5, 1, MSM with per-pair weights and the temporal "
                           "variance regulariser, in the worst regime for DMD, 5 seeds")
    p.add_argument("--out", help="output folder (default: msm-demo-out, msm-demo-quick-out, msm-demo-regimes-out or "
                                 "msm-demo-benchmark-out by mode; created only when the run ends)")
    p.add_argument("--force", action="store_true",
                   help="overwrite a folder that holds a report of another kind (another mode, or not msm-demo's)")
    p.add_argument("--seeds", type=int, nargs="+", help="training seeds (default 0 1 2; --quick 0 1; --benchmark 0-4)")
    p.add_argument("--steps", type=int, help="generator steps per run (default 400; --quick 10)")
    p.add_argument("--checkpoints", type=int, help="evaluations during training (default 4; --quick 2)")
    p.add_argument("--num-eval", type=int, help="evaluation videos per run (default 64; --quick 16)")
    p.add_argument("--lam", type=float, help="MSM weight of the DMD+MSM arm (default: MSM's own, 1)")
    p.add_argument("--normalization", choices=["motion", "dmd", "none"],
                   help="MSM normaliser of the DMD+MSM arm (default: MSM's own, motion)")
    p.add_argument("--wandb", action="store_true", help="log training to Weights & Biases (offline unless WANDB_MODE says otherwise)")
    # One thread: the networks are small, and on a shared machine oversubscribed OpenMP threads
    # cost more than they gain; the published times are one-thread CPU times.
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def _mode(args) -> str:
    return "quick" if args.quick else "regimes" if args.regimes else "benchmark" if args.benchmark else "default"


def config_from_args(args):
    """The :class:`~msm_plugin.toy.experiment.ExperimentConfig` that ``args`` describe (for the regime
    map: the base every cell changes)."""
    from msm_plugin.toy.benchmark import benchmark_config
    from msm_plugin.toy.experiment import ARM_DMD, Arm, ExperimentConfig, msm_arm, quick_config
    from msm_plugin.toy.regimes import demo_base

    mode = _mode(args)
    if mode in ("regimes", "benchmark") and (args.lam is not None or args.normalization is not None):
        raise ValueError(f"--lam and --normalization set the DMD+MSM arm of the default run; --{mode} fixes its own arms")
    # The map's cells change one thing each from the base regime; every other mode runs in the
    # regime the map found worst for DMD.
    config = {"quick": quick_config, "benchmark": benchmark_config, "regimes": ExperimentConfig}.get(mode, demo_base)()
    changes = {}
    if mode in ("default", "quick"):
        options = {k: v for k, v in (("lam", args.lam), ("normalization", args.normalization)) if v is not None}
        changes["arms"] = (Arm(ARM_DMD), msm_arm(**options))
    for name in ("steps", "checkpoints", "num_eval"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.seeds is not None:
        changes["seeds"] = tuple(args.seeds)
    if "steps" in changes and "checkpoints" not in changes:
        changes["checkpoints"] = min(config.checkpoints, changes["steps"])
    return replace(config, **changes)


def check_output_folder(out, mode: str, force: bool = False) -> None:
    """Refuse, before any work and without creating anything, an ``out`` that cannot take this run's report.

    Raises ``ValueError`` when ``out`` is a file, or holds a report of another kind (another mode,
    or files msm-demo did not write) and ``force`` is off; ``OSError`` when the folder could not
    be created or written. The same mode may overwrite its own earlier report.
    """
    from msm_plugin.toy.report import REPORT_KIND_KEY

    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    if path.is_dir() and not force:
        found = [name for name in _REPORT_FILES if (path / name).exists()]
        if found:
            try:
                kind = json.loads((path / "results.json").read_text()).get(REPORT_KIND_KEY) if "results.json" in found else (
                    "regimes" if "regimes.json" in found else None)
            except (OSError, ValueError, AttributeError):
                kind = None
            if kind != mode:
                what = f"an msm-demo {kind} report" if kind else f"files msm-demo did not write ({', '.join(found)})"
                raise ValueError(f"--out {out} holds {what}; this {mode} run would overwrite it: choose another --out "
                                 "or pass --force")
    parent = path if path.is_dir() else next((p for p in path.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise OSError(f"cannot write to --out {out}: {parent or path} is not a writable folder")


def _fail(message: str) -> int:
    print(f"msm-demo: error: {message}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    """Run the demo; prints the results and where the files went. Returns the exit code (2: bad input)."""
    args = build_parser().parse_args(argv)
    mode = _mode(args)
    out = args.out or MODES[mode]
    if args.threads < 1:
        return _fail(f"--threads should be >= 1, got {args.threads}")
    try:
        config = config_from_args(args)
        check_output_folder(out, mode, args.force)
    except (TypeError, ValueError, OSError) as error:
        return _fail(str(error))
    import torch

    torch.set_num_threads(args.threads)
    if args.wandb:
        os.environ.setdefault("WANDB_MODE", "offline")
    started, cpu_started = time.perf_counter(), time.process_time()
    if mode == "regimes":
        written = _run_regimes(config, out, progress=not args.no_progress)
    else:
        from msm_plugin.toy.experiment import run_experiment
        from msm_plugin.toy.report import write_report

        result = run_experiment(config, progress=not args.no_progress, wandb=args.wandb)
        result["smoke"] = mode == "quick"
        paths = write_report(result, out, kind=mode)
        print(paths["tables"][1].read_text())
        written = sum(len(v) for v in paths.values())
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    print(f"wrote {written} files to {out} in {wall:.0f} s ({cpu:.0f} s CPU time, {args.threads} thread(s))")
    return 0


def _run_regimes(config, out, progress: bool) -> int:
    from msm_plugin.toy.regimes import plot_regime_map, regime_markdown, run_regime_map
    from msm_plugin.toy.report import jsonable

    regime_map = run_regime_map(base=config, progress=progress)
    folder = Path(out)
    (folder / "plots").mkdir(parents=True, exist_ok=True)
    (folder / "regimes.json").write_text(json.dumps(jsonable(regime_map), indent=2, allow_nan=False) + "\n")
    text = regime_markdown(regime_map)
    (folder / "regimes.md").write_text(text)
    plot_regime_map(regime_map, folder / "plots" / "regime_map.png")
    print(text)
    return 3


if __name__ == "__main__":
    sys.exit(main())
