"""FastVideo host: MSMDMD2Method / MSMSelfForcingMethod against stand-ins of its method classes."""

import sys

import numpy as np
import pytest
import torch

import msm_plugin.hosts.fastvideo as fastvideo
from msm_plugin import active_losses, unwrap_trainer, wrap_trainer
from msm_plugin.adapters import pop_extra_logs
from msm_plugin.hosts import Call, detect_host
from msm_plugin.hosts.fastvideo import score_timestep
from msm_plugin.context import LossContext
from msm_plugin.registry import get_loss
from tests.adapters import framework_standins as sf
from tests.reference import apply_frames, difference_matrix, msm_reference


@pytest.fixture
def fv(frameworks):
    return fastvideo


def build(fv, cls="MSMDMD2Method", dtype=torch.float64, **method):
    return getattr(fv, cls)(cfg=sf.fastvideo_cfg(**method), role_models=sf.fastvideo_roles(dtype))


def plain(dtype=torch.float64, cls=sf.DMD2Method, **method):
    return cls(cfg=sf.fastvideo_cfg(**method), role_models=sf.fastvideo_roles(dtype))


def whole_batch_reference(x, real, fake):
    """MSM with FastVideo's normaliser: ONE scalar mean |x - real| over the batch (float64, explicit D)."""
    d = difference_matrix(x.shape[1], 1)
    g = (apply_frames(d, fake) - apply_frames(d, real)) / np.abs(x - real).mean()
    return 0.5 * (g**2).sum() / g.size, apply_frames(d.T, g) / g.size


@pytest.mark.parametrize("cls", ["MSMDMD2Method", "MSMSelfForcingMethod"])
@pytest.mark.parametrize("normalization", ["none", "motion", "dmd"])
def test_value_and_gradient_match_the_reference(fv, cls, normalization):
    method = build(fv, cls, extra_losses=["msm"], msm={"lam": 0.5, "normalization": normalization})
    upstream = plain(cls=getattr(sf, cls.replace("MSM", "")))
    batch = sf.fastvideo_batch(dtype=torch.float64)
    x = torch.randn(sf.FV_SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(3), requires_grad=True)
    x_host = x.detach().clone().requires_grad_(True)
    total = method._dmd_loss(x, batch)
    host = upstream._dmd_loss(x_host, batch)  # same seed: the same timestep and noise
    total.backward(), host.backward()
    arrays = [t.numpy() for t in (x.detach(), method.seen["real"], method.seen["fake"])]
    if normalization == "dmd":
        ref, ref_grad = whole_batch_reference(*arrays)
    else:
        ref, ref_grad = msm_reference(*arrays, normalization=normalization)
    logs = pop_extra_logs(method)
    # float64 throughout MSM: only summation-order rounding (~1e-15 relative) separates the two
    assert logs["msm_loss"] == pytest.approx(ref, rel=1e-10)
    assert logs["dmd_loss"] == host.item() and total.dtype == host.dtype == torch.float32
    # the total is cast back to FastVideo's float32 loss: one float32 rounding
    assert total.item() == pytest.approx(host.item() + 0.5 * ref, rel=1e-6)
    torch.testing.assert_close(x.grad - x_host.grad, torch.from_numpy(0.5 * ref_grad), rtol=1e-9, atol=1e-12)


def test_batch_normaliser_differs_from_the_per_sample_one(fv):
    """The whole-batch view matters: with B = 2 the per-sample normaliser would give another value."""
    method = build(fv, extra_losses=["msm"], msm={"lam": 1.0, "normalization": "dmd"})
    x = torch.randn(sf.FV_SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    method._dmd_loss(x, sf.fastvideo_batch(dtype=torch.float64))
    per_sample, _ = msm_reference(x.numpy(), method.seen["real"].numpy(), method.seen["fake"].numpy(), normalization="dmd")
    assert pop_extra_logs(method)["msm_loss"] != pytest.approx(per_sample, rel=1e-3)


def test_no_extra_network_call_and_the_critic_update_untouched(fv):
    method, upstream = build(fv, extra_losses=["msm"], msm={"lam": 0.5}), plain()
    batch = sf.fastvideo_batch(dtype=torch.float64)
    counts = []
    for m in (method, upstream):
        before = sf.calls["networks"]
        loss_map, _, _ = m.single_train_step(batch, 0)
        counts.append(sf.calls["networks"] - before)
        m.result = loss_map
    # student rollout, critic, teacher cond and uncond; the critic update's rollout and critic: as upstream
    assert counts[0] == counts[1] == 6
    assert torch.equal(method.result["fake_score_loss"], upstream.result["fake_score_loss"])
    assert not torch.equal(method.result["generator_loss"], upstream.result["generator_loss"])


def test_lam_zero_is_upstream_bit_for_bit_with_the_same_random_stream(fv):
    method, upstream = build(fv, dtype=torch.float32, extra_losses=["msm"], msm={"lam": 0.0}), plain(torch.float32)
    batch = sf.fastvideo_batch()
    torch.manual_seed(0)
    loss_map, _, metrics = method.single_train_step(batch, 0)
    loss_map["total_loss"].backward()
    global_state = torch.get_rng_state()
    torch.manual_seed(0)
    ref_map, _, ref_metrics = upstream.single_train_step(batch, 0)
    ref_map["total_loss"].backward()
    for key in ref_map:
        assert torch.equal(loss_map[key], ref_map[key]) and loss_map[key].dtype == ref_map[key].dtype, key
    for a, b in zip(method.student.transformer.parameters(), upstream.student.transformer.parameters()):
        assert torch.equal(a.grad, b.grad)
    assert torch.equal(method.cuda_generator.get_state(), upstream.cuda_generator.get_state())
    assert torch.equal(global_state, torch.get_rng_state())
    assert metrics["msm_lambda"] == 0.0 and metrics["update_student"] == ref_metrics["update_student"]


def test_bf16(fv):
    method = build(fv, dtype=torch.bfloat16, extra_losses=["msm"], msm={"lam": 0.5, "normalization": "none"})
    x = torch.randn(sf.FV_SHAPE, generator=torch.Generator().manual_seed(5)).bfloat16().requires_grad_(True)
    total = method._dmd_loss(x, sf.fastvideo_batch(dtype=torch.bfloat16))
    assert method.seen["real"].dtype == torch.bfloat16 and total.dtype == torch.float32
    ref, ref_grad = msm_reference(*(t.double().numpy() for t in (x.detach(), method.seen["real"], method.seen["fake"])), normalization="none")
    # MSM upcasts the bf16 tensors exactly and works in float64
    assert pop_extra_logs(method)["msm_loss"] == pytest.approx(ref, rel=1e-10)
    x_only_msm = x.detach().clone().requires_grad_(True)
    msm_part = build(fv, dtype=torch.bfloat16, extra_losses=["msm"], msm={"lam": 1.0, "normalization": "none"})
    term = active_losses(msm_part)[0]
    loss, _ = term(LossContext(x_only_msm, method.seen["real"], method.seen["fake"]))
    loss.backward()
    assert x_only_msm.grad.dtype == torch.bfloat16
    # one rounding of the float64 gradient to bf16 (8 significant bits)
    torch.testing.assert_close(x_only_msm.grad.double(), torch.from_numpy(ref_grad), rtol=2**-8, atol=1e-6)


class Probe:
    """An extra loss that keeps the context it is given."""

    name, weight = "probe", 1.0

    def __call__(self, ctx):
        self.ctx = ctx
        return ctx.generated.sum() * 0, {}


def test_context_timestep_expanded_layout_and_predictions(fv):
    method = plain()
    probe = Probe()
    fastvideo.FastVideoHost().install(method, [probe])
    x = torch.randn(sf.FV_SHAPE, dtype=torch.float64, requires_grad=True)
    method._dmd_loss(x, sf.fastvideo_batch(dtype=torch.float64))
    ctx = probe.ctx
    assert ctx.generated is x and ctx.host == "fastvideo" and ctx.gradient_mask is None
    assert torch.equal(ctx.pred_real, method.seen["real"]) and torch.equal(ctx.pred_fake, method.seen["fake"])
    assert ctx.timestep.shape == sf.FV_SHAPE[:2] and bool((ctx.timestep == method.seen["timestep"]).all())


def test_score_timestep_shapes():
    assert score_timestep(torch.tensor([3, 4]), 2, 3).tolist() == [[3, 3, 3], [4, 4, 4]]
    assert score_timestep(torch.ones(2, 3), 2, 3).shape == (2, 3)
    with pytest.raises(ValueError, match=r"expected FastVideo's score timestep of shape \[1\], \[B\] or \[B, F\] with B, F = 2, 3, got \(4,\)"):
        score_timestep(torch.ones(4), 2, 3)


def test_metrics_of_that_step_carry_the_extra_scalars(fv):
    method = build(fv, extra_losses=["msm"], msm={"lam": 0.5}, generator_update_interval=2)
    batch = sf.fastvideo_batch(dtype=torch.float64)
    _, _, metrics = method.single_train_step(batch, 0)
    expected = {"update_student", "dmd_loss", "msm_loss", "msm_lambda", "msm_gradient_norm", "msm_grad_ratio"}
    motion = {f"msm_motion_{which}" for which in ("generated", "pred_real", "pred_fake", "gap_real", "gap_fake")}
    assert expected | motion == set(metrics)
    # What FastVideo's trainer accepts as a metric (float / int, or a one-element tensor it keeps on
    # the device until the optimiser step): no device read in the hook
    assert isinstance(metrics["msm_lambda"], float) and metrics["msm_lambda"] == 0.5
    tensors = {k: v for k, v in metrics.items() if torch.is_tensor(v)}
    assert set(tensors) == (expected | motion) - {"update_student", "msm_lambda"}
    assert all(v.numel() == 1 and not v.requires_grad for v in tensors.values())
    _, _, critic_only = method.single_train_step(batch, 1)  # no student update: nothing extra, nothing stale
    assert critic_only == {"update_student": 0.0}


def test_config_errors_before_the_parent_constructor(fv):
    before = sf.DMD2Method.constructed
    with pytest.raises(ValueError, match=r"unknown option `msm.lamda`; did you mean `lam`\?"):
        build(fv, extra_losses=["msm"], msm={"lamda": 0.5})
    with pytest.raises(ValueError, match=r"option `msm.lam` should be finite and >= 0, got -1"):
        build(fv, extra_losses=["msm"], msm={"lam": -1})
    with pytest.raises(ValueError, match=r"the config has an options section `msm:` but `extra_losses` does not list 'msm'"):
        build(fv, msm={"lam": 0.5})
    assert sf.DMD2Method.constructed == before
    assert active_losses(build(fv, extra_losses=[])) == ()


def test_without_extra_losses_the_subclass_is_upstream(fv):
    method, upstream = build(fv, dtype=torch.float32, extra_losses=[]), plain(torch.float32)
    batch = sf.fastvideo_batch()
    a, b = method.single_train_step(batch, 0), upstream.single_train_step(batch, 0)
    assert torch.equal(a[0]["generator_loss"], b[0]["generator_loss"]) and a[2] == b[2]


def test_wrap_trainer_on_a_constructed_method_and_unwrap(fv):
    method = plain()
    before = dict(vars(method))
    assert detect_host(method).name == "fastvideo"
    assert wrap_trainer(method, lam=0.5) is method
    assert [loss.name for loss in active_losses(method)] == ["msm"] and active_losses(method)[0].weight == 0.5
    _, _, metrics = method.single_train_step(sf.fastvideo_batch(dtype=torch.float64), 0)
    assert metrics["msm_lambda"] == 0.5
    unwrap_trainer(method)
    assert vars(method).keys() == before.keys() and active_losses(method) == ()
    subclassed = build(fv, extra_losses=["msm"], msm={"lam": 0.5, "normalization": "dmd"})
    with pytest.warns(UserWarning, match="replacing them"):
        wrap_trainer(subclassed, lam=2.0)
    assert active_losses(subclassed)[0].weight == 2.0 and "_dmd_loss" not in vars(subclassed)


def test_subclass_is_found_by_dotted_path_and_without_fastvideo_names_what_to_install(fv, monkeypatch):
    import importlib

    cls = getattr(importlib.import_module("msm_plugin.hosts.fastvideo"), "MSMSelfForcingMethod")
    assert issubclass(cls, sf.SelfForcingMethod) and cls.__module__ == "msm_plugin.hosts.fastvideo"
    assert fastvideo.MSMSelfForcingMethod is cls
    vars(fastvideo).pop("MSMDMD2Method", None)
    for name in [m for m in sys.modules if m.split(".")[0] == "fastvideo"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    with pytest.raises(ModuleNotFoundError, match=r"MSMDMD2Method subclasses fastvideo\.train\.methods\.distribution_matching\.dmd2\.DMD2Method, but fastvideo is not installed: pip install fastvideo"):
        fastvideo.MSMDMD2Method
    with pytest.raises(AttributeError, match="has no attribute 'MSMDMD3Method'"):
        fastvideo.MSMDMD3Method


def test_batch_wide_normaliser_with_a_frame_mask():
    """FastVideo's context (dmd_over="batch"): a [B, F] mask counts per sample, the normaliser is the batch's scalar."""
    term = get_loss("msm")(lam=1.0, normalization="dmd", per_pair_logs=False)
    g = torch.Generator().manual_seed(6)
    x, real, fake = (torch.randn(sf.FV_SHAPE, dtype=torch.float64, generator=g) for _ in range(3))
    mask = torch.ones(sf.FV_SHAPE[:2], dtype=torch.bool)
    mask[0, 0] = False  # the first frame of sample 0 does not count: its pair 0 drops out
    loss, _ = term(LossContext(x, real, fake, timestep=torch.full(sf.FV_SHAPE[:2], 500), gradient_mask=mask, dmd_over="batch"))
    d = difference_matrix(sf.FV_SHAPE[1], 1)
    w = np.ones((sf.FV_SHAPE[0], sf.FV_SHAPE[1] - 1, 1, 1, 1))
    w[0, 0] = 0
    gm = (apply_frames(d, fake.numpy()) - apply_frames(d, real.numpy())) / np.abs(x.numpy() - real.numpy()).mean() * w
    count = (w * np.ones(gm.shape)).sum()
    assert loss.item() == pytest.approx(0.5 * (gm**2).sum() / count, rel=1e-10)


def test_a_changed_call_pattern_or_a_metrics_clash_fails_clearly(fv):
    method = build(fv, extra_losses=["msm"], msm={"lam": 0.5})
    batch, x = sf.fastvideo_batch(dtype=torch.float64), torch.randn(sf.FV_SHAPE, dtype=torch.float64)
    original = sf.DMD2Method._dmd_loss

    def twice(self, generator_pred_x0, batch):
        self.teacher.predict_x0(generator_pred_x0, torch.tensor([500]), batch, conditional=True)
        return original(self, generator_pred_x0, batch)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sf.DMD2Method, "_dmd_loss", twice)
        with pytest.raises(RuntimeError, match=r"FastVideo's _dmd_loss called the teacher/cond prediction twice; expected one critic and two teacher calls"):
            method._dmd_loss(x, batch)
    critic_only = [("critic", Call({"conditional": True, "timestep": torch.tensor([500])}, x))]
    with pytest.raises(RuntimeError, match=r"expected FastVideo's _dmd_loss to make the calls \['critic/cond', 'teacher/cond', 'teacher/uncond'\], it made \['critic/cond'\]"):
        fastvideo._predictions(method, critic_only)
    renamed = [("critic", Call({"noisy": x, "t": torch.tensor([500]), "cond": True}, x))]
    with pytest.raises(TypeError, match=r"expected FastVideo's prediction calls to take `timestep` and `conditional` .*, got parameters \['noisy', 't', 'cond'\]"):
        fastvideo._predictions(method, renamed)
    with pytest.MonkeyPatch.context() as mp:
        step = sf.DMD2Method.single_train_step
        mp.setattr(sf.DMD2Method, "single_train_step", lambda self, b, i: (lambda r: (r[0], r[1], {**r[2], "msm_loss": 1.0}))(step(self, b, i)))
        with pytest.raises(ValueError, match=r"FastVideo's step metrics already have the keys \['msm_loss'\]"):
            method.single_train_step(batch, 0)
    with pytest.raises(TypeError, match=r"expected a FastVideo DMD2Method / SelfForcingMethod .*; object lacks _dmd_loss, single_train_step, teacher, critic, method_config"):
        wrap_trainer(object(), host="fastvideo")
