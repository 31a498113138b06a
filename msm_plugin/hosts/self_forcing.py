"""Self-Forcing (guandeh17/Self-Forcing) and forks sharing its ``model/dmd.py`` (thu-ml/Causal-Forcing, ...).

- DMD object: ``trainer.model`` of ``trainer/distillation.py``'s ``Trainer`` (config:
  ``trainer.config``, an ``OmegaConf.merge`` of ``configs/default_config.yaml`` and the user
  YAML), or a ``DMD`` itself (config: ``.args``). Its ``_compute_kl_grad`` does not expose the
  predictions: the shared call-chain wrapper captures the score wrappers' x0 outputs during that
  call and recombines them with the host's guidance scales (:mod:`msm_plugin.hosts.dmd_chain`).
- Unequal per-frame timesteps: none; ``compute_distribution_matching_loss`` draws the score
  timestep with ``uniform_timestep=True`` (one per sample, repeated over frames).
- Logs: ``train()`` logs a fixed set of keys with ``wandb.log(..., step=self.step)`` after it
  increments ``self.step``; the route wraps ``fwdbwd_one_step`` and, after a generator call,
  logs the extra scalars at ``self.step + 1``, the row upstream writes that step (skipped with
  ``--disable-wandb`` and on other ranks).
- ``msm-train --host self-forcing``, run from the Self-Forcing checkout as its ``train.py`` is:
  the same flags and config merge; the DMD trainer (``trainer: score_distillation``,
  ``distribution_loss: dmd``).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, Mapping, Optional, Tuple

from msm_plugin.hosts.causvid import load_yaml
from msm_plugin.hosts.dmd_chain import DMDChainHost, wrap_step_logging
from msm_plugin.options import UnequalTimesteps

__all__ = ["DEFAULT_CONFIG", "SelfForcingHost"]

#: Upstream's defaults, merged under the user's YAML, relative to the checkout (as its train.py).
DEFAULT_CONFIG = os.path.join("configs", "default_config.yaml")


class SelfForcingHost(DMDChainHost):
    name = "self_forcing"
    framework_module = "model.dmd"  # not a distribution: importable from its checkout (the cwd)
    description = "a Self-Forcing Trainer (with .model and .config)"
    logging_methods = ("fwdbwd_one_step",)
    # The top-level keys of Self-Forcing's configs (configs/*.yaml at 33593df), the flags its
    # train.py sets and the optional keys its code reads with a default.
    config_keys = frozenset({
        "batch_size", "beta1", "beta1_critic", "beta2", "beta2_critic", "causal", "ckpt_step", "config_name",
        "context_noise", "data_path", "denoising_loss_type", "denoising_step_list", "dfake_gen_update_ratio",
        "disable_wandb", "discriminator_lr_multiplier", "distribution_loss", "ema_start_step", "ema_weight",
        "eval_first_n", "fake_guidance_scale", "fake_name", "fake_score_fsdp_wrap_strategy", "gc_interval",
        "generator_ckpt", "generator_fsdp_wrap_strategy", "gradient_checkpointing", "guidance_scale", "height",
        "i2v", "image_or_video_shape", "independent_first_frame", "last_step_only", "load_raw_video", "log_iters",
        "logdir", "lr", "lr_critic", "min_score_timestep", "mixed_precision", "model_kwargs", "negative_prompt",
        "no_save", "no_visualize", "num_frame_per_block", "num_frames", "num_samples", "num_train_timestep",
        "num_training_frames", "prompt_name", "prompt_path", "real_guidance_scale", "real_name",
        "real_score_fsdp_wrap_strategy", "same_step_across_blocks", "seed", "sharding_strategy", "sid_alpha",
        "text_encoder_cpu_offload", "text_encoder_fsdp_wrap_strategy", "timestep_shift", "total_batch_size",
        "trainer", "ts_schedule", "ts_schedule_max", "wandb_entity", "wandb_host", "wandb_key", "wandb_project",
        "wandb_save_dir", "warp_denoising_step", "weight_decay", "width",
    })

    def trainer_dmd(self, trainer: Any) -> Optional[Tuple[Any, Any]]:
        model = getattr(trainer, "model", None)
        if hasattr(trainer, "config") and hasattr(model, "compute_distribution_matching_loss"):
            return model, trainer.config
        return None

    def unequal_timesteps(self, config: Mapping[str, Any]) -> Optional[UnequalTimesteps]:
        return None  # the score timestep is drawn with uniform_timestep=True whatever the config

    def route_logs(self, trainer: Any, log: Optional[Callable[..., Any]] = None) -> None:
        # fwdbwd_one_step runs before train() increments self.step; upstream logs that row at step + 1
        wrap_step_logging(trainer, self.target(trainer)[0], "fwdbwd_one_step", lambda t: t.step + 1, log)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--no_save", action="store_true", help="do not write checkpoints")
        parser.add_argument("--no_visualize", action="store_true", help="skip decoding videos")
        parser.add_argument("--logdir", type=str, default="", help="where to save checkpoints and logs")
        parser.add_argument("--wandb-save-dir", type=str, default="", help="where wandb writes its files")
        parser.add_argument("--disable-wandb", action="store_true", help="log nothing to wandb")

    def load_config(self, args: argparse.Namespace) -> Any:
        """``OmegaConf.merge(configs/default_config.yaml, user YAML)`` plus the flags, as upstream's train.py."""
        from omegaconf import OmegaConf

        user = load_yaml(args.config_path)
        if not os.path.isfile(DEFAULT_CONFIG):
            raise FileNotFoundError(
                f"no {DEFAULT_CONFIG} in {os.getcwd()}: run msm-train --host self_forcing from the "
                "Self-Forcing checkout (or a fork's), as its train.py"
            )
        config = OmegaConf.merge(load_yaml(DEFAULT_CONFIG), user)
        config.no_save = args.no_save
        config.no_visualize = args.no_visualize
        config.config_name = os.path.basename(args.config_path).split(".")[0]
        config.logdir = args.logdir
        config.wandb_save_dir = args.wandb_save_dir
        config.disable_wandb = args.disable_wandb
        trainer, loss = config.get("trainer"), config.get("distribution_loss")
        if (trainer, loss) != ("score_distillation", "dmd"):
            raise ValueError(
                "msm-train --host self_forcing trains Self-Forcing's DMD: the config needs "
                f"`trainer: score_distillation` and `distribution_loss: dmd`, got trainer {trainer!r} "
                f"and distribution_loss {loss!r}"
            )
        return config

    def trainer_class(self) -> Callable[[Any], Any]:
        """``trainer.distillation.Trainer`` of the checkout in the working directory."""
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())  # `python train.py` puts the checkout on the path
        try:
            from trainer.distillation import Trainer
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] != "trainer":
                raise
            raise ModuleNotFoundError(
                f"msm-train --host self_forcing runs Self-Forcing's own trainer (trainer/distillation.py), "
                f"but there is no package `trainer` in {os.getcwd()}: run it from a Self-Forcing "
                "checkout (git clone https://github.com/guandeh17/Self-Forcing), or a fork sharing model/dmd.py",
                name="trainer",
            ) from exc
        return Trainer
