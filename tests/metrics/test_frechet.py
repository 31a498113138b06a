import numpy as np
import pytest
import scipy.linalg
import torch

from msm_plugin.metrics.features import appearance_features, cell_means, extractor_features, motion_features
from msm_plugin.metrics.frechet import frechet_distance, gaussian_frechet_distance


def _scipy_frechet(a, b):
    """Independent reference: the textbook formula with scipy's general sqrtm."""
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * scipy.linalg.sqrtm(cov_a @ cov_b).real))


class TestFrechet:
    def test_one_dimensional_hand_computed(self):
        # {0, 2}: mean 1, variance 2; {1, 5}: mean 3, variance 8 -> (1 - 3)^2 + (sqrt 2 - sqrt 8)^2 = 4 + 2.
        assert frechet_distance(np.array([[0.0], [2.0]]), torch.tensor([[1.0], [5.0]])) == pytest.approx(6.0)

    def test_gaussians_with_known_covariances(self):
        # Commuting covariances: the trace term is sum (sqrt(l_a) - sqrt(l_b))^2 over eigenvalues.
        rotation = np.array([[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]])
        cov_a = rotation @ np.diag([4.0, 1.0]) @ rotation.T
        cov_b = rotation @ np.diag([1.0, 9.0]) @ rotation.T
        expected = 1.0 + 4.0 + (2 - 1) ** 2 + (1 - 3) ** 2
        assert gaussian_frechet_distance([0.0, 0.0], cov_a, [1.0, 2.0], cov_b) == pytest.approx(expected)

    def test_singular_covariances(self):
        assert gaussian_frechet_distance([0, 0], np.diag([1.0, 0.0]), [0, 0], np.diag([4.0, 0.0])) == pytest.approx(1.0)

    def test_matches_scipy_sqrtm(self, rng):
        for n, d in [(60, 4), (200, 12)]:
            a = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
            b = rng.normal(0.5, 1.0, size=(n + 7, d)) @ rng.normal(size=(d, d))
            assert frechet_distance(a, b) == pytest.approx(_scipy_frechet(a, b), rel=1e-8)

    def test_rank_one_sets_hand_computed(self):
        # a = {u, -u}, b = {v, -v}: S_a = 2 u u^T, S_b = 2 v v^T, tr (S_a S_b)^{1/2} = 2 |u.v|, so
        # FD = 2|u|^2 + 2|v|^2 - 4|u.v|: one sample direction each in 20 dimensions.
        u = np.linspace(-1.0, 1.0, 20)
        v = np.cos(np.arange(20.0))
        expected = 2 * u @ u + 2 * v @ v - 4 * abs(u @ v)
        # QR and SVD are backward stable: each term is exact to ~D * eps relative (~1e-13 here).
        assert frechet_distance(np.stack([u, -u]), np.stack([v, -v])) == pytest.approx(expected, rel=1e-12)

    def test_fewer_samples_than_dimensions_is_symmetric_and_zero_on_itself(self, rng):
        a, b = rng.normal(size=(5, 20)), rng.normal(1.0, 1.0, size=(4, 20))
        scale = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(np.cov(a, rowvar=False)) + np.trace(np.cov(b, rowvar=False))
        # Swapping the sets transposes the matrix whose singular values are summed: equal up to
        # round-off of order D * eps * scale (~1e-13); 1e-10 * scale leaves room for any BLAS kernel.
        assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), abs=1e-10 * scale)
        assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-10 * scale)

    def test_fewer_samples_than_dimensions_matches_scipy_to_its_accuracy(self, rng):
        a, b = rng.normal(size=(5, 20)), rng.normal(1.0, 1.0, size=(4, 20))
        cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        # scipy's sqrtm of the singular product S_a S_b takes square roots of its round-off
        # eigenvalues (size ~eps * ||S_a S_b||): each of the D - rank null directions can add
        # up to sqrt(eps * ||S_a S_b||) to the trace, twice over in the formula.
        null_directions = 20 - 3
        bound = 2 * null_directions * np.sqrt(np.finfo(float).eps * np.linalg.norm(cov_a @ cov_b, 2))
        assert frechet_distance(a, b) == pytest.approx(_scipy_frechet(a, b), abs=bound)

    def test_wrong_type(self):
        with pytest.raises(TypeError, match=r"expected `feat_a` as a torch.Tensor or numpy.ndarray \[N, D\], got list"):
            frechet_distance([[0.0]], np.zeros((2, 1)))

    def test_wrong_rank(self):
        with pytest.raises(ValueError, match=r"expected `feat_b` of shape \[N, D\], got shape \(3,\)"):
            frechet_distance(np.zeros((2, 1)), np.zeros(3))

    def test_single_sample(self):
        with pytest.raises(ValueError, match=r"at least 2 samples in `feat_a` to estimate a covariance, got shape \(1, 3\)"):
            frechet_distance(np.zeros((1, 3)), np.zeros((4, 3)))

    def test_dimension_mismatch(self):
        with pytest.raises(ValueError, match=r"same dimension D, got \(2, 3\) and \(2, 4\)"):
            frechet_distance(np.zeros((2, 3)), np.zeros((2, 4)))

    def test_non_finite(self):
        with pytest.raises(ValueError, match="expected finite values in `feat_a`"):
            frechet_distance(np.full((2, 1), np.nan), np.zeros((2, 1)))

    def test_gaussian_shapes(self):
        with pytest.raises(ValueError, match=r"means \[D\] and covariances \[D, D\] of one size D"):
            gaussian_frechet_distance([0.0, 0.0], np.eye(3), [0.0, 0.0], np.eye(2))


class TestFeatures:
    def test_cell_means_uneven_partition(self):
        # 5 columns in 2 cells: columns 0-1 and 2-4.
        maps = np.tile(np.arange(5.0), (2, 1))
        np.testing.assert_allclose(cell_means(maps, 2), [[0.5, 3.0], [0.5, 3.0]])

    def test_static_video_has_zero_motion_features(self, rng):
        videos = np.broadcast_to(rng.random((1, 1, 3, 8, 8)), (3, 4, 3, 8, 8))
        assert np.all(motion_features(videos, grid=2) == 0.0)

    def test_motion_features_hand_computed(self):
        # A fade 0, 0.1, 0.3 on the whole frame: |D| = 0.1, 0.2 (mean 0.15, std 0.05), |D^2| = 0.1.
        x = torch.tensor([0.0, 0.1, 0.3]).view(1, 3, 1, 1, 1).expand(1, 3, 3, 4, 4)
        feats = motion_features(x, grid=2)
        np.testing.assert_allclose(feats, [[0.15] * 4 + [0.05] * 4 + [0.1] * 4], rtol=1e-5)

    def test_appearance_features_hand_computed(self):
        x = torch.zeros(1, 2, 1, 2, 2)
        x[0, 1, 0, 0, 0] = 1.0
        np.testing.assert_allclose(appearance_features(x, grid=2), [[0, 0, 0, 0, 0], [1, 0, 0, 0, np.sqrt(3) / 4]])

    def test_appearance_features_ignore_frame_order(self, drifting_blobs, rng):
        videos = drifting_blobs(3, seed=2)
        a = appearance_features(videos)
        b = appearance_features(videos[:, rng.permutation(8)])
        np.testing.assert_allclose(np.sort(a, axis=0), np.sort(b, axis=0))

    def test_grid_larger_than_frame(self):
        with pytest.raises(ValueError, match=r"`grid` = 4 needs frames of at least 4x4 pixels, got 2x8"):
            motion_features(np.zeros((1, 3, 1, 2, 8)))

    def test_grid_type(self):
        with pytest.raises(ValueError, match=r"`grid` should be a positive int, got 0"):
            appearance_features(np.zeros((1, 3, 1, 8, 8)), grid=0)


class TestExtractorFeatures:
    def test_module_in_batches_flattened(self):
        calls = []

        class MeanPerFrame(torch.nn.Module):
            def forward(self, videos):
                calls.append(videos.shape[0])
                return videos.mean(dim=(2, 3, 4)).unsqueeze(-1)

        x = torch.arange(5.0).view(5, 1, 1, 1, 1).expand(5, 2, 1, 2, 2) / 10
        feats = extractor_features(x, MeanPerFrame(), batch_size=2)
        assert calls == [2, 2, 1]
        np.testing.assert_allclose(feats, np.repeat(np.arange(5.0)[:, None] / 10, 2, axis=1), rtol=1e-6)

    def test_not_callable(self):
        with pytest.raises(TypeError, match="expected `extractor` to be callable .* got str"):
            extractor_features(np.zeros((1, 2, 1, 2, 2)), "i3d.pt")

    def test_bad_batch_size(self):
        with pytest.raises(ValueError, match="`batch_size` should be a positive int, got 0"):
            extractor_features(np.zeros((1, 2, 1, 2, 2)), torch.nn.Flatten(), batch_size=0)

    def test_failing_extractor(self):
        with pytest.raises(ValueError, match=r"the feature extractor failed on a batch of shape \(1, 2, 1, 2, 2\): RuntimeError"):
            extractor_features(np.zeros((1, 2, 1, 2, 2), np.float32), torch.nn.Linear(3, 3))

    def test_wrong_output(self):
        with pytest.raises(ValueError, match=r"return a tensor \[B, D\] with B = 2, got \(3,\)"):
            extractor_features(np.zeros((2, 2, 1, 2, 2)), lambda v: torch.zeros(3))

    def test_non_finite_output(self):
        with pytest.raises(ValueError, match="expected finite features from the extractor"):
            extractor_features(np.zeros((2, 2, 1, 2, 2)), lambda v: torch.full((2, 1), float("inf")))
