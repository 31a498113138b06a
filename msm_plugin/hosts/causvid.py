"""CausVid (tianweiy/CausVid): ``causvid.train_distillation.Trainer`` and ``causvid.dmd.DMD``.

- DMD object: ``trainer.distillation_model`` (config: ``trainer.config``), or a ``DMD`` itself
  (config: ``.args``). Its ``_compute_kl_grad`` logs the predictions
  (``dmdtrain_pred_real_image`` after CFG, ``dmdtrain_pred_fake_image``, ``timestep`` [B, F]),
  read by the shared call-chain wrapper (:mod:`msm_plugin.hosts.dmd_chain`).
- Unequal per-frame timesteps: a causal teacher, ``real_task_type: causal_video`` (which falls
  back to ``generator_task``, as CausVid does), draws one timestep per block.
- Logs: ``train_one_step`` calls ``wandb.log(..., step=self.step)`` on the main process; the
  route wraps it and logs the extra scalars at the same step afterwards (wandb merges the row).
- ``msm-train --host causvid``: upstream's flags, ``OmegaConf.load`` of the YAML.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Callable, Mapping, Optional, Tuple

from msm_plugin.hosts.dmd_chain import DMDChainHost, wrap_step_logging
from msm_plugin.options import UnequalTimesteps

__all__ = ["CausVidHost", "load_yaml"]

INSTALL_HINT = (
    "msm-train runs CausVid's own trainer (causvid.train_distillation.Trainer), but the package "
    "`causvid` is not installed. Install it from a checkout: git clone "
    "https://github.com/tianweiy/CausVid && cd CausVid && pip install -e . "
    "(CausVid touches CUDA when imported, so this needs a GPU machine)"
)


def _yaml_error(path: str, error: Exception) -> str:
    """One line for a YAML syntax error: the file, the 1-based line and column, what the parser expected."""
    mark = getattr(error, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(error, "problem", None) or " ".join(str(error).split())
    context, started = getattr(error, "context", None), getattr(error, "context_mark", None)
    if context and started is not None:
        problem += f" ({context.replace('while parsing', 'in')} that starts at line {started.line + 1}, column {started.column + 1})"
    return f"{path} is not valid YAML: {where}{problem}"


def load_yaml(path: str) -> Any:
    """``OmegaConf.load(path)``, refusing a missing file, a YAML syntax error (ValueError naming the
    file and the line) or a YAML that is not a mapping."""
    import yaml
    from omegaconf import DictConfig, OmegaConf

    if not os.path.isfile(path):
        raise FileNotFoundError(f"--config_path: no such file {path!r}")
    try:
        config = OmegaConf.load(path)
    except yaml.YAMLError as error:
        raise ValueError(_yaml_error(path, error)) from None
    if not isinstance(config, DictConfig):
        raise TypeError(f"expected {path} to hold a mapping of config keys, got a {type(config).__name__}")
    return config


class CausVidHost(DMDChainHost):
    name = "causvid"
    framework_module = "causvid.dmd"
    description = "a CausVid Trainer (with .distillation_model) or a DMD object (with compute_distribution_matching_loss)"
    logging_methods = ("train_one_step",)
    # The top-level keys of CausVid's configs (configs/*.yaml at ca21150) and the flags its script sets.
    config_keys = frozenset({
        "backward_simulation", "batch_size", "beta1", "beta2", "data_path", "denoising_loss_type",
        "denoising_step_list", "dfake_gen_update_ratio", "distillation_loss", "fake_score_fsdp_wrap_strategy",
        "fake_score_grad", "fake_task_type", "generator_ckpt", "generator_fsdp_wrap_strategy", "generator_grad",
        "generator_name", "generator_task", "gradient_checkpointing", "image_or_video_shape", "log_iters", "lr",
        "mixed_precision", "model_name", "negative_prompt", "no_save", "no_visualize", "num_frame_per_block",
        "num_train_timestep", "output_path", "real_guidance_scale", "real_score_fsdp_wrap_strategy", "real_score_grad",
        "real_task_type", "seed", "sharding_strategy", "text_encoder_fsdp_wrap_strategy", "timestep_shift",
        "wandb_entity", "wandb_host", "wandb_key", "wandb_name", "wandb_project", "warp_denoising_step",
    })

    def trainer_dmd(self, trainer: Any) -> Optional[Tuple[Any, Any]]:
        if hasattr(trainer, "distillation_model"):
            return trainer.distillation_model, getattr(trainer, "config", None)
        return None

    def unequal_timesteps(self, config: Mapping[str, Any]) -> Optional[UnequalTimesteps]:
        # CausVid's own default: real_task_type falls back to generator_task.
        if config.get("real_task_type", config.get("generator_task")) == "causal_video":
            return UnequalTimesteps(
                "real_task_type is causal_video (one teacher timestep per block)",
                "Use a bidirectional teacher (real_task_type: bidirectional_video, as CausVid stage 3 does)",
            )
        return None

    def route_logs(self, trainer: Any, log: Optional[Callable[..., Any]] = None) -> None:
        # upstream logs at step=self.step inside train_one_step, before train() increments it
        wrap_step_logging(trainer, self.target(trainer)[0], "train_one_step", lambda t: t.step, log)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--local_rank", type=int, default=-1, help="accepted for launchers that pass it; unused")
        parser.add_argument("--no_save", action="store_true", help="do not write checkpoints")
        parser.add_argument("--no_visualize", action="store_true", help="skip decoding videos for wandb")

    def load_config(self, args: argparse.Namespace) -> Any:
        config = load_yaml(args.config_path)
        config.no_save = args.no_save
        config.no_visualize = args.no_visualize
        return config

    def trainer_class(self) -> Callable[[Any], Any]:
        """``causvid.train_distillation.Trainer``, imported only now (it needs CUDA at import)."""
        try:
            from causvid.train_distillation import Trainer
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] != "causvid":
                raise
            raise ModuleNotFoundError(INSTALL_HINT, name="causvid") from exc
        return Trainer
