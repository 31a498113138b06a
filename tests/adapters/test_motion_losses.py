"""The motion losses from one config on every host's test double: weighted MSM and the temporal
variance regulariser together, gradients against independent references, weight 0 bit for bit."""

import pytest
import torch

import msm_plugin.hosts.fastgen as fastgen
import msm_plugin.hosts.fastvideo as fastvideo
from msm_plugin.adapters import apply_extra_losses
from tests.adapters import framework_standins as sf
from tests.adapters.standins import CausVidDMD, SelfForcingDMD, generator_step, make_config
from tests.adapters.test_wrap import _mask, _reference_predictions, _run_loss, _video
from tests.reference import temporal_variance_reference, weighted_msm_reference

LAM, WEIGHT = 0.5, 0.1
#: Both losses from one config; `threshold: null` keeps the regulariser on, so its gradient is always there.
SECTIONS = {
    "extra_losses": ["msm", "temporal_variance"],
    "msm": {"lam": LAM, "pair_weights": "hybrid", "per_pair_logs": False},
    "temporal_variance": {"weight": WEIGHT, "threshold": None},
}
ZERO = {
    "extra_losses": ["msm", "temporal_variance"],
    "msm": {"lam": 0.0, "pair_weights": "hybrid"},
    "temporal_variance": {"weight": 0.0, "threshold": None},
}
LOG_KEYS = {"dmd_loss", "msm_loss", "msm_lambda", "temporal_variance_variance", "temporal_variance_loss", "temporal_variance_active"}


def reference(x, real, fake, frames=None):
    """``(loss, gradient)`` of ``LAM * weighted MSM + WEIGHT * temporal variance`` (NumPy, float64)
    on a ``[B, F, C, H, W]`` video; ``frames`` ``[B, F]``: the frames the host's mask leaves."""
    counted = None if frames is None else (frames[:, 1:] & frames[:, :-1])[:, :, None, None, None]
    msm, msm_grad, _ = weighted_msm_reference(x, real, fake, counted=counted)
    _, tv, tv_grad = temporal_variance_reference(x, frames=frames)
    return LAM * msm + WEIGHT * tv, LAM * msm_grad + WEIGHT * tv_grad



class TestCausVidAndSelfForcing:
    HOSTS = {"causvid": CausVidDMD, "self_forcing": SelfForcingDMD}

    @pytest.mark.parametrize("host", sorted(HOSTS))
    def test_loss_and_gradient_equal_host_plus_both_references(self, host):
        dmd = self.HOSTS[host](make_config(fake_guidance_scale=1.5, **SECTIONS))
        x0, mask = _video(), _mask(host, dmd)
        host_loss, host_log, host_grad, _ = _run_loss(dmd, x0, mask)
        apply_extra_losses(dmd)
        loss, log, grad, seen = _run_loss(dmd, x0, mask)

        real, fake = _reference_predictions(dmd, seen[0]["noisy_image_or_video"], seen[0]["timestep"])
        frames = None if mask is None else mask.flatten(2).all(2).numpy()
        ref_loss, ref_grad = reference(x0.double().numpy(), real, fake, frames)
        assert LOG_KEYS | set(host_log) <= set(log) and log["temporal_variance_active"] == 1.0
        assert loss.item() == pytest.approx(host_loss.item() + ref_loss, rel=1e-9)
        # x is float32: each term's float64 gradient is rounded to float32 before the sum
        torch.testing.assert_close(grad.double(), host_grad.double() + torch.from_numpy(ref_grad), rtol=1e-5, atol=1e-8)
        if mask is not None:  # Self-Forcing's first block: no gradient from either loss
            assert torch.equal(grad[:, : dmd.num_frame_per_block], host_grad[:, : dmd.num_frame_per_block])

    @pytest.mark.parametrize("host", sorted(HOSTS))
    def test_weight_zero_is_the_host_bit_for_bit(self, host):
        plain_loss, plain_log, plain_grads = generator_step(self.HOSTS[host](make_config()))
        loss, log, grads = generator_step(apply_extra_losses(self.HOSTS[host](make_config(**ZERO))))
        assert torch.equal(loss, plain_loss)
        assert all(torch.equal(a, b) for a, b in zip(grads, plain_grads))
        assert all(torch.equal(log[k], v) for k, v in plain_log.items())
        assert log["msm_loss"].item() > 0 and log["temporal_variance_active"] == 1.0  # computed, weighted 0


class TestFastVideo:
    CLASSES = ["MSMDMD2Method", "MSMSelfForcingMethod"]

    @pytest.mark.parametrize("cls", CLASSES)
    def test_loss_and_gradient_equal_host_plus_both_references(self, frameworks, cls):
        method = getattr(fastvideo, cls)(cfg=sf.fastvideo_cfg(**SECTIONS), role_models=sf.fastvideo_roles(torch.float64))
        upstream = getattr(sf, cls.replace("MSM", ""))(cfg=sf.fastvideo_cfg(), role_models=sf.fastvideo_roles(torch.float64))
        batch = sf.fastvideo_batch(dtype=torch.float64)
        x = torch.randn(sf.FV_SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(3), requires_grad=True)
        x_host = x.detach().clone().requires_grad_(True)
        total = method._dmd_loss(x, batch)
        host = upstream._dmd_loss(x_host, batch)  # each method's own generator: the same timestep and noise
        total.backward(), host.backward()
        ref_loss, ref_grad = reference(x.detach().numpy(), method.seen["real"].numpy(), method.seen["fake"].numpy())
        # FastVideo's loss is float32: the total is rounded once
        assert total.item() == pytest.approx(host.item() + ref_loss, rel=1e-6)
        # float64 gradients throughout: only summation order separates them
        torch.testing.assert_close(x.grad - x_host.grad, torch.from_numpy(ref_grad), rtol=1e-9, atol=1e-12)

    def test_weight_zero_is_the_host_bit_for_bit(self, frameworks):
        method = fastvideo.MSMDMD2Method(cfg=sf.fastvideo_cfg(**ZERO), role_models=sf.fastvideo_roles(torch.float32))
        upstream = sf.DMD2Method(cfg=sf.fastvideo_cfg(), role_models=sf.fastvideo_roles(torch.float32))
        batch = sf.fastvideo_batch()
        results = []
        for m in (method, upstream):
            torch.manual_seed(0)
            loss_map, _, metrics = m.single_train_step(batch, 0)
            loss_map["total_loss"].backward()
            results.append((loss_map, metrics))
        (ours, metrics), (theirs, _) = results
        for key in theirs:
            assert torch.equal(ours[key], theirs[key]) and ours[key].dtype == theirs[key].dtype, key
        for a, b in zip(method.student.transformer.parameters(), upstream.student.transformer.parameters()):
            assert torch.equal(a.grad, b.grad)
        assert metrics["temporal_variance_active"] == 1.0 and metrics["msm_lambda"] == 0.0


class TestFastGen:
    CLASSES = ["MSMDMD2Model", "MSMCausVidModel", "MSMSelfForcingModel"]

    @staticmethod
    def student_step(model, dtype=torch.float64):
        torch.manual_seed(0)  # FastGen draws noise and t from the global generator
        return model.single_train_step(sf.fastgen_data(dtype=dtype), 0)

    @pytest.mark.parametrize("cls", CLASSES)
    def test_loss_and_gradient_equal_host_plus_both_references(self, frameworks, cls):
        model = getattr(fastgen, cls)(sf.fastgen_config(torch.float64), **SECTIONS)
        upstream = getattr(sf, cls.replace("MSM", ""))(sf.fastgen_config(torch.float64))
        loss_map, _ = self.student_step(model)
        host_map, _ = self.student_step(upstream)
        gen, host_gen = model.seen["gen"], upstream.seen["gen"]
        gen.retain_grad(), host_gen.retain_grad()
        loss_map["total_loss"].backward(), host_map["total_loss"].backward()
        # FastGen's [B, C, T, H, W] as the references' [B, T, C, H, W]
        arrays = [t.detach().transpose(1, 2).numpy() for t in (gen, model.seen["real"], model.seen["fake"])]
        ref_loss, ref_grad = reference(*arrays)
        assert LOG_KEYS <= set(loss_map) and loss_map["temporal_variance_active"].item() == 1.0
        assert loss_map["total_loss"].item() == pytest.approx(host_map["total_loss"].item() + ref_loss, rel=1e-12)
        torch.testing.assert_close(gen.grad - host_gen.grad, torch.from_numpy(ref_grad).transpose(1, 2), rtol=1e-9, atol=1e-12)

    def test_weight_zero_gives_the_host_loss_bit_for_bit(self, frameworks):
        model = fastgen.MSMDMD2Model(sf.fastgen_config(torch.float32), **ZERO)
        upstream = sf.DMD2Model(sf.fastgen_config(torch.float32))
        ours, _ = self.student_step(model, torch.float32)
        theirs, _ = self.student_step(upstream, torch.float32)
        for key in theirs:
            assert torch.equal(ours[key], theirs[key]) and ours[key].dtype == theirs[key].dtype, key
        ours["total_loss"].backward(), theirs["total_loss"].backward()
        for a, b in zip(model.net.parameters(), upstream.net.parameters()):
            assert torch.equal(a.grad, b.grad)
