"""benchmarks/: the step-cost script at a tiny CPU size, its Wan2.1-1.3B configuration, and overhead.py's inputs."""

import importlib.util
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def _load(name):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_step_overhead_tiny_run_counts_calls_and_reproduces_the_dmd_term(capsys):
    step = _load("step_overhead")
    summary = step.main(["--size", "tiny", "--repeats", "2"])
    for arm in ("dmd", "dmd+msm"):
        # CausVid's generator step on ODE pairs: one generator call, CFG teacher twice, critic once.
        assert summary[arm]["calls"] == {"generator": 1, "real_score": 2, "fake_score": 1}
        assert summary[arm]["median_s"] > 0 and summary[arm]["peak_gib"] is None
    # Same seed per repeat, same kernels in one process: the wrapped host's DMD term is the plain loss, exactly.
    assert summary["dmd_loss_gap"] == 0
    out = capsys.readouterr().out
    assert "| dmd | " in out and "| dmd+msm | " in out and "dmd+msm / dmd median time: " in out


def test_step_overhead_networks_get_gradients_and_stay_fp32_where_diffusers_keeps_them():
    step = _load("step_overhead")
    dmd = step.build_dmd("tiny", torch.device("cpu"), torch.bfloat16)
    cond, uncond = ({"prompt_embeds": torch.randn(1, 4, 16, dtype=torch.bfloat16)} for _ in range(2))
    loss, _ = dmd.generator_loss([1, 5, 4, 8, 8], cond, uncond, torch.randn(1, 5, 4, 8, 8, dtype=torch.bfloat16))
    loss.backward()
    generator = dmd.generator.model
    assert generator.is_gradient_checkpointing
    assert all(p.grad is not None for p in generator.parameters())
    assert all(p.grad is None for p in dmd.real_score.parameters())  # the teacher is frozen
    assert generator.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16
    assert generator.blocks[0].norm2.weight.dtype == torch.float32  # in diffusers' _keep_in_fp32_modules


def test_step_overhead_size_is_wan2_1_1_3b():
    """Built on the meta device (no memory): 30 blocks, each with the parameter count of dim 1536, ffn 8960."""
    from diffusers import WanTransformer3DModel

    kwargs, shape, tokens = _load("step_overhead").SIZES["wan2.1-1.3b"]
    with torch.device("meta"):
        model = WanTransformer3DModel(in_channels=16, out_channels=16, **kwargs)
    d, f = 1536, 8960
    # q, k, v, out (+ bias) in self- and cross-attention; the FFN; RMS q/k norms (4d), cross-attn
    # LayerNorm (2d) and the 6-way modulation table (6d).
    per_block = 8 * (d * d + d) + (2 * d * f + f + d) + 4 * d + 2 * d + 6 * d
    assert len(model.blocks) == 30
    assert all(sum(p.numel() for p in block.parameters()) == per_block for block in model.blocks)
    assert shape == (1, 21, 16, 60, 104) and tokens == 512


def test_overhead_inputs_are_built_on_the_cpu_then_moved():
    """The `--device cuda` crash: a CPU tensor added to a device tensor. The meta device rejects that mix too."""
    make_inputs = _load("overhead").make_inputs
    x, real, fake = make_inputs((1, 3, 2, 4, 4), torch.device("meta"), torch.bfloat16)
    assert {t.device.type for t in (x, real, fake)} == {"meta"} and {t.dtype for t in (x, real, fake)} == {torch.bfloat16}
    assert x.requires_grad and not real.requires_grad
    cpu = make_inputs((1, 3, 2, 4, 4), torch.device("cpu"), torch.float32)
    g = torch.Generator().manual_seed(0)
    draws = [torch.randn(1, 3, 2, 4, 4, generator=g) for _ in range(3)]
    assert torch.equal(cpu[0], draws[0]) and torch.equal(cpu[1], draws[1]) and torch.equal(cpu[2], draws[1] + 0.1 * draws[2])


def test_log_cost_counts_keys_and_device_syncs_per_route(capsys):
    log_cost = _load("log_cost")
    with log_cost.SyncCounter() as counter:  # what it counts: reads of device values and copies to a device
        torch.ones(2).sum().item(), bool(torch.ones(())), torch.ones(2).tolist(), torch.tensor(0.5, device="cpu")
        torch.full((), 0.5), torch.ones(2) + 1  # a fill kernel and arithmetic: no sync
    assert counter.calls == ["item", "__bool__", "tolist", "tensor"]
    summary = log_cost.main(["--shape", "1", "5", "2", "4", "4", "--repeats", "2"])
    syncs = summary["syncs"]
    # MSM's strict policy reads one boolean (are the frames' timesteps equal?) in the loss itself
    assert syncs["loss only"]["term"] == 1
    # 9 MSM keys + dmd_loss; msm_lambda is a Python float, the 8 others device scalars
    assert syncs["default logs"] == {"keys": 10, "term": 1, "causvid_self_forcing": 2, "fastvideo": 1 + 9, "fastgen": 1 + 10}
    assert syncs["per-pair logs"]["keys"] == 10 + 3 * 4 and syncs["per-pair logs"]["causvid_self_forcing"] == 2
    assert all(summary[arm]["median_ms"] > 0 for arm in ("loss only", "default logs", "per-pair logs"))
    assert "| default logs | 10 | " in capsys.readouterr().out
