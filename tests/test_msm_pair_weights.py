"""MSM with DiagDistill's per-pair weights: the weights, the weighted gradient D^T (w g) / N against
explicit matrices, the option rules, and the option off reproducing MSM bit for bit."""

import math

import numpy as np
import pytest
import torch

from msm_plugin import MSMConfig, MSMTerm, msm_loss
from msm_plugin.config import parse_extra_losses
from msm_plugin.losses.pair_weights import (
    DIAGDISTILL_BASE,
    DIAGDISTILL_MIX,
    dynamic_pair_weights,
    exponential_pair_weights,
    hybrid_pair_weights,
)
from msm_plugin.context import LossContext
from tests import msm_before_options
from tests.msm_case import check_against_reference, random_inputs
from tests.reference import hybrid_weights_reference, msm_reference, weighted_msm_reference

SHAPE = (3, 6, 2, 3, 3)


def _inputs(seed=0, shape=SHAPE):
    return random_inputs(seed, shape, torch.float64)


class TestWeights:
    def test_diagdistill_constants(self):
        assert (DIAGDISTILL_MIX, DIAGDISTILL_BASE) == (0.7, 1.2)

    @pytest.mark.parametrize("mix, base", [(0.7, 1.2), (0.0, 2.0), (1.0, 0.5), (0.3, 1.0)])
    def test_hybrid_matches_the_loop_reference(self, mix, base):
        g = torch.randn(3, 5, 2, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        frames = torch.randn(3, 5, 2, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
        counted = torch.ones(3, 5, 1, 1, 1, dtype=torch.float64)
        counted[1, :2] = 0
        ours = hybrid_pair_weights(g * counted, frames, mix=mix, base=base, counted=counted)
        ref = hybrid_weights_reference((g * counted).numpy(), frames.numpy(), mix=mix, base=base, counted=counted.numpy())
        assert ours.shape == (3, 5) and ours.dtype == torch.float64 and not ours.requires_grad
        np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-13, atol=0)

    def test_hand_computed(self):
        # e = [1, 1, 4] (g = 0 against frames 1, 1, 2): dyn = 1 + [1, 2, 6] / 6;
        # exp with base 2 over 3 pairs = [1, 2, 4] / (7 / 3)
        g = torch.zeros(1, 3, 1, 1, 1)
        frames = torch.tensor([1.0, 1.0, 2.0]).reshape(1, 3, 1, 1, 1)
        w = hybrid_pair_weights(g, frames, mix=0.5, base=2.0)
        expected = [0.5 * (1 + c / 6) + 0.5 * p * 3 / 7 for c, p in ((1, 1), (2, 2), (6, 4))]
        assert w.flatten().tolist() == pytest.approx(expected, rel=1e-15)

    def test_exponential_weights_have_mean_one_and_survive_a_huge_base(self):
        assert exponential_pair_weights(4, 1.0).tolist() == [1.0, 1.0, 1.0, 1.0]
        huge = exponential_pair_weights(20, 1e30)
        assert torch.isfinite(huge).all() and huge[-1].item() == pytest.approx(20.0) and huge.mean().item() == pytest.approx(1.0)

    def test_an_error_free_sample_gets_dyn_one(self):
        assert dynamic_pair_weights(torch.zeros(2, 4, dtype=torch.float64)).tolist() == [[1.0] * 4] * 2

    def test_errors(self):
        with pytest.raises(ValueError, match=r"^`pairs` should be a positive integer, got 0$"):
            exponential_pair_weights(0, 1.2)
        with pytest.raises(ValueError, match=r"^`base` should be a finite number > 0, got -1.0$"):
            exponential_pair_weights(3, -1.0)
        with pytest.raises(ValueError, match=r"^expected the motion gradient and the frames it ends on to have one shape \[B, K, \.\.\.\], got \(1, 3\) and \(1, 4\)$"):
            hybrid_pair_weights(torch.zeros(1, 3), torch.zeros(1, 4))


class TestWeightedMSM:
    @pytest.mark.parametrize("normalization", ["motion", "none"])
    @pytest.mark.parametrize("mix, base", [(0.7, 1.2), (0.2, 3.0)])
    def test_loss_and_gradient_against_explicit_matrices(self, normalization, mix, base):
        x, real, fake = _inputs()
        loss = msm_loss(x, real, fake, normalization=normalization, pair_weights="hybrid", pair_weights_mix=mix, pair_weights_base=base)
        ref_loss, ref_grad, w = weighted_msm_reference(x.detach().numpy(), real.numpy(), fake.numpy(), mix=mix, base=base, normalization=normalization)
        assert not np.allclose(w, 1.0, atol=0.05)  # the weights really differ from MSM's
        check_against_reference(loss, x, ref_loss, ref_grad)

    @pytest.mark.parametrize("order, smoothing", [(2, False), (1, True)])
    def test_other_operators_compare_with_the_last_frame_read(self, order, smoothing):
        x, real, fake = _inputs()
        loss = msm_loss(x, real, fake, order=order, smoothing="binomial" if smoothing else "none", pair_weights="hybrid")
        check_against_reference(loss, x, *weighted_msm_reference(x.detach().numpy(), real.numpy(), fake.numpy(), order=order, smoothing=smoothing)[:2])

    def test_with_a_gradient_mask(self):
        x, real, fake = _inputs()
        frames = torch.tensor([[False, True, True, True, True, True], [True] * 6, [True, True, False, True, True, True]])
        counted = (frames[:, 1:] & frames[:, :-1]).numpy()[:, :, None, None, None]
        loss = msm_loss(x, real, fake, gradient_mask=frames, pair_weights="hybrid")
        check_against_reference(loss, x, *weighted_msm_reference(x.detach().numpy(), real.numpy(), fake.numpy(), counted=counted)[:2])

    def test_the_gradient_is_that_of_the_weighted_stop_gradient_surrogate(self):
        # 0.5 * sum(w (D x - sg[D x - g])^2) / N has the gradient of <D x, w g> / N, i.e. D^T (w g) / N:
        # gradcheck that surrogate (slices, not the package's operator), then require msm_loss's
        # gradient to equal it
        x, real, fake = _inputs(shape=(2, 4, 1, 2, 2))
        _, _, w = weighted_msm_reference(x.detach().numpy(), real.numpy(), fake.numpy(), normalization="none")
        w = torch.from_numpy(w).reshape(2, 3, 1, 1, 1)
        g = ((fake[:, 1:] - fake[:, :-1]) - (real[:, 1:] - real[:, :-1])).detach()
        n = g.numel()

        def surrogate(x_):
            return ((x_[:, 1:] - x_[:, :-1]) * w * g).sum() / n

        assert torch.autograd.gradcheck(surrogate, (x,))
        (expected,) = torch.autograd.grad(surrogate(x), x)
        (ours,) = torch.autograd.grad(msm_loss(x, real, fake, normalization="none", pair_weights="hybrid"), x)
        torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-15)

    def test_uniform_weights_give_plain_msm(self):
        # mix 0 and base 1: w = 1 everywhere
        x, real, fake = _inputs()
        (plain_grad,) = torch.autograd.grad(plain := msm_loss(x, real, fake), x)
        (grad,) = torch.autograd.grad(weighted := msm_loss(x, real, fake, pair_weights="hybrid", pair_weights_mix=0.0, pair_weights_base=1.0), x)
        assert weighted.item() == pytest.approx(plain.item(), rel=1e-14)
        torch.testing.assert_close(grad, plain_grad, rtol=1e-14, atol=0)


class TestOffIsTodaysMSM:
    @pytest.mark.parametrize("normalization", ["motion", "dmd", "none"])
    @pytest.mark.parametrize("case", ["plain", "mask", "feature"])
    @pytest.mark.parametrize("explicit", [False, True])
    def test_loss_and_gradient_bit_for_bit(self, normalization, case, explicit):
        # against the frozen MSM of before any option (tests/msm_before_options.py), not against itself
        x, real, fake = _inputs()
        mask = torch.tensor([[True] * 6, [False] + [True] * 5, [True] * 6]) if case == "mask" else None
        options = dict(normalization=normalization, feature=torch.tanh if case == "feature" else None)
        old = msm_before_options._msm_terms(x, real, fake, None, mask, MSMConfig(**options))
        (g_old,) = torch.autograd.grad(old.loss, x)
        off = dict(pair_weights="none") if explicit else {}
        new = msm_loss(x, real, fake, gradient_mask=mask, **options, **off)
        (g_new,) = torch.autograd.grad(new, x)
        assert torch.equal(new, old.loss) and torch.equal(g_new, g_old)

    def test_reference_is_msm_reference_at_uniform_weights(self):
        # the weighted reference reduces to the plain one when w = 1: the two references agree
        x, real, fake = (t.detach().numpy() for t in _inputs())
        plain, plain_grad = msm_reference(x, real, fake)
        weighted, weighted_grad, w = weighted_msm_reference(x, real, fake, mix=0.0, base=1.0)
        assert np.all(w == 1.0) and weighted == pytest.approx(plain, rel=1e-14)
        np.testing.assert_allclose(weighted_grad, plain_grad, rtol=1e-14)


class TestOptions:
    def test_from_a_config_section_and_in_the_description(self):
        (spec,) = parse_extra_losses({"extra_losses": ["msm"], "msm": {"lam": 0.5, "pair_weights": "hybrid", "pair_weights_base": 1.5}})
        term = spec.build()
        assert (term.config.pair_weights, term.config.pair_weights_mix, term.config.pair_weights_base) == ("hybrid", 0.7, 1.5)
        assert repr(term).endswith(", pair_weights='hybrid', pair_weights_mix=0.7, pair_weights_base=1.5)")
        assert "pair_weights" not in repr(MSMTerm())

    def test_term_loss_is_the_weighted_one(self):
        x, real, fake = _inputs()
        loss, logs = MSMTerm(pair_weights="hybrid")(LossContext(x, real, fake))
        ref_loss, _, _ = weighted_msm_reference(x.detach().numpy(), real.numpy(), fake.numpy())
        assert math.isclose(loss.item(), ref_loss, rel_tol=1e-10) and math.isclose(logs["msm_loss"].item(), ref_loss, rel_tol=1e-10)

    @pytest.mark.parametrize("kwargs, error, message", [
        ({"pair_weights": "diagdistill"}, ValueError, r"^`pair_weights` should be one of \('none', 'hybrid'\), got 'diagdistill'$"),
        ({"pair_weights": "hybrid", "pair_weights_mix": 1.5}, ValueError, r"^`pair_weights_mix` should be in \[0, 1\], got 1.5$"),
        ({"pair_weights": "hybrid", "pair_weights_base": 0}, ValueError, r"^`pair_weights_base` should be finite and > 0, got 0$"),
        ({"pair_weights_mix": 0.5}, ValueError,
         r"^`pair_weights_mix` shapes the hybrid pair weights, which are off: set `pair_weights` to 'hybrid' as well, got pair_weights_mix=0.5 with pair_weights='none'$"),
        ({"pair_weights_base": 2}, ValueError,
         r"^`pair_weights_base` shapes the hybrid pair weights, which are off: set `pair_weights` to 'hybrid' as well, got pair_weights_base=2.0 with pair_weights='none'$"),
    ])
    def test_rules(self, kwargs, error, message):
        with pytest.raises(error, match=message):
            MSMConfig(**kwargs)

    def test_section_type_error(self):
        with pytest.raises(TypeError, match=r"^option `msm.pair_weights` should be str, got bool True$"):
            parse_extra_losses({"extra_losses": ["msm"], "msm": {"pair_weights": True}})
