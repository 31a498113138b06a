"""What MSM costs next to the host's own DMD-loss math, measured side by side in one run.

For each shape (Wan2.1's latent ``[1, 21, 16, 60, 104]`` and a small one) it times forward +
backward of

- ``dmd``: the host's loss math after the networks: ``grad = (pred_fake - pred_real) / n``,
  ``nan_to_num``, ``0.5 * mse(x.double(), (x.double() - grad.double()).detach())``;
- ``msm``: :func:`msm_loss` (default ``"motion"`` normaliser, order 1);
- ``msm_term``: the registry's ``msm`` term with its default logs (what the adapters run),

and the extra peak memory each allocates beyond its inputs (CUDA: the caching allocator's peak;
CPU: the profiler's memory timeline). It also counts network calls MSM adds: score networks are
wrapped in call counters and an adapter-free DMD step is run with and without MSM.

    python benchmarks/overhead.py [--device cuda] [--dtype bf16] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Dict

import torch
import torch.nn.functional as F

from msm_plugin import LossContext, msm_loss
from msm_plugin.losses.msm import MSMTerm

SHAPES = {"wan2.1 [1,21,16,60,104]": (1, 21, 16, 60, 104), "small [2,8,4,16,16]": (2, 8, 4, 16, 16)}


def dmd_math(x, real, fake):
    grad = fake - real
    normalizer = (x.detach() - real).abs().mean(dim=[1, 2, 3, 4], keepdim=True)
    grad = torch.nan_to_num(grad / normalizer)
    loss = 0.5 * F.mse_loss(x.double(), (x.double() - grad.double()).detach())
    loss.backward()


def msm_math(x, real, fake):
    msm_loss(x, real, fake).backward()


_TERM = MSMTerm(lam=1.0)


def msm_term(x, real, fake):
    loss, _ = _TERM(LossContext(x, real, fake))
    loss.backward()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_ms(fns: Dict[str, Callable], x, real, fake, repeats, device) -> Dict[str, float]:
    """Median wall time of each function, run round-robin so that load on the machine hits all alike."""
    runs: Dict[str, list] = {k: [] for k in fns}
    for rep in range(repeats + 3):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn(x, real, fake)
            _sync(device)
            if rep >= 3:  # warm-up
                runs[name].append((time.perf_counter() - start) * 1e3)
            x.grad = None
    return {k: statistics.median(v) for k, v in runs.items()}


def peak_extra_mb(fn, x, real, fake, device) -> float:
    """Peak memory allocated while ``fn`` runs, beyond what was allocated before it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn(x, real, fake)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        from torch.profiler import ProfilerActivity, profile
        from torch.profiler._memory_profiler import MemoryProfileTimeline

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
            fn(x, real, fake)
        _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline(torch.device("cpu"))
        # categories the profiler could attribute to tensors created inside fn
        peak = max(sum(row) for row in sizes) if sizes else 0
    x.grad = None
    return peak / 2**20


class CountingScore(torch.nn.Module):
    """A stand-in score network: a 1x1x1 conv over frames, counting its calls."""

    def __init__(self, channels):
        super().__init__()
        self.conv = torch.nn.Conv3d(channels, channels, 1)
        self.calls = 0

    def forward(self, noisy, t):
        self.calls += 1
        return self.conv(noisy.transpose(1, 2)).transpose(1, 2)


def network_calls(shape, device, dtype) -> Dict[str, int]:
    """Network calls in one DMD generator step, without and with MSM (same predictions reused)."""
    counts = {}
    for with_msm in (False, True):
        gen, real, fake = (CountingScore(shape[2]).to(device, dtype) for _ in range(3))
        z = torch.randn(shape, device=device, dtype=dtype)
        x = gen(z, None)
        with torch.no_grad():
            noisy = x + torch.randn_like(x)
            pred_fake, pred_real = fake(noisy, None), real(noisy, None)
            grad = torch.nan_to_num((pred_fake - pred_real) / (x - pred_real).abs().mean(dim=[1, 2, 3, 4], keepdim=True))
        loss = 0.5 * F.mse_loss(x.double(), (x.double() - grad.double()).detach())
        if with_msm:
            loss = loss + msm_loss(x, pred_real, pred_fake)
        loss.backward()
        counts["dmd+msm" if with_msm else "dmd"] = gen.calls + real.calls + fake.calls
    return counts


def make_inputs(shape, device, dtype):
    """``(x, pred_real, pred_fake)`` on ``device``: drawn on the CPU from seed 0 (the same numbers on
    every device), combined there, then moved; ``x`` requires grad."""
    g = torch.Generator(device="cpu").manual_seed(0)
    x, real, noise = (torch.randn(shape, generator=g) for _ in range(3))
    fake = real + 0.1 * noise
    return x.to(device, dtype).requires_grad_(True), real.to(device, dtype), fake.to(device, dtype)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    fns: Dict[str, Callable] = {"dmd": dmd_math, "msm": msm_math, "msm_term": msm_term}

    print(f"device={device} dtype={args.dtype} torch={torch.__version__} threads={torch.get_num_threads()} repeats={args.repeats}")
    print("| shape | dmd ms | msm ms | msm/dmd time | msm_term/dmd time | dmd extra MiB | msm extra MiB | msm/dmd memory |")
    print("|---|---|---|---|---|---|---|---|")
    for label, shape in SHAPES.items():
        x, real, fake = make_inputs(shape, device, dtype)
        ms = time_ms(fns, x, real, fake, args.repeats, device)
        mem = {k: peak_extra_mb(fns[k], x, real, fake, device) for k in ("dmd", "msm")}
        print(
            f"| {label} | {ms['dmd']:.2f} | {ms['msm']:.2f} | {ms['msm'] / ms['dmd']:.2f}x | {ms['msm_term'] / ms['dmd']:.2f}x "
            f"| {mem['dmd']:.1f} | {mem['msm']:.1f} | {mem['msm'] / mem['dmd']:.2f}x |"
        )
    calls = network_calls(SHAPES["small [2,8,4,16,16]"], device, dtype)
    print(f"network calls per generator step: dmd={calls['dmd']} dmd+msm={calls['dmd+msm']} (MSM adds {calls['dmd+msm'] - calls['dmd']})")


if __name__ == "__main__":
    main()
