import pytest
import torch

from msm_plugin.motion import motion_score, motion_score_adjoint, pair_mask, shared_timestep_mask, smooth_frames, smooth_frames_adjoint
from tests.reference import apply_frames, difference_matrix, smoothing_matrix


class TestMotionScore:
    def test_first_difference_hand_computed(self):
        y = torch.tensor([[1.0, 4.0, 9.0, 16.0]])
        assert motion_score(y).tolist() == [[3.0, 5.0, 7.0]]

    def test_second_difference_is_acceleration(self):
        y = torch.tensor([[1.0, 4.0, 9.0, 16.0]])  # t^2: constant acceleration 2
        assert motion_score(y, order=2).tolist() == [[2.0, 2.0]]

    @pytest.mark.parametrize("order", [1, 2, 3])
    def test_matches_difference_matrix(self, order):
        y = torch.randn(2, 7, 3, 4, 5, dtype=torch.float64)
        ref = apply_frames(difference_matrix(7, order), y.numpy())
        torch.testing.assert_close(motion_score(y, order=order), torch.from_numpy(ref))

    def test_other_dim(self):
        y = torch.randn(3, 5, dtype=torch.float64)
        torch.testing.assert_close(motion_score(y, dim=0), y[1:] - y[:-1])

    def test_static_video_has_zero_motion(self):
        frame = torch.randn(1, 1, 3, 4, 4)
        assert motion_score(frame.expand(1, 6, 3, 4, 4)).abs().max() == 0

    @pytest.mark.parametrize("order", [0, -1, 1.5, True])
    def test_bad_order(self, order):
        with pytest.raises(ValueError, match="`order` should be a positive integer"):
            motion_score(torch.zeros(1, 3), order=order)

    def test_too_few_frames(self):
        with pytest.raises(ValueError, match=r"needs more than 2 frames on dim 1, got shape \(1, 2\)"):
            motion_score(torch.zeros(1, 2), order=2)

    def test_not_a_tensor(self):
        with pytest.raises(TypeError, match="expected a torch.Tensor, got list"):
            motion_score([[1.0, 2.0]])

    def test_zero_dim(self):
        with pytest.raises(ValueError, match="0-d tensor"):
            motion_score(torch.tensor(1.0))


class TestMasks:
    def test_pair_mask_both_frames(self):
        m = torch.tensor([[True, False, True, True]])
        assert pair_mask(m).tolist() == [[False, False, True]]

    def test_pair_mask_elementwise(self):
        m = torch.ones(1, 3, 2, 1, 1, dtype=torch.bool)
        m[0, 1, 0] = False
        assert pair_mask(m)[..., 0, 0].tolist() == [[[False, True], [False, True]]]

    def test_shared_timestep_blocks(self):
        t = torch.tensor([[900, 900, 500, 500, 500, 100]])
        assert shared_timestep_mask(t).tolist() == [[True, False, True, True, False]]
        assert shared_timestep_mask(t, order=2).tolist() == [[False, False, True, False]]


class TestSmoothFrames:
    def test_matches_explicit_matrix(self):
        y = torch.randn(2, 7, 3, 4, 5, dtype=torch.float64)
        ref = apply_frames(smoothing_matrix(7), y.numpy())
        torch.testing.assert_close(smooth_frames(y), torch.from_numpy(ref))

    def test_adjoint_is_exact(self):
        # <S y, g> = <y, S^T g> and <D S y, g> = <y, S^T D^T g>, in float64: the two inner products
        # sum the same ~500 products in different orders, so they agree to ~1e-13 relative
        gen = torch.Generator().manual_seed(1)
        y = torch.randn(2, 9, 3, 2, 2, generator=gen, dtype=torch.float64)
        g = torch.randn(2, 7, 3, 2, 2, generator=gen, dtype=torch.float64)
        assert torch.sum(smooth_frames(y) * g).item() == pytest.approx(torch.sum(y * smooth_frames_adjoint(g)).item(), rel=1e-12)
        h = g[:, 1:]
        lhs = torch.sum(motion_score(smooth_frames(y)) * h).item()
        assert lhs == pytest.approx(torch.sum(y * smooth_frames_adjoint(motion_score_adjoint(h))).item(), rel=1e-12)
        ref = apply_frames(smoothing_matrix(9).T, g.numpy())
        torch.testing.assert_close(smooth_frames_adjoint(g), torch.from_numpy(ref))

    def test_constant_and_linear_pass_alternating_vanishes(self):
        f = torch.arange(6, dtype=torch.float64)[None]
        assert smooth_frames(f).tolist() == [[1.0, 2.0, 3.0, 4.0]]
        assert smooth_frames((-1.0) ** f).abs().max().item() == 0

    def test_too_few_frames(self):
        with pytest.raises(ValueError, match=r"the \[1, 2, 1\] / 4 frame filter needs at least 3 frames on dim 1, got shape \(1, 2, 3\)"):
            smooth_frames(torch.zeros(1, 2, 3))

    def test_not_a_tensor(self):
        with pytest.raises(TypeError, match="expected a torch.Tensor, got list"):
            smooth_frames([1.0, 2.0, 3.0])
