"""FastGen host: MSMDMD2Model / MSMCausVidModel / MSMSelfForcingModel against stand-ins of its model classes."""

import subprocess
import sys

import pytest
import torch

import msm_plugin.hosts.fastgen as fastgen
from msm_plugin import active_losses, unwrap_trainer, wrap_trainer
from msm_plugin.hosts import detect_host
from tests.adapters import framework_standins as sf
from tests.adapters.framework_standins import variational_score_distillation_loss
from tests.reference import msm_reference


@pytest.fixture
def fg(frameworks):
    return fastgen


def student_step(model, seed=0, dtype=torch.float64):
    """One student step on a fixed batch from a fixed global seed (FastGen draws noise and t from it)."""
    torch.manual_seed(seed)
    return model.single_train_step(sf.fastgen_data(dtype=dtype), 0)


def frames_first(t):
    return t.detach().transpose(1, 2).numpy()


@pytest.mark.parametrize("cls", ["MSMDMD2Model", "MSMCausVidModel", "MSMSelfForcingModel"])
@pytest.mark.parametrize("normalization", ["none", "motion", "dmd"])
def test_value_and_gradient_match_the_reference(fg, cls, normalization):
    model = getattr(fg, cls)(sf.fastgen_config(torch.float64), extra_losses=["msm"], msm={"lam": 0.5, "normalization": normalization})
    upstream = getattr(sf, cls.replace("MSM", ""))(sf.fastgen_config(torch.float64))
    loss_map, outputs = student_step(model)
    host_map, _ = student_step(upstream)
    gen = model.seen["gen"]
    gen.retain_grad()
    upstream.seen["gen"].retain_grad()
    loss_map["total_loss"].backward(), host_map["total_loss"].backward()
    ref, ref_grad = msm_reference(frames_first(gen), frames_first(model.seen["real"]), frames_first(model.seen["fake"]), normalization=normalization)
    # float64 throughout: only summation-order rounding separates MSM from the NumPy reference
    assert loss_map["msm_loss"].item() == pytest.approx(ref, rel=1e-10)
    assert torch.equal(loss_map["dmd_loss"], host_map["total_loss"]) and torch.equal(loss_map["vsd_loss"], host_map["vsd_loss"])
    assert loss_map["total_loss"].item() == pytest.approx(host_map["total_loss"].item() + 0.5 * ref, rel=1e-12)
    # FastGen's [B, C, T, H, W]: the reference's [B, T, C, H, W] gradient, transposed back
    expected = torch.from_numpy(0.5 * ref_grad).transpose(1, 2)
    torch.testing.assert_close(gen.grad - upstream.seen["gen"].grad, expected, rtol=1e-9, atol=1e-12)
    assert outputs["gen_rand"] is gen


def test_dmd_normaliser_is_fastgens_per_sample_one(fg):
    """MSM's `dmd` normaliser is FastGen's per-sample weight 1 / (mean |gen - teacher| + 1e-6)."""
    model = fg.MSMDMD2Model(sf.fastgen_config(torch.float64), extra_losses=["msm"], msm={"lam": 1.0, "normalization": "dmd"})
    loss_map, _ = student_step(model)
    gen, real, fake = (frames_first(model.seen[k]) for k in ("gen", "real", "fake"))
    w = (1 / (abs(gen - real).reshape(gen.shape[0], -1).mean(1) + 1e-6)).reshape(-1, 1, 1, 1, 1)
    with_fastgens_weight, _ = msm_reference(gen, real * w, fake * w, normalization="none")
    # MSM leaves out FastGen's +1e-6; with mean |gen - teacher| = O(1) here that moves the
    # (squared) weight by ~2e-6 relative
    assert loss_map["msm_loss"].item() == pytest.approx(with_fastgens_weight, rel=1e-5)
    assert abs(gen - real).mean() > 0.1


class Probe:
    name, weight = "probe", 1.0

    def __call__(self, ctx):
        self.ctx = ctx
        return ctx.generated.sum() * 0, {}


def test_context_frames_on_dim_1_and_timestep_b_by_t(fg):
    model = sf.DMD2Model(sf.fastgen_config(torch.float64))
    probe = Probe()
    fastgen.FastGenHost().install(model, [probe])
    torch.manual_seed(0)
    data = sf.fastgen_data(dtype=torch.float64)
    model.single_train_step(data, 0)
    ctx = probe.ctx
    b, c, t, h, w = sf.FG_SHAPE
    assert ctx.generated.shape == (b, t, c, h, w) and ctx.generated._base is model.seen["gen"]  # a view: gradients flow
    assert torch.equal(ctx.pred_real, model.seen["real"].transpose(1, 2)) and torch.equal(ctx.pred_fake, model.seen["fake"].transpose(1, 2))
    assert ctx.timestep.shape == (b, t) and ctx.timestep.dtype == torch.float64
    assert bool((ctx.timestep == ctx.timestep[:, :1]).all()) and bool(((ctx.timestep > 0) & (ctx.timestep < 1)).all())
    assert ctx.host == "fastgen"


def test_no_extra_network_call_and_lam_zero_is_upstream_bit_for_bit(fg):
    model = fg.MSMDMD2Model(sf.fastgen_config(torch.float32), extra_losses=["msm"], msm={"lam": 0.0})
    upstream = sf.DMD2Model(sf.fastgen_config(torch.float32))
    counts, maps = [], []
    for m in (model, upstream):
        before = sf.calls["networks"]
        loss_map, _ = student_step(m, dtype=torch.float32)
        loss_map["total_loss"].backward()
        counts.append(sf.calls["networks"] - before)
        maps.append((loss_map, torch.get_rng_state()))
    assert counts[0] == counts[1] == 4  # student, fake score, teacher, teacher negative
    (ours, our_rng), (theirs, their_rng) = maps
    for key in theirs:
        assert torch.equal(ours[key], theirs[key]) and ours[key].dtype == theirs[key].dtype, key
    assert torch.equal(our_rng, their_rng)
    for a, b in zip(model.net.parameters(), upstream.net.parameters()):
        assert torch.equal(a.grad, b.grad)


def test_loss_map_carries_the_extra_scalars_as_tensors_and_the_critic_step_is_untouched(fg):
    model = fg.MSMDMD2Model(sf.fastgen_config(torch.float64), extra_losses=["msm"], msm={"lam": 0.7})
    upstream = sf.DMD2Model(sf.fastgen_config(torch.float64))
    loss_map, _ = student_step(model)
    keys = {"total_loss", "vsd_loss", "gan_loss_gen", "dmd_loss", "msm_loss", "msm_lambda", "msm_gradient_norm", "msm_grad_ratio"}
    motion = {f"msm_motion_{which}" for which in ("generated", "pred_real", "pred_fake", "gap_real", "gap_fake")}
    assert keys | motion == set(loss_map)
    assert all(torch.is_tensor(v) and v.dim() == 0 and not v.requires_grad for k, v in loss_map.items() if k.startswith(("msm_", "dmd_")))
    # FastGen's callback reads value.float().item() (tensors only): float64 here keeps 0.7 exact for
    # any other reader, FastGen's own chart rounds it to float32
    assert loss_map["msm_lambda"].dtype == torch.float64 and loss_map["msm_lambda"].item() == 0.7
    torch.manual_seed(1)
    critic = model.single_train_step(sf.fastgen_data(dtype=torch.float64), 1)[0]
    torch.manual_seed(1)
    reference = upstream.single_train_step(sf.fastgen_data(dtype=torch.float64), 1)[0]
    assert critic.keys() == reference.keys() == {"total_loss", "fake_score_loss"}
    assert torch.equal(critic["total_loss"], reference["total_loss"])


def test_bf16(fg):
    model = fg.MSMDMD2Model(sf.fastgen_config(torch.bfloat16), extra_losses=["msm"], msm={"lam": 0.5, "normalization": "none"})
    loss_map, _ = student_step(model, dtype=torch.bfloat16)
    gen = model.seen["gen"]
    assert gen.dtype == torch.bfloat16 and loss_map["total_loss"].dtype == torch.bfloat16
    ref, _ = msm_reference(*(frames_first(model.seen[k].double()) for k in ("gen", "real", "fake")), normalization="none")
    # MSM upcasts the bf16 tensors exactly and works in float64
    assert loss_map["msm_loss"].item() == pytest.approx(ref, rel=1e-10)
    # the total is rounded to FastGen's bf16 loss (8 significant bits)
    assert loss_map["total_loss"].item() == pytest.approx(loss_map["dmd_loss"].item() + 0.5 * ref, rel=2**-7)
    loss_map["total_loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.net.parameters())


def test_config_errors_before_any_network_is_built(fg):
    before = sf.DMD2Model.built
    with pytest.raises(ValueError, match=r"unknown option `msm.lamda`; did you mean `lam`\?"):
        fg.MSMDMD2Model(sf.fastgen_config(), extra_losses=["msm"], msm={"lamda": 0.5})
    with pytest.raises(TypeError, match=r"`extra_losses` should be a list of loss names, e.g. `extra_losses: \[msm\]`, got the string 'msm'"):
        fg.MSMCausVidModel(sf.fastgen_config(), extra_losses="msm")
    with pytest.raises(ValueError, match=r"unknown extra loss 'msn' in `extra_losses`"):
        fg.MSMSelfForcingModel(sf.fastgen_config(), extra_losses=["msn"])
    assert sf.DMD2Model.built == before
    assert active_losses(fg.MSMDMD2Model(sf.fastgen_config(), extra_losses=[])) == ()


def test_omegaconf_sections_from_a_lazy_call(fg):
    from omegaconf import OmegaConf

    section = OmegaConf.create({"extra_losses": ["msm"], "msm": {"lam": 0.25, "order": 2}})
    model = fg.MSMDMD2Model(sf.fastgen_config(), extra_losses=section.extra_losses, msm=section.msm)
    term = active_losses(model)[0]
    assert (term.weight, term.config.order) == (0.25, 2)
    assert model.msm_plugin_options == {"extra_losses": ["msm"], "msm": {"lam": 0.25, "order": 2}}


def test_wrap_trainer_on_a_constructed_model_and_unwrap(fg):
    model = sf.SelfForcingModel(sf.fastgen_config(torch.float64))
    before = dict(vars(model))
    assert detect_host(model).name == "fastgen"
    wrap_trainer(model, lam=0.5, normalization="none")
    loss_map, _ = student_step(model)
    assert loss_map["msm_lambda"].item() == 0.5
    unwrap_trainer(model)
    assert vars(model).keys() == before.keys()
    assert "msm_loss" not in student_step(model)[0]
    subclassed = fg.MSMDMD2Model(sf.fastgen_config(torch.float64), extra_losses=["msm"], msm={"lam": 0.5})
    with pytest.warns(UserWarning, match="replacing them"):
        wrap_trainer(subclassed, lam=1.5)
    assert active_losses(subclassed)[0].weight == 1.5 and "_student_update_step" not in vars(subclassed)


def test_without_fastgen_the_error_names_what_to_install(fg, monkeypatch):
    for name in [m for m in sys.modules if m.split(".")[0] == "fastgen"]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ModuleNotFoundError, match=r"MSMCausVidModel subclasses fastgen\.methods\.distribution_matching\.causvid\.CausVidModel, but fastgen is not installed: install NVlabs/FastGen from a checkout"):
        fastgen.MSMCausVidModel


def test_importing_msm_plugin_imports_no_framework():
    code = (
        "import sys, msm_plugin, msm_plugin.hosts.fastvideo, msm_plugin.hosts.fastgen\n"
        "from msm_plugin.hosts import available_hosts\n"
        "assert {'fastvideo', 'fastgen'} <= set(available_hosts())\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fastvideo', 'fastgen')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_changed_call_pattern_or_layout_fails_clearly(fg, monkeypatch):
    model = fg.MSMDMD2Model(sf.fastgen_config(torch.float64), extra_losses=["msm"], msm={"lam": 0.5})
    step = sf.DMD2Model._student_update_step

    def twice(self, *args, **kwargs):  # calls the loss by its global name twice (and the host's once, not recorded)
        out = step(self, *args, **kwargs)
        for _ in range(2):
            variational_score_distillation_loss(self.seen["gen"], self.seen["real"], self.seen["fake"])
        return out

    monkeypatch.setattr(sf.DMD2Model, "_student_update_step", twice)
    with pytest.raises(RuntimeError, match=r"expected FastGen's _student_update_step to call variational_score_distillation_loss once, it called it 2 times"):
        student_step(model)
    monkeypatch.setattr(sf.DMD2Model, "_student_update_step", step)
    data = sf.fastgen_data(dtype=torch.float64)
    b = sf.FG_SHAPE[0]
    args = (torch.randn(sf.FG_SHAPE, dtype=torch.float64), torch.full((b,), 0.999, dtype=torch.float64))
    eps = torch.randn(sf.FG_SHAPE, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"expected FastGen's score time t of shape \[B\] = \(2,\), got \(2, 5\)"):
        model._student_update_step(*args, torch.full((b, 5), 0.5, dtype=torch.float64), eps, data, condition=data["condition"], neg_condition=data["neg_condition"])
    with pytest.raises(ValueError, match=r"expected FastGen video latents \[B, C, T, H, W\], got \(2, 3, 4, 4\); MSM needs frames"):
        fastgen.frames_first(torch.zeros(2, 3, 4, 4))
    with pytest.raises(TypeError, match=r"expected a FastGen DMD2Model / CausVidModel / SelfForcingModel .*; object lacks _student_update_step"):
        wrap_trainer(object(), host="fastgen")
    with pytest.raises(NotImplementedError, match=r"FastGen builds the experiment config's model_class: set `config.model_class = L\(MSMDMD2Model\)"):
        fastgen.FastGenHost().trainer_class()
