"""What MSM's logs cost per generator step, and how many device syncs they cause, side by side in one run.

On one latent (Wan2.1's ``[1, 21, 16, 60, 104]`` by default: 21 latent frames) with a CausVid-like
context (one score timestep per sample, shared by its frames, on the 0-1000 scale), it times the
forward of

- ``loss only``: MSM's loss alone (``msm_loss`` with the same options), what any logging adds to;
- ``default logs``: the registry's ``msm`` term with its default logs, then the host's read of them
  (:func:`msm_plugin.hosts.base.scalar_logs`: one transfer, what ``pop_extra_logs`` does);
- ``per-pair logs``: the same with ``per_pair_logs=True`` (3 (F - 1) keys more: 60 at 21 frames);

alternating the arms at each repeat. It prints the wall-clock median and min milliseconds of each
arm, its median CPU time and that ratio to ``loss only``, the number of keys, and the device
syncs each host's route sees:
the reads of device values (``.item()``, ``.tolist()``, ``bool()``/``float()``/``int()`` of a
tensor, ``nonzero``) and host-to-device ``torch.tensor(..., device=...)`` copies, counted on any
device by a ``TorchFunctionMode`` (on a GPU each is a point where the CPU waits for the device).

    python benchmarks/log_cost.py                         # Wan's latent, CPU, 1 thread
    python benchmarks/log_cost.py --shape 1 5 4 8 8 --repeats 2   # seconds (the tests use it)

The backward pass is not timed: the logs add nothing to it.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from typing import Any, Callable, Dict, List

import torch
from torch.overrides import TorchFunctionMode

from msm_plugin import LossContext, msm_loss
from msm_plugin.hosts.base import scalar_logs
from msm_plugin.losses.msm import MSMTerm

#: Tensor methods / torch functions that make the CPU wait for the device when the data lives there.
READS = {"item", "tolist", "__bool__", "__float__", "__int__", "__index__", "nonzero", "masked_select", "unique"}


class SyncCounter(TorchFunctionMode):
    """Counts :data:`READS` and ``torch.tensor`` / ``torch.as_tensor`` calls given a ``device``."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: List[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in READS or (name in ("tensor", "as_tensor") and kwargs.get("device") is not None):
            self.calls.append(name)
        return func(*args, **kwargs)


def make_context(shape, dtype: torch.dtype) -> LossContext:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g).to(dtype).requires_grad_(True)
    real = torch.randn(shape, generator=g).to(dtype)
    fake = (real.float() + 0.1 * torch.randn(shape, generator=g)).to(dtype)
    timestep = torch.full(shape[:2], 757.0)  # one per sample, shared by its frames (CausVid's bidirectional teacher)
    return LossContext(x, real, fake, timestep=timestep, host="causvid", timestep_scale=1000)


def fresh(ctx: LossContext) -> LossContext:
    """The same tensors in a new context (its lazily computed DMD normaliser not cached yet)."""
    return dataclasses.replace(ctx)


def arms(ctx: LossContext, lam: float) -> Dict[str, Callable[[], Dict[str, Any]]]:
    default, per_pair = MSMTerm(lam=lam), MSMTerm(lam=lam, per_pair_logs=True)

    def loss_only() -> Dict[str, Any]:
        msm_loss(ctx.generated, ctx.pred_real, ctx.pred_fake, timestep=ctx.timestep)
        return {}

    def with_logs(term: MSMTerm) -> Callable[[], Dict[str, Any]]:
        def run() -> Dict[str, Any]:
            _, logs = term(fresh(ctx))  # a new context each step, as the hosts build one: nothing cached
            scalar_logs(logs)
            return logs

        return run

    return {"loss only": loss_only, "default logs": with_logs(default), "per-pair logs": with_logs(per_pair)}


def count_syncs(ctx: LossContext, lam: float) -> Dict[str, Dict[str, int]]:
    """Per arm: syncs in the term itself and in each host's route to its logger."""
    with SyncCounter() as loss_only:
        msm_loss(ctx.generated, ctx.pred_real, ctx.pred_fake, timestep=ctx.timestep)
    n = len(loss_only.calls)
    out = {"loss only": {"keys": 0, "term": n, "causvid_self_forcing": n, "fastvideo": n, "fastgen": n}}
    for arm, per_pair in (("default logs", False), ("per-pair logs", True)):
        term = MSMTerm(lam=lam, per_pair_logs=per_pair)
        with SyncCounter() as in_term:
            _, logs = term(fresh(ctx))
        keys = len(logs) + 1  # + dmd_loss, which the adapters add next to the loss's keys
        on_device = sum(isinstance(v, torch.Tensor) for v in logs.values()) + 1
        with SyncCounter() as one_transfer:
            scalar_logs({**logs, "dmd_loss": torch.zeros((), dtype=torch.float64)})
        out[arm] = {
            "keys": keys,
            "term": len(in_term.calls),
            # CausVid / Self-Forcing: pop_extra_logs reads all scalars in one transfer
            "causvid_self_forcing": len(in_term.calls) + len(one_transfer.calls),
            # FastVideo: the hook hands device scalars over; FastVideo reads each once per optimiser step
            "fastvideo": len(in_term.calls) + on_device,
            # FastGen: loss_map tensors (numbers written by a fill kernel, no copy); its wandb
            # callback reads each with .float().item() every step
            "fastgen": len(in_term.calls) + keys,
        }
    return out


def run(shape=(1, 21, 16, 60, 104), dtype: torch.dtype = torch.float32, repeats: int = 10, warmup: int = 2, lam: float = 0.5) -> Dict[str, Any]:
    ctx = make_context(tuple(shape), dtype)
    fns = arms(ctx, lam)
    wall: Dict[str, List[float]] = {arm: [] for arm in fns}
    cpu: Dict[str, List[float]] = {arm: [] for arm in fns}
    for rep in range(warmup + repeats):
        order = list(fns) if rep % 2 == 0 else list(reversed(fns))
        for arm in order:
            start, start_cpu = time.perf_counter(), time.process_time()
            fns[arm]()
            elapsed, elapsed_cpu = time.perf_counter() - start, time.process_time() - start_cpu
            if rep >= warmup:
                wall[arm].append(elapsed * 1000)
                cpu[arm].append(elapsed_cpu * 1000)
    summary: Dict[str, Any] = {
        arm: {"median_ms": statistics.median(wall[arm]), "min_ms": min(wall[arm]), "cpu_median_ms": statistics.median(cpu[arm])}
        for arm in fns
    }
    summary["syncs"] = count_syncs(ctx, lam)
    return summary


def main(argv=None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=5, default=[1, 21, 16, 60, 104], metavar=("B", "F", "C", "H", "W"))
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per arm (after 2 warm-up calls)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats should be >= 1, got {args.repeats}")
    if args.threads:
        torch.set_num_threads(args.threads)
    summary = run(args.shape, getattr(torch, args.dtype), args.repeats)
    print(f"latent={args.shape} dtype={args.dtype} device=cpu threads={torch.get_num_threads()} "
          f"torch={torch.__version__} repeats={args.repeats}")
    base = summary["loss only"]
    # On a machine shared with other work, wall time includes waiting for a core: the process's CPU
    # time (one thread) is the steadier estimate of each arm's own cost.
    print("| arm | keys added | wall median ms | wall min ms | CPU median ms | CPU median / loss only |")
    print("|---|---|---|---|---|---|")
    for arm in ("loss only", "default logs", "per-pair logs"):
        s = summary[arm]
        keys = summary["syncs"][arm]["keys"]
        print(f"| {arm} | {keys} | {s['median_ms']:.2f} | {s['min_ms']:.2f} | {s['cpu_median_ms']:.2f} "
              f"| {s['cpu_median_ms'] / base['cpu_median_ms']:.3f} |")
    print("device syncs per generator step (term + route to the host's logger):")
    print("| arm | in MSM's call | CausVid / Self-Forcing | FastVideo | FastGen |")
    print("|---|---|---|---|---|")
    for arm, s in summary["syncs"].items():
        print(f"| {arm} | {s['term']} | {s['causvid_self_forcing']} | {s['fastvideo']} | {s['fastgen']} |")
    return summary


if __name__ == "__main__":
    main()
