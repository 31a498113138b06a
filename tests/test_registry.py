import sys

import pytest
import torch

from msm_plugin import registry
from msm_plugin.context import LossContext, compose
from msm_plugin.losses.msm import MSMTerm, msm_loss
from msm_plugin.registry import (
    DuplicateLossError,
    LossPluginError,
    UnknownLossError,
    available_losses,
    get_loss,
    load_entry_points,
    register_loss,
)


class FakeDist:
    def __init__(self, name):
        self.name = name


class FakeEntryPoint:
    """Stands in for importlib.metadata.EntryPoint (as pluggy's tests do), without installing."""

    def __init__(self, name, value, dist, target=None, error=None):
        self.name, self.value, self.dist = name, value, FakeDist(dist)
        self._target, self._error = target, error
        self.loads = 0

    def load(self):
        self.loads += 1
        if self._error is not None:
            raise self._error
        return self._target


class Constant:
    name, weight = "constant", 2.0

    def __init__(self, value=1.5):
        self.value = value

    def __call__(self, ctx):
        return ctx.generated.sum() * 0 + self.value, {"constant_value": self.value}


@pytest.fixture
def fresh(monkeypatch):
    """An empty registry whose entry points are the list this fixture returns."""
    monkeypatch.setattr(registry, "_registry", registry._Registry())
    eps = []
    monkeypatch.setattr(registry, "entry_points", lambda group: eps)
    return eps


def _ctx():
    x = torch.randn(1, 3, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    return LossContext(x, torch.randn(1, 3, 2, 2, 2, dtype=torch.float64), torch.randn(1, 3, 2, 2, 2, dtype=torch.float64))


class TestRegisterLoss:
    def test_register_and_get(self, fresh):
        assert register_loss("constant")(Constant) is Constant
        assert get_loss("constant") is Constant
        assert available_losses() == ["constant"]

    def test_same_factory_twice_is_idempotent(self, fresh):
        register_loss("constant")(Constant)
        register_loss("constant")(Constant)
        assert available_losses() == ["constant"]

    def test_duplicate_names_both(self, fresh):
        register_loss("constant")(Constant)
        with pytest.raises(DuplicateLossError, match=r"extra loss 'constant' from module .* is already registered by module tests"):
            register_loss("constant")(MSMTerm)

    @pytest.mark.parametrize("name", ["Upper", "with-dash", "", "1st", "a.b", 3, None])
    def test_malformed_names(self, fresh, name):
        with pytest.raises(ValueError, match=r"lower-case identifiers matching \[a-z\]\[a-z0-9_\]\*, got"):
            register_loss(name)

    def test_non_callable_factory(self, fresh):
        with pytest.raises(TypeError, match="extra loss 'thing' from module .* must be a callable factory, got int"):
            register_loss("thing")(3)

    def test_unknown_name_lists_known(self, fresh):
        register_loss("constant")(Constant)
        with pytest.raises(UnknownLossError, match=r"unknown extra loss 'msn'; known losses: constant"):
            get_loss("msn")

    def test_unknown_name_when_empty(self, fresh):
        with pytest.raises(UnknownLossError, match="known losses: none"):
            get_loss("msm")

    def test_non_string_name(self, fresh):
        with pytest.raises(TypeError, match="an extra-loss name must be a string, got list"):
            get_loss(["msm"])

    def test_dotted_path_is_never_imported(self, fresh):
        sys.modules.pop("this_module_does_not_exist", None)
        with pytest.raises(UnknownLossError, match="unknown extra loss 'json.decoder:JSONDecoder'"):
            get_loss("json.decoder:JSONDecoder")
        with pytest.raises(UnknownLossError):
            get_loss("this_module_does_not_exist")
        assert "this_module_does_not_exist" not in sys.modules


class TestEntryPoints:
    def test_loaded_once_and_counted(self, fresh):
        ep = FakeEntryPoint("constant", "pkg.mod:Constant", "my-dist", target=Constant)
        fresh.append(ep)
        assert load_entry_points() == 1
        assert load_entry_points() == 0
        assert get_loss("constant") is Constant and ep.loads == 1
        assert "distribution 'my-dist'" in registry._registry.origins["constant"]

    def test_already_registered_same_object_is_skipped_in_count(self, fresh):
        register_loss("constant")(Constant)
        fresh.append(FakeEntryPoint("constant", "pkg.mod:Constant", "my-dist", target=Constant))
        assert load_entry_points() == 0

    def test_failing_plugin_names_itself_and_distribution(self, fresh):
        fresh.append(FakeEntryPoint("broken", "broken_pkg.losses:Broken", "broken-dist", error=ImportError("No module named 'cupy'")))
        with pytest.raises(LossPluginError, match=r"extra-loss plugin 'broken' \(broken_pkg.losses:Broken\) from distribution 'broken-dist' failed to load: ImportError: No module named 'cupy'"):
            available_losses()

    def test_two_distributions_claim_one_name(self, fresh):
        fresh.append(FakeEntryPoint("motion", "a.mod:A", "dist-a", target=Constant))
        fresh.append(FakeEntryPoint("motion", "b.mod:B", "dist-b", target=MSMTerm))
        with pytest.raises(DuplicateLossError, match=r"extra loss 'motion' is declared twice: by entry point 'motion' = 'a.mod:A' of distribution 'dist-a' and by entry point 'motion' = 'b.mod:B' of distribution 'dist-b'"):
            load_entry_points()

    def test_plugin_clashing_with_local_registration(self, fresh):
        register_loss("constant")(Constant)
        fresh.append(FakeEntryPoint("constant", "other.mod:Other", "other-dist", target=MSMTerm))
        with pytest.raises(DuplicateLossError, match=r"from entry point 'constant' = 'other.mod:Other' of distribution 'other-dist' is already registered by module tests"):
            load_entry_points()

    def test_malformed_entry_point_name(self, fresh):
        fresh.append(FakeEntryPoint("Bad-Name", "x:y", "bad-dist", target=Constant))
        with pytest.raises(ValueError, match=r"got 'Bad-Name' from entry point 'Bad-Name' = 'x:y' of distribution 'bad-dist'"):
            load_entry_points()

    def test_msm_is_registered_in_code_next_to_its_definition(self):
        assert get_loss("msm") is MSMTerm
        assert registry._registry.origins["msm"] == "module msm_plugin.losses.msm"
        assert registry._registry.origins["temporal_variance"] == "module msm_plugin.losses.temporal_variance"

    def test_a_source_tree_without_any_entry_point_knows_the_built_in_losses(self, tmp_path):
        # A vendored copy / PYTHONPATH checkout: no distribution metadata declares anything.
        import os
        import subprocess
        from pathlib import Path

        code = (
            "import importlib.metadata as m\n"
            "m.entry_points = lambda **kw: [] if kw else {}\n"
            "import torch, msm_plugin\n"
            "from tests.adapters.standins import CausVidDMD, make_config\n"
            "dmd = msm_plugin.wrap_trainer(CausVidDMD(make_config()), lam=0.5)\n"
            "print(msm_plugin.available_losses(), [l.name for l in msm_plugin.active_losses(dmd)])\n"
        )
        root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": root, "OMP_NUM_THREADS": "1"}
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "['msm', 'temporal_variance'] ['msm']"


class TestCompose:
    def test_adds_weighted_terms_and_keeps_host_logs(self, fresh):
        ctx = _ctx()
        host = (ctx.generated**2).mean()
        total, logs = compose(host, {"dmdtrain_gradient_norm": 0.3}, [Constant(1.5)], ctx)
        assert total.item() == pytest.approx(host.item() + 2.0 * 1.5)
        assert logs == {"dmdtrain_gradient_norm": 0.3, "constant_value": 1.5}

    def test_gradient_is_host_plus_weighted_msm(self):
        ctx = _ctx()
        term = MSMTerm(lam=0.7)
        host = (ctx.generated**2).mean()
        total, _ = compose(host, {}, [term], ctx)
        (g_total,) = torch.autograd.grad(total, ctx.generated)
        expected = 2 * ctx.generated.detach() / ctx.generated.numel()
        from msm_plugin import msm_loss

        (g_msm,) = torch.autograd.grad(msm_loss(ctx.generated, ctx.pred_real, ctx.pred_fake), ctx.generated)
        torch.testing.assert_close(g_total, expected + 0.7 * g_msm)

    def test_dmd_normalizer_is_the_hosts_per_sample_mean(self):
        x = torch.tensor([1.0, 3.0, -2.0, 0.0]).reshape(2, 2, 1, 1, 1)
        ctx = LossContext(x, torch.zeros_like(x), torch.zeros_like(x))
        assert ctx.dmd_normalizer.tolist() == [2.0, 1.0]  # mean |x - 0| per sample
        assert ctx.dmd_normalizer.dtype == torch.float64

    def test_dmd_normalizer_over_the_batch_and_with_an_epsilon(self):
        x = torch.tensor([1.0, 3.0, -2.0, 0.0]).reshape(2, 2, 1, 1, 1)
        batch = LossContext(x, torch.zeros_like(x), torch.zeros_like(x), dmd_over="batch")
        assert batch.dmd_normalizer.tolist() == [1.5, 1.5]  # (1 + 3 + 2 + 0) / 4, FastVideo's one scalar
        eps = LossContext(x, torch.zeros_like(x), torch.zeros_like(x), dmd_eps=0.25)
        assert eps.dmd_normalizer.tolist() == [2.25, 1.25]  # FastGen's + eps, per sample
        with pytest.raises(ValueError, match="`over` should be 'sample' or 'batch', got 'frame'"):
            LossContext(x, x, x, dmd_over="frame").dmd_normalizer

    def test_msm_dmd_normalisation_reads_the_contexts_normaliser(self):
        # With the batch-wide normaliser n = 1.5 and pred_fake - pred_real moving by 1 per frame in
        # every sample, g = 1 / 1.5 on every entry: loss = 0.5 * (2/3)^2.
        x = torch.tensor([1.0, 3.0, -2.0, 0.0]).reshape(2, 2, 1, 1, 1)
        fake = torch.tensor([0.0, 1.0, 0.0, 1.0]).reshape(2, 2, 1, 1, 1)
        term = get_loss("msm")(lam=1.0, normalization="dmd", per_pair_logs=False)
        loss, _ = term(LossContext(x, torch.zeros_like(x), fake, dmd_over="batch"))
        assert loss.item() == pytest.approx(0.5 * (2 / 3) ** 2, rel=1e-12)

    def test_log_key_clash(self, fresh):
        with pytest.raises(ValueError, match=r"extra loss 'constant' logs keys that are already present: \['constant_value'\]"):
            compose(torch.tensor(0.0), {"constant_value": 1}, [Constant()], _ctx())

    def test_non_scalar_loss(self, fresh):
        class Bad(Constant):
            def __call__(self, ctx):
                return ctx.generated, {}

        with pytest.raises(TypeError, match="extra loss 'constant' must return a scalar tensor"):
            compose(torch.tensor(0.0), {}, [Bad()], _ctx())


class TestMSMTermLogs:
    def test_logs_and_diagnostics_hand_computed(self):
        x = torch.zeros(1, 3, 1, 1, 2, requires_grad=True)
        real = torch.tensor([0.0, 1.0, 3.0]).reshape(1, 3, 1, 1, 1).expand(1, 3, 1, 1, 2)
        fake = torch.zeros(1, 3, 1, 1, 2)
        loss, logs = MSMTerm(lam=0.25, normalization="none", per_pair_logs=True)(LossContext(x, real, fake))
        # D(real) = [1, 2] per pixel; g = D(fake) - D(real) = [-1, -2]
        assert loss.item() == pytest.approx(0.5 * (1 + 4) / 2)
        assert logs["msm_loss"].item() == loss.item() and logs["msm_lambda"] == 0.25
        assert logs["msm_gradient_norm"].item() == pytest.approx(1.5)
        assert "msm_pairs_counted" not in logs  # nothing can be excluded: no mask, no pairs policy, no noise range
        assert float(logs["msm_motion_pred_real"]) == pytest.approx(1.5)
        assert float(logs["msm_motion_pair/pred_real_00"]) == 1.0 and float(logs["msm_motion_pair/pred_real_01"]) == 2.0
        assert float(logs["msm_motion_generated"]) == 0.0 and float(logs["msm_motion_pred_fake"]) == 0.0
        # the generated video is static like the critic's prediction: its motion is 1.5 from the teacher's, 0 from the critic's
        assert float(logs["msm_motion_gap_real"]) == pytest.approx(1.5) and float(logs["msm_motion_gap_fake"]) == 0.0
        # MSM: D^T g = [1, 1, -2] per pixel over N = 4 entries, weight 1/4: 0.25 * sqrt(2 * 6) / 4.
        # DMD: (fake - real) / n with n = mean |x - real| = 4/3, over 6 entries: sqrt(2 * 10) * 3/4 / 6.
        assert logs["msm_grad_ratio"].item() == pytest.approx(0.5 * (12 / 20) ** 0.5, rel=1e-12)

    def test_default_logs_are_a_handful_and_per_pair_logs_are_opt_in(self):
        x = torch.randn(1, 21, 2, 3, 3, requires_grad=True)  # Wan's 21 latent frames
        ctx = LossContext(x, torch.randn(1, 21, 2, 3, 3), torch.randn(1, 21, 2, 3, 3))
        _, logs = MSMTerm()(ctx)
        assert sorted(logs) == ["msm_grad_ratio", "msm_gradient_norm", "msm_lambda", "msm_loss", "msm_motion_gap_fake",
                                "msm_motion_gap_real", "msm_motion_generated", "msm_motion_pred_fake", "msm_motion_pred_real"]
        _, logs = MSMTerm(per_pair_logs=True)(ctx)
        assert len(logs) == 9 + 3 * 20
        assert "msm_grad_ratio" not in MSMTerm(feature=lambda f: f.mean(1))(ctx)[1]  # needs f's Jacobian

    def test_a_feature_map_runs_once_per_video_and_its_motion_is_logged(self):
        calls = []

        def feature(frames):  # a per-frame feature, as a network would be: count its calls
            calls.append(frames.shape[0])
            return frames.mean(1, keepdim=True) * 2

        g = torch.Generator().manual_seed(3)
        x = torch.randn(2, 5, 3, 4, 4, generator=g, requires_grad=True)
        real, fake = torch.randn(2, 5, 3, 4, 4, generator=g), torch.randn(2, 5, 3, 4, 4, generator=g)
        _, logs = MSMTerm(feature=feature, per_pair_logs=True)(LossContext(x, real, fake))
        assert calls == [10, 10, 10]  # generated, pred_real, pred_fake: the logs reuse them
        for which, video in (("generated", x.detach()), ("pred_real", real), ("pred_fake", fake)):
            motion = (2 * video.mean(2, keepdim=True)).diff(dim=1)
            assert float(logs[f"msm_motion_{which}"]) == pytest.approx(motion.abs().mean().item(), rel=1e-6)
            assert float(logs[f"msm_motion_pair/{which}_03"]) == pytest.approx(motion[:, 3].abs().mean().item(), rel=1e-6)

    def test_bad_per_pair_flag(self):
        with pytest.raises(TypeError, match="`per_pair_logs` should be a bool, got str 'yes'"):
            MSMTerm(per_pair_logs="yes")


def _host_dmd_loss(x, real, fake, *, over, eps, mask):
    """The hosts' DMD loss written out (CausVid / Self-Forcing per sample, FastVideo over the batch,
    FastGen + 1e-6): 0.5 * mse(x, sg[x - nan_to_num((fake - real) / n)]) on the counted entries."""
    with torch.no_grad():
        gap = (x - real).abs()
        n = gap.mean(dim=(1, 2, 3, 4), keepdim=True) if over == "sample" else gap.mean()
        grad = torch.nan_to_num((fake - real) / (n + eps))
    xd, target = x.double(), (x.double() - grad.double()).detach()
    if mask is not None:
        xd, target = xd[mask], target[mask]
    return 0.5 * torch.nn.functional.mse_loss(xd, target)


class TestGradientRatio:
    """``msm_grad_ratio`` = ||lam dL_MSM/dx|| / ||dL_DMD/dx||: DMD's gradient by autograd through the
    hosts' loss written out above, MSM's from the NumPy reference (explicit difference matrices)."""

    SHAPE = (2, 7, 2, 3, 3)

    @pytest.mark.parametrize(
        "over, eps, masked, options",
        [
            ("sample", 0.0, False, {}),  # CausVid / Self-Forcing
            ("batch", 0.0, False, {}),  # FastVideo's one scalar
            ("sample", 1e-6, False, {}),  # FastGen
            ("sample", 0.0, True, {}),  # Self-Forcing's gradient_mask: the first 2 frames out
            ("sample", 0.0, False, {"order": 2, "smoothing": "binomial", "normalization": "dmd"}),
        ],
    )
    def test_against_autograd_and_the_reference(self, over, eps, masked, options):
        from tests.msm_case import random_inputs
        from tests.reference import msm_reference

        x, real, fake = random_inputs(3, self.SHAPE)
        mask = None
        counted = None
        if masked:
            mask = torch.ones(self.SHAPE, dtype=torch.bool)
            mask[:, :2] = False
            counted = torch.ones(self.SHAPE[0], self.SHAPE[1] - 1, 1, 1, 1)
            counted[:, :2] = 0  # a pair counts when both of its frames do: pairs 0-1 and 1-2 are out
        ctx = LossContext(x, real, fake, gradient_mask=mask, dmd_over=over, dmd_eps=eps)
        _, logs = MSMTerm(lam=0.7, **options)(ctx)
        (dmd_grad,) = torch.autograd.grad(_host_dmd_loss(x, real, fake, over=over, eps=eps, mask=mask), x)
        _, msm_grad = msm_reference(
            x.detach().numpy(), real.numpy(), fake.numpy(), normalization=options.get("normalization", "motion"),
            order=options.get("order", 1), counted=None if counted is None else counted.numpy(),
            smoothing=options.get("smoothing") == "binomial",
        )
        expected = 0.7 * torch.from_numpy(msm_grad).norm() / dmd_grad.norm()
        # float64 throughout, summed in different orders: agreement to ~1e-15 relative
        assert logs["msm_grad_ratio"].item() == pytest.approx(expected.item(), rel=1e-10)

    def test_with_pair_weights_the_ratio_is_that_of_the_weighted_gradient(self):
        from tests.msm_case import random_inputs

        x, real, fake = random_inputs(3, self.SHAPE)
        x = x.detach().requires_grad_(True)
        _, logs = MSMTerm(lam=0.7, pair_weights="hybrid")(LossContext(x, real, fake))
        # the weighted MSM gradient by autograd through msm_loss (checked against explicit matrices elsewhere)
        (msm_grad,) = torch.autograd.grad(msm_loss(x, real, fake, pair_weights="hybrid"), x)
        (dmd_grad,) = torch.autograd.grad(_host_dmd_loss(x, real, fake, over="sample", eps=0.0, mask=None), x)
        expected = 0.7 * msm_grad.norm() / dmd_grad.norm()
        assert logs["msm_grad_ratio"].item() == pytest.approx(expected.item(), rel=1e-10)
        unweighted = MSMTerm(lam=0.7)(LossContext(x, real, fake))[1]["msm_grad_ratio"].item()
        assert abs(unweighted - expected.item()) > 1e-3 * expected.item()  # the weights do change it

    def test_zero_weight_zero_gradients_and_a_zero_dmd_gradient(self):
        x = torch.randn(1, 4, 1, 2, 2, dtype=torch.float64, requires_grad=True)
        real, fake = torch.randn(1, 4, 1, 2, 2, dtype=torch.float64), torch.randn(1, 4, 1, 2, 2, dtype=torch.float64)
        assert MSMTerm(lam=0.0)(LossContext(x, real, fake))[1]["msm_grad_ratio"].item() == 0.0
        assert MSMTerm(lam=1.0)(LossContext(x, real, real))[1]["msm_grad_ratio"].item() == 0.0  # both 0
        # pred_fake - pred_real constant over frames: DMD pulls, MSM (frame differences) does not
        zero = torch.zeros_like(real)
        assert MSMTerm(lam=1.0)(LossContext(x, zero, zero + 0.5))[1]["msm_grad_ratio"].item() == 0.0
