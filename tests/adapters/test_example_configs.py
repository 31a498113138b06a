"""The shipped example configs: upstream's keys plus valid MSM keys; the causal-teacher caveat."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from msm_plugin import active_losses
from msm_plugin.adapters import check_extra_losses
from msm_plugin.config import build_extra_losses

CONFIGS = Path(__file__).resolve().parents[2] / "examples" / "configs"
# Keys CausVid's Trainer/DMD read without a default (its causvid/train_distillation.py and causvid/dmd.py at ca21150).
REQUIRED = {
    "model_name", "generator_task", "generator_grad", "real_score_grad", "fake_score_grad", "denoising_step_list",
    "num_train_timestep", "real_guidance_scale", "denoising_loss_type", "mixed_precision", "seed", "lr", "beta1",
    "beta2", "batch_size", "log_iters", "dfake_gen_update_ratio", "image_or_video_shape", "distillation_loss",
    "gradient_checkpointing", "warp_denoising_step", "sharding_strategy", "data_path", "negative_prompt",
    "output_path", "wandb_host", "wandb_key", "wandb_entity", "wandb_project", "wandb_name",
    "generator_fsdp_wrap_strategy", "real_score_fsdp_wrap_strategy", "fake_score_fsdp_wrap_strategy",
    "text_encoder_fsdp_wrap_strategy",
}


@pytest.mark.parametrize("name", ["causvid_wan_stage1_msm.yaml", "causvid_wan_stage3_msm.yaml"])
def test_example_config_has_upstream_keys_and_valid_msm(name):
    config = OmegaConf.load(CONFIGS / name)
    assert REQUIRED <= set(config), REQUIRED - set(config)
    (msm,) = build_extra_losses(config)
    assert msm.name == "msm" and msm.weight == 0.5
    assert config.real_task_type == config.fake_task_type == "bidirectional_video"


def test_stage3_specifics():
    config = OmegaConf.load(CONFIGS / "causvid_wan_stage3_msm.yaml")
    assert (config.generator_task, config.generator_name, config.num_frame_per_block) == ("causal_video", "causal_wan", 3)
    assert config.backward_simulation is False and list(config.denoising_step_list) == [1000, 757, 522, 0]


def test_stage3_with_a_causal_teacher_meets_the_strict_error_or_needs_pairs():
    config = OmegaConf.load(CONFIGS / "causvid_wan_stage3_msm.yaml")
    config.real_task_type = "causal_video"
    with pytest.raises(ValueError, match="real_task_type is causal_video"):
        check_extra_losses(config, host="causvid")
    config.msm.timestep_policy = "pairs"
    assert check_extra_losses(config, host="causvid")[0].config.timestep_policy == "pairs"


def test_config_paths_named_in_the_launcher_docs_exist():
    import re

    from msm_plugin import train

    named = re.findall(r"msm-plugin config (\w+)", train.__doc__)
    assert named and all((CONFIGS / f"{name}.yaml").is_file() for name in named), named


def test_self_forcing_example_is_its_dmd_trainer_with_valid_msm():
    config = OmegaConf.load(CONFIGS / "self_forcing_dmd_msm.yaml")
    assert (config.trainer, config.distribution_loss) == ("score_distillation", "dmd")
    (msm,) = check_extra_losses(config, host="self_forcing")
    assert msm.name == "msm" and msm.weight == 0.5


def test_fastvideo_example_is_upstreams_dmd2_yaml_with_the_msm_method(frameworks):
    from types import SimpleNamespace

    import msm_plugin.hosts.fastvideo as fastvideo
    from tests.adapters import framework_standins as sf

    config = OmegaConf.to_container(OmegaConf.load(CONFIGS / "fastvideo_wan_dmd2_t2v_msm.yaml"))
    method = config["method"]
    # the keys FastVideo's DMD2Method requires, as in upstream's dmd2_t2v.yaml
    assert {"rollout_mode", "dmd_denoising_steps", "fake_score_learning_rate", "fake_score_betas", "fake_score_lr_scheduler"} <= set(method)
    assert set(config) == {"models", "method", "training", "callbacks", "pipeline"}
    module, name = method["_target_"].rsplit(".", 1)
    assert (module, name) == (fastvideo.__name__, "MSMDMD2Method")
    built = getattr(fastvideo, name)(cfg=SimpleNamespace(method=method), role_models=sf.fastvideo_roles())
    (msm,) = active_losses(built)
    assert (msm.name, msm.weight, msm.config.normalization) == ("msm", 0.5, "motion")


def test_fastgen_example_is_upstreams_experiment_with_the_msm_model_class(frameworks, monkeypatch):
    import importlib.util
    import sys
    import types
    from types import SimpleNamespace

    import msm_plugin.hosts.fastgen as fastgen
    from tests.adapters import framework_standins as sf

    experiment = "fastgen.configs.experiments.WanT2V.config_dmd2"
    upstream = types.ModuleType(experiment)
    upstream.create_config = lambda: SimpleNamespace(model_class=None, log_config=SimpleNamespace(group="wan_dmd2"))
    monkeypatch.setitem(sys.modules, experiment, upstream)
    for parent in ("fastgen.configs", "fastgen.configs.experiments", "fastgen.configs.experiments.WanT2V"):
        monkeypatch.setitem(sys.modules, parent, types.ModuleType(parent))
    # LazyCall stand-in: L(target)(**kwargs) records the call, as FastGen's instantiate reads it
    lazy = types.ModuleType("fastgen.utils")
    lazy.LazyCall = lambda target: lambda **kwargs: {"_target_": target, **kwargs}
    monkeypatch.setitem(sys.modules, "fastgen.utils", lazy)
    spec = importlib.util.spec_from_file_location("fastgen_example", CONFIGS / "fastgen_wan_t2v_dmd2_msm.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    config = example.create_config()
    call = dict(config.model_class)
    target = call.pop("_target_")
    assert target is fastgen.MSMDMD2Model and issubclass(target, sf.DMD2Model)
    model = target(**{**call, "config": sf.fastgen_config()})
    (msm,) = active_losses(model)
    assert (msm.name, msm.weight) == ("msm", 0.5) and config.log_config.group == "wan_dmd2_msm"
