import logging
import math

import pytest
import torch

from msm_plugin import MSMLoss, msm_loss
from msm_plugin.motion import pair_mask, shared_timestep_mask
from tests.msm_case import check_against_reference, random_inputs
from tests.reference import msm_reference

SHAPE = (2, 5, 3, 4, 4)


def _inputs(seed=0, shape=SHAPE, dtype=torch.float64):
    return random_inputs(seed, shape, dtype)


class TestValueAndGradient:
    @pytest.mark.parametrize("normalization", ["motion", "dmd", "none"])
    @pytest.mark.parametrize("order", [1, 2])
    def test_matches_analytic_reference(self, normalization, order):
        x, real, fake = _inputs()
        loss = msm_loss(x, real, fake, normalization=normalization, order=order)
        ref_loss, ref_grad = msm_reference(x.detach().numpy(), real.numpy(), fake.numpy(), normalization=normalization, order=order)
        check_against_reference(loss, x, ref_loss, ref_grad)

    def test_hand_computed_value(self):
        # one pixel, 3 frames: real moves +1 per frame, fake +3, x static at 0
        x = torch.zeros(1, 3, 1, 1, 1, requires_grad=True)
        real = torch.tensor([0.0, 1.0, 2.0]).reshape(1, 3, 1, 1, 1)
        fake = torch.tensor([0.0, 3.0, 6.0]).reshape(1, 3, 1, 1, 1)
        # g = (3 - 1) / n, motion normaliser n = mean|0 - 1| = 1 -> g = 2, loss = 0.5 * 4 = 2
        loss = msm_loss(x, real, fake)
        assert loss.item() == 2.0
        loss.backward()
        # D^T g / N = [-2, 2 - 2, 2] / 2
        assert x.grad.flatten().tolist() == [-1.0, 0.0, 1.0]

    @pytest.mark.parametrize("normalization", ["motion", "dmd", "none"])
    def test_gradient_matches_finite_differences(self, normalization):
        # MSM is a stop-gradient surrogate (like DMD): its gradient is that of
        # S(x) = <D f(x), g> / N with g frozen at x. Check ours against central differences of S,
        # through a non-linear per-frame feature so that the chain rule J_f^T is exercised too.
        x, real, fake = _inputs(shape=(2, 4, 2, 3, 3))
        feature = torch.tanh
        loss = msm_loss(x, real, fake, normalization=normalization, feature=feature)
        (ours,) = torch.autograd.grad(loss, x)
        fx, fr, ff = (feature(t.detach()) for t in (x, real, fake))
        if normalization == "dmd":  # the host normaliser is taken on raw frames, not on features
            _, dt_g = msm_reference(fx.numpy(), fr.numpy(), ff.numpy(), normalization="none")
            dt_g = dt_g / torch.abs(x.detach() - real).flatten(1).mean(1).reshape(-1, 1, 1, 1, 1).numpy()
        else:
            _, dt_g = msm_reference(fx.numpy(), fr.numpy(), ff.numpy(), normalization=normalization)
        frozen = torch.from_numpy(dt_g)  # D^T g / N, in feature space

        def surrogate(x_):
            return (feature(x_) * frozen).sum()

        base = x.detach().clone().reshape(-1)
        numeric = torch.zeros_like(base)
        eps = 1e-6
        for i in range(base.numel()):
            plus, minus = base.clone(), base.clone()
            plus[i] += eps
            minus[i] -= eps
            numeric[i] = (surrogate(plus.view_as(x)) - surrogate(minus.view_as(x))) / (2 * eps)
        torch.testing.assert_close(ours, numeric.view_as(x), rtol=1e-6, atol=1e-9)

    def test_gradcheck_float64_surrogate(self):
        # gradcheck the frozen-g surrogate itself, then require msm_loss's gradient to equal it
        x, real, fake = _inputs(shape=(1, 4, 2, 2, 2))
        delta = torch.sin(fake) - torch.sin(real)
        g = (delta[:, 1:] - delta[:, :-1]).detach()
        n = g.numel()

        def surrogate(x_):
            return ((torch.sin(x_[:, 1:]) - torch.sin(x_[:, :-1])) * g).sum() / n

        assert torch.autograd.gradcheck(surrogate, (x,))
        (ours,) = torch.autograd.grad(msm_loss(x, real, fake, normalization="none", feature=torch.sin), x)
        (expected,) = torch.autograd.grad(surrogate(x), x)
        torch.testing.assert_close(ours, expected)

    def test_zero_when_predictions_share_motion(self):
        x, real, _ = _inputs()
        offset = torch.randn(SHAPE[0], 1, *SHAPE[2:], dtype=torch.float64)  # one frame per sample, added to every frame
        fake = real + offset
        loss = msm_loss(x, real, fake)
        (grad,) = torch.autograd.grad(loss, x)
        assert loss.item() < 1e-25
        assert grad.abs().max().item() < 1e-12

    def test_feature_map(self):
        x, real, fake = _inputs()
        weight = torch.randn(2, 3, dtype=torch.float64)

        def feature(frames):  # [N, C, H, W] -> [N, 2, H, W]: a linear per-frame map
            return torch.einsum("kc,nchw->nkhw", weight, frames)

        loss = msm_loss(x, real, fake, feature=feature, normalization="none")
        fx, fr, ff = (torch.einsum("kc,bfchw->bfkhw", weight, t.detach()) for t in (x, real, fake))
        ref_loss, ref_grad_f = msm_reference(fx.numpy(), fr.numpy(), ff.numpy(), normalization="none")
        (grad,) = torch.autograd.grad(loss, x)
        assert math.isclose(loss.item(), ref_loss, rel_tol=1e-10)
        # chain rule through the linear map: J_f^T = weight^T
        expected = torch.einsum("kc,bfkhw->bfchw", weight, torch.from_numpy(ref_grad_f))
        torch.testing.assert_close(grad, expected)

    def test_feature_must_keep_frames(self):
        x, real, fake = _inputs()
        with pytest.raises(ValueError, match=r"`feature` must map frames \[N, C, H, W\] to a tensor \[N, ...\] with N = B\*F = 10"):
            msm_loss(x, real, fake, feature=lambda f: f.sum())


class TestMasks:
    @pytest.mark.parametrize("order", [1, 2])
    def test_frame_mask(self, order):
        x, real, fake = _inputs()
        frame_mask = torch.tensor([[False, True, True, True, True], [True, True, False, True, True]])
        loss = msm_loss(x, real, fake, gradient_mask=frame_mask, order=order)
        counted = pair_mask(frame_mask, order=order).double().reshape(2, -1, 1, 1, 1).numpy()
        ref_loss, ref_grad = msm_reference(x.detach().numpy(), real.numpy(), fake.numpy(), order=order, counted=counted)
        check_against_reference(loss, x, ref_loss, ref_grad)

    def test_elementwise_mask_like_self_forcing(self):
        x, real, fake = _inputs()
        mask = torch.ones(SHAPE, dtype=torch.bool)
        mask[:, :2] = False  # the first block is not trained
        loss = msm_loss(x, real, fake, gradient_mask=mask, normalization="dmd")
        counted = (mask[:, 1:] & mask[:, :-1]).double().numpy()
        ref_loss, ref_grad = msm_reference(x.detach().numpy(), real.numpy(), fake.numpy(), normalization="dmd", counted=counted)
        check_against_reference(loss, x, ref_loss, ref_grad)
        (grad,) = torch.autograd.grad(msm_loss(x, real, fake, gradient_mask=mask), x)
        assert grad[:, :2].abs().max() == 0  # frames 0-1 are read only by masked pairs

    def test_bad_mask_shape(self):
        x, real, fake = _inputs()
        with pytest.raises(ValueError, match=r"expected `gradient_mask` of shape \[B, F, C, H, W\] = \(2, 5, 3, 4, 4\) or \[B, F\] = \(2, 5\), got \(2, 4\)"):
            msm_loss(x, real, fake, gradient_mask=torch.ones(2, 4, dtype=torch.bool))


class TestTimestepPolicy:
    def test_uniform_timesteps_pass_strict(self):
        x, real, fake = _inputs()
        t = torch.tensor([[500] * 5, [20] * 5])
        torch.testing.assert_close(msm_loss(x, real, fake, timestep=t), msm_loss(x, real, fake))

    def test_strict_rejects_per_block_timesteps(self):
        x, real, fake = _inputs()
        t = torch.tensor([[500] * 5, [900, 900, 900, 300, 300]])
        with pytest.raises(ValueError, match=r"sample 1 has timesteps that differ across frames \(900 at frame 0, 300 at frame 3\).*timestep_policy='pairs'"):
            msm_loss(x, real, fake, timestep=t)

    @pytest.mark.parametrize("order", [1, 2])
    def test_pairs_counts_shared_pairs_only(self, order):
        x, real, fake = _inputs()
        t = torch.tensor([[500] * 5, [900, 900, 900, 300, 300]])
        loss = msm_loss(x, real, fake, timestep=t, timestep_policy="pairs", order=order)
        counted = shared_timestep_mask(t, order=order).double().reshape(2, -1, 1, 1, 1).numpy()
        ref_loss, ref_grad = msm_reference(x.detach().numpy(), real.numpy(), fake.numpy(), order=order, counted=counted)
        check_against_reference(loss, x, ref_loss, ref_grad)

    def test_pairs_with_no_shared_pair_is_zero_and_logged(self, caplog):
        x, real, fake = _inputs()
        t = torch.arange(10).reshape(2, 5)
        with caplog.at_level(logging.WARNING, logger="msm_plugin"):
            loss = msm_loss(x, real, fake, timestep=t, timestep_policy="pairs")
        assert loss.item() == 0.0
        (grad,) = torch.autograd.grad(loss, x)
        assert grad.abs().max() == 0
        assert "counted 0 of 384 motion entries" in caplog.text

    def test_timestep_wrong_shape(self):
        x, real, fake = _inputs()
        with pytest.raises(ValueError, match=r"expected `timestep` of shape \[B, F\] = \(2, 5\), got \(2,\)"):
            msm_loss(x, real, fake, timestep=torch.zeros(2))


class TestInputErrors:
    def test_not_5d(self):
        x = torch.zeros(2, 5, 4, 4)
        with pytest.raises(ValueError, match=r"expected `generated` to be a video tensor \[B, F, C, H, W\] with F >= 2, got shape \(2, 5, 4, 4\)"):
            msm_loss(x, x, x)

    def test_single_frame(self):
        x = torch.zeros(2, 1, 3, 4, 4)
        with pytest.raises(ValueError, match=r"with F >= 2, got shape \(2, 1, 3, 4, 4\)"):
            msm_loss(x, x, x)

    def test_order_two_needs_three_frames(self):
        x = torch.zeros(2, 2, 3, 4, 4)
        with pytest.raises(ValueError, match=r"with F >= 3, got shape \(2, 2, 3, 4, 4\)"):
            msm_loss(x, x, x, order=2)

    def test_shape_mismatch(self):
        x, real, _ = _inputs()
        with pytest.raises(ValueError, match=r"to have one shape, got \(2, 5, 3, 4, 4\), \(2, 5, 3, 4, 4\) and \(2, 4, 3, 4, 4\)"):
            msm_loss(x, real, real[:, :4])

    def test_not_a_tensor(self):
        x, real, _ = _inputs()
        with pytest.raises(TypeError, match="expected `pred_fake` to be a torch.Tensor, got ndarray"):
            msm_loss(x, real, real.numpy())

    def test_integer_tensor(self):
        x = torch.zeros(1, 3, 1, 2, 2, dtype=torch.long)
        with pytest.raises(TypeError, match="expected `generated` to be a floating-point tensor, got torch.int64"):
            msm_loss(x, x, x)

    def test_unknown_normalization(self):
        x, real, fake = _inputs()
        with pytest.raises(ValueError, match=r"`normalization` should be one of \('motion', 'dmd', 'none'\), got 'l2'"):
            msm_loss(x, real, fake, normalization="l2")

    def test_unknown_policy(self):
        x, real, fake = _inputs()
        with pytest.raises(ValueError, match=r"`timestep_policy` should be one of \('strict', 'pairs'\), got 'blocks'"):
            msm_loss(x, real, fake, timestep_policy="blocks")


class TestModule:
    @pytest.mark.parametrize("lam", [0.0, 0.25, 3])
    def test_module_equals_function(self, lam):
        x, real, fake = _inputs()
        module = MSMLoss(lam, normalization="dmd", order=2)
        expected = lam * msm_loss(x, real, fake, normalization="dmd", order=2)
        torch.testing.assert_close(module(x, real, fake), expected)

    def test_lam_zero_changes_nothing(self):
        x, real, fake = _inputs()

        def host_loss():
            return 0.5 * ((x.double() - (x.double() - (fake - real)).detach()) ** 2).mean()

        host = host_loss()
        (g_host,) = torch.autograd.grad(host, x)
        total = host_loss() + MSMLoss(0.0)(x, real, fake)
        (g_total,) = torch.autograd.grad(total, x)
        assert total.item() == host.item()
        assert torch.equal(g_total, g_host)

    @pytest.mark.parametrize("lam,exc,msg", [
        (-0.1, ValueError, "`lam` should be finite and >= 0, got -0.1"),
        (float("nan"), ValueError, "`lam` should be finite and >= 0, got nan"),
        (float("inf"), ValueError, "`lam` should be finite and >= 0, got inf"),
        ("0.5", TypeError, "`lam` should be a real number, got str '0.5'"),
        (True, TypeError, "`lam` should be a real number, got bool True"),
    ])
    def test_bad_lam(self, lam, exc, msg):
        with pytest.raises(exc, match=msg):
            MSMLoss(lam)

    def test_bad_feature(self):
        with pytest.raises(TypeError, match="`feature` should be a callable applied per frame or None, got int"):
            MSMLoss(1.0, feature=3)

    def test_bad_options_in_module(self):
        with pytest.raises(ValueError, match="`normalization` should be one of"):
            MSMLoss(1.0, normalization="pixels")


class TestPrecisionAndDevices:
    def test_bf16_inputs(self):
        x, real, fake = _inputs(dtype=torch.bfloat16)
        loss = msm_loss(x, real, fake)
        (grad,) = torch.autograd.grad(loss, x)
        assert loss.dtype == torch.float64 and grad.dtype == torch.bfloat16
        ref_loss, ref_grad = msm_reference(x.detach().double().numpy(), real.double().numpy(), fake.double().numpy())
        assert math.isclose(loss.item(), ref_loss, rel_tol=1e-10)  # differences are taken after the cast
        torch.testing.assert_close(grad.double(), torch.from_numpy(ref_grad), rtol=1e-2, atol=1e-4)

    @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
    def test_cuda_bf16_matches_cpu(self):
        x, real, fake = _inputs(dtype=torch.bfloat16)
        cpu = msm_loss(x, real, fake)
        (g_cpu,) = torch.autograd.grad(cpu, x)
        xc = x.detach().cuda().requires_grad_(True)
        gpu = msm_loss(xc, real.cuda(), fake.cuda())
        (g_gpu,) = torch.autograd.grad(gpu, xc)
        assert math.isclose(gpu.item(), cpu.item(), rel_tol=1e-9)
        torch.testing.assert_close(g_gpu.cpu(), g_cpu)
