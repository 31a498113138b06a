import numpy as np
import pytest
import torch

from msm_plugin.metrics._checks import as_videos


class TestAsVideos:
    def test_tensor_and_array_give_the_same_float32_array(self):
        x = torch.rand(2, 3, 1, 4, 4, dtype=torch.float64)
        a, b = as_videos(x), as_videos(x.numpy())
        assert a.dtype == np.float32 and a.shape == (2, 3, 1, 4, 4)
        np.testing.assert_array_equal(a, b)

    def test_requires_grad_tensor_is_accepted(self):
        assert as_videos(torch.zeros(1, 2, 3, 2, 2, requires_grad=True)).shape == (1, 2, 3, 2, 2)

    def test_wrong_type(self):
        with pytest.raises(TypeError, match=r"expected videos as a torch.Tensor or numpy.ndarray .* got list"):
            as_videos([[0.0]])

    def test_integer_tensor(self):
        with pytest.raises(TypeError, match=r"floating point values in \[0, 1\], got dtype torch.uint8 \(divide"):
            as_videos(torch.zeros(1, 2, 3, 2, 2, dtype=torch.uint8))

    def test_integer_array(self):
        with pytest.raises(TypeError, match=r"got NumPy dtype uint8 \(divide 8-bit frames by 255\)"):
            as_videos(np.zeros((1, 2, 3, 2, 2), np.uint8))

    def test_wrong_rank(self):
        with pytest.raises(ValueError, match=r"expected videos as a batch \[N, F, C, H, W\], got shape \(2, 3, 4, 4\)"):
            as_videos(torch.zeros(2, 3, 4, 4))

    def test_empty_batch(self):
        with pytest.raises(ValueError, match=r"at least one video in videos, got shape \(0, 2, 3, 4, 4\)"):
            as_videos(torch.zeros(0, 2, 3, 4, 4))

    def test_channels(self):
        with pytest.raises(ValueError, match=r"C = 1 or 3 channels .* got shape \(1, 2, 4, 4, 4\)"):
            as_videos(torch.zeros(1, 2, 4, 4, 4))

    def test_too_few_frames(self):
        with pytest.raises(ValueError, match=r"F >= 2 frames, got shape \(1, 1, 3, 4, 4\)"):
            as_videos(torch.zeros(1, 1, 3, 4, 4))

    def test_min_frames_and_name(self):
        with pytest.raises(ValueError, match=r"expected reference \[N, F, C, H, W\] with F >= 3 frames"):
            as_videos(torch.zeros(1, 2, 3, 4, 4), name="reference", min_frames=3)

    def test_empty_frames(self):
        with pytest.raises(ValueError, match=r"non-empty frames, got shape \(1, 2, 3, 0, 4\)"):
            as_videos(torch.zeros(1, 2, 3, 0, 4))

    def test_non_finite(self):
        x = torch.zeros(1, 2, 3, 4, 4)
        x[0, 1, 0, 0, 0] = float("nan")
        with pytest.raises(ValueError, match="expected finite values in videos, found NaN or inf"):
            as_videos(x)
