"""What MSM costs in a full DMD generator step with Wan2.1-1.3B-sized networks, measured side by side.

The toy DMD (:class:`msm_plugin.toy.dmd.ToyDMD`, CausVid's DMD interface) runs one generator step
(``generator_loss`` forward + backward: generator, CFG teacher, critic, DMD loss) with three
randomly initialised diffusers ``WanTransformer3DModel`` at Wan2.1-T2V-1.3B's configuration (30
layers, dim 1536, 12 heads, ffn 8960, text dim 4096) in bf16 with gradient checkpointing, on a
latent ``[1, 21, 16, 60, 104]`` with 512 text tokens. Two DMD objects share the three networks;
one is wrapped with :func:`msm_plugin.wrap_trainer` (lam 0.5). Steps alternate between them (who
goes first alternates too), and both arms draw the same noise and timesteps at each repeat, so the
DMD term of the MSM arm must equal the plain arm's loss. It prints per arm the median and min
seconds per step, the peak memory (CUDA allocator; not measured on CPU) and the calls of each
network per step, then the ratio of medians.

    python benchmarks/step_overhead.py --device cuda             # the real size; ~8 GiB of weights
    python benchmarks/step_overhead.py --size tiny --repeats 3   # a seconds-long CPU run (the tests use it)

Timing excludes the optimiser step, which MSM does not touch.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Dict

import torch
from omegaconf import OmegaConf

from msm_plugin import wrap_trainer
from msm_plugin.adapters import pop_extra_logs
from msm_plugin.toy.dmd import ToyDMD
from msm_plugin.toy.teacher import FlowMatchScheduler, ToyDiffusionWrapper

#: name -> (WanTransformer3DModel kwargs, latent [B, F, C, H, W], text tokens)
SIZES = {
    "wan2.1-1.3b": (
        dict(num_layers=30, num_attention_heads=12, attention_head_dim=128, ffn_dim=8960, text_dim=4096, freq_dim=256),
        (1, 21, 16, 60, 104),
        512,
    ),
    "tiny": (
        dict(num_layers=2, num_attention_heads=2, attention_head_dim=8, ffn_dim=32, text_dim=16, freq_dim=16),
        (1, 5, 4, 8, 8),
        4,
    ),
}
NETWORKS = ("generator", "real_score", "fake_score")


def _cast_like_from_pretrained(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast to ``dtype`` except the modules diffusers keeps in float32 (norms, time embedding, RoPE),
    as ``from_pretrained(torch_dtype=...)`` loads a real checkpoint."""
    keep = set(getattr(model, "_keep_in_fp32_modules", None) or ())
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if not keep & set(name.split(".")):
            tensor.data = tensor.data.to(dtype)


def build_dmd(size: str, device: torch.device, dtype: torch.dtype) -> ToyDMD:
    """A ToyDMD over three fresh Wan transformers of ``size`` (random init, gradient checkpointing)."""
    from diffusers import WanTransformer3DModel

    kwargs, shape, _ = SIZES[size]
    scheduler = FlowMatchScheduler()
    nets = []
    for name in NETWORKS:
        with torch.device(device):  # initialise in place: 1.3B parameters are slow to build on a CPU and move
            model = WanTransformer3DModel(in_channels=shape[2], out_channels=shape[2], **kwargs)
        _cast_like_from_pretrained(model, dtype)
        model.enable_gradient_checkpointing()
        model.requires_grad_(name != "real_score")  # the teacher is frozen, as in CausVid
        nets.append(ToyDiffusionWrapper(model, scheduler))
    # CausVid stage 1 on ODE pairs: a clean latent noised to one of the steps, one generator call per step.
    config = OmegaConf.create(
        {"denoising_step_list": [1000, 757, 522], "real_guidance_scale": 3.5, "backward_simulation": False}
    )
    return ToyDMD(config, *nets, device=device)


def count_calls(dmd: ToyDMD) -> Dict[str, int]:
    """Forward calls of each network, counted by hooks (checkpoint recomputation runs blocks, not these)."""
    counts = dict.fromkeys(NETWORKS, 0)
    for name in NETWORKS:
        getattr(dmd, name).register_forward_pre_hook(lambda module, args, name=name: counts.__setitem__(name, counts[name] + 1))
    return counts


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(size: str = "wan2.1-1.3b", device: str = "cpu", repeats: int = 10, warmup: int = 2, lam: float = 0.5) -> dict:
    """Time both arms; returns ``{arm: {"median_s", "min_s", "peak_gib", "calls"}}`` plus ``dmd_loss_gap``."""
    device = torch.device(device)
    dtype = torch.bfloat16
    _, shape, tokens = SIZES[size]
    plain = build_dmd(size, device, dtype)
    wrapped = ToyDMD(plain.args, plain.generator, plain.real_score, plain.fake_score, device=device)
    wrap_trainer(wrapped, lam=lam)
    counts = count_calls(plain)  # hooks live on the shared networks: one counter serves both arms
    text_dim = SIZES[size][0]["text_dim"]
    g = torch.Generator(device="cpu").manual_seed(0)
    cond = {"prompt_embeds": torch.randn(shape[0], tokens, text_dim, generator=g).to(device, dtype)}
    uncond = {"prompt_embeds": torch.randn(shape[0], tokens, text_dim, generator=g).to(device, dtype)}
    clean = torch.randn(shape, generator=g).to(device, dtype)

    arms = {"dmd": plain, "dmd+msm": wrapped}
    results = {arm: {"times": [], "peaks": [], "calls": None} for arm in arms}
    gaps = []
    for rep in range(warmup + repeats):
        order = list(arms) if rep % 2 == 0 else list(reversed(arms))
        losses = {}
        for arm in order:
            dmd = arms[arm]
            torch.manual_seed(rep)  # same noise and timesteps in both arms at this repeat
            counts.update(dict.fromkeys(NETWORKS, 0))
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            _sync(device)
            start = time.perf_counter()
            loss, _ = dmd.generator_loss(list(shape), cond, uncond, clean)
            loss.backward()
            _sync(device)
            elapsed = time.perf_counter() - start
            logs = pop_extra_logs(dmd)
            losses[arm] = logs["dmd_loss"] if arm == "dmd+msm" else loss.item()
            dmd.generator.zero_grad(set_to_none=True)
            dmd.fake_score.zero_grad(set_to_none=True)
            if rep >= warmup:
                results[arm]["times"].append(elapsed)
                if device.type == "cuda":
                    results[arm]["peaks"].append(torch.cuda.max_memory_allocated(device) / 2**30)
            results[arm]["calls"] = dict(counts)
        gaps.append(abs(losses["dmd+msm"] - losses["dmd"]))
    summary = {
        arm: {
            "median_s": statistics.median(r["times"]),
            "min_s": min(r["times"]),
            "peak_gib": max(r["peaks"]) if r["peaks"] else None,
            "calls": r["calls"],
        }
        for arm, r in results.items()
    }
    summary["dmd_loss_gap"] = max(gaps)
    return summary


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=tuple(SIZES), default="wan2.1-1.3b")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per arm (after 2 warm-up steps)")
    parser.add_argument("--lam", type=float, default=0.5)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats should be >= 1, got {args.repeats}")
    summary = run(args.size, args.device, args.repeats, lam=args.lam)
    print(f"size={args.size} latent={list(SIZES[args.size][1])} device={args.device} bf16 gradient checkpointing "
          f"torch={torch.__version__} repeats={args.repeats} lam={args.lam}")
    print("| arm | median s/step | min s/step | peak GiB | calls generator / teacher / critic |")
    print("|---|---|---|---|---|")
    for arm in ("dmd", "dmd+msm"):
        s = summary[arm]
        peak = "n/a (CPU)" if s["peak_gib"] is None else f"{s['peak_gib']:.2f}"
        calls = " / ".join(str(s["calls"][name]) for name in NETWORKS)
        print(f"| {arm} | {s['median_s']:.4f} | {s['min_s']:.4f} | {peak} | {calls} |")
    ratio = summary["dmd+msm"]["median_s"] / summary["dmd"]["median_s"]
    print(f"dmd+msm / dmd median time: {ratio:.4f}x ({(ratio - 1) * 100:+.2f}%); "
          f"largest |DMD term (msm arm) - DMD loss (plain arm)|: {summary['dmd_loss_gap']:.3g}")
    return summary


if __name__ == "__main__":
    main()
