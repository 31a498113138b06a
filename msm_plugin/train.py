"""``msm-train``: CausVid's own DMD training, plus the extra losses its config lists.

Drop-in for ``causvid/train_distillation.py``, with the same flags, under torchrun::

    torchrun --nproc_per_node 8 -m msm_plugin.train --config_path examples/configs/causvid_wan_stage1_msm.yaml

Order of events (the config is checked before anything is built or written):

1. load the YAML with OmegaConf and set ``no_save`` / ``no_visualize`` as upstream does;
2. validate ``extra_losses`` and the per-loss sections and build the losses
   (:func:`msm_plugin.config.build_extra_losses`): a typo fails here, on every rank;
3. build the *unmodified* upstream ``causvid.train_distillation.Trainer(config)``;
4. wrap its DMD object with the losses (:func:`msm_plugin.adapters.wrap_dmd`);
5. wrap ``trainer.train_one_step`` on the instance so that, after upstream's own
   ``wandb.log(..., step=self.step)``, the extra losses' scalar logs of that step are logged
   at the same step on the main process (wandb merges them into the same row);
6. ``trainer.train()``, then ``wandb.finish()`` as upstream.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Callable, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from msm_plugin.adapters import find_dmd, pop_extra_logs, wrap_dmd
from msm_plugin.adapters.hooks import patch_method
from msm_plugin.config import build_extra_losses

__all__ = ["build_parser", "load_config", "log_extra_losses", "main", "upstream_trainer_class"]

CAUSVID_INSTALL_HINT = (
    "msm-train runs CausVid's own trainer (causvid.train_distillation.Trainer), but the package "
    "`causvid` is not installed. Install it from a checkout: git clone "
    "https://github.com/tianweiy/CausVid && cd CausVid && pip install -e . "
    "(CausVid touches CUDA when imported, so this needs a GPU machine)"
)


def build_parser() -> argparse.ArgumentParser:
    """The flags of upstream ``train_distillation.py``.

    Example:
        >>> build_parser().parse_args(["--config_path", "c.yaml", "--no_save"]).no_save
        True
    """
    parser = argparse.ArgumentParser(
        prog="msm-train", description="CausVid DMD distillation with extra generator losses (MSM) from the config."
    )
    parser.add_argument("--config_path", type=str, required=True, help="upstream CausVid YAML, plus extra_losses")
    parser.add_argument("--local_rank", type=int, default=-1, help="accepted for launchers that pass it; unused")
    parser.add_argument("--no_save", action="store_true", help="do not write checkpoints")
    parser.add_argument("--no_visualize", action="store_true", help="skip decoding videos for wandb")
    return parser


def load_config(path: str, *, no_save: bool = False, no_visualize: bool = False) -> DictConfig:
    """Load the YAML as upstream does and set the two flags on it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--config_path: no such file {path!r}")
    config = OmegaConf.load(path)
    if not isinstance(config, DictConfig):
        raise TypeError(f"expected {path} to hold a mapping of config keys, got a {type(config).__name__}")
    config.no_save = no_save
    config.no_visualize = no_visualize
    return config


def upstream_trainer_class() -> type:
    """``causvid.train_distillation.Trainer``, imported only now (it needs CUDA at import)."""
    try:
        from causvid.train_distillation import Trainer
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "causvid":
            raise
        raise ModuleNotFoundError(CAUSVID_INSTALL_HINT, name="causvid") from exc
    return Trainer


def log_extra_losses(trainer: Any, log: Optional[Callable[..., Any]] = None) -> Any:
    """Wrap ``trainer.train_one_step`` (on the instance) to log the extra losses' keys.

    After each step, the scalars the extra losses produced at that step (if the generator was
    trained) are passed to ``log(logs, step=trainer.step)`` on the main process only; ``log``
    defaults to ``wandb.log``. Other ranks just drop them.

    Returns:
        ``trainer`` itself.
    """

    def make(original: Callable) -> Callable:
        def train_one_step(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            logs = pop_extra_logs(trainer)
            if logs and getattr(trainer, "is_main_process", True):
                sink = log
                if sink is None:
                    import wandb

                    sink = wandb.log
                sink(logs, step=trainer.step)
            return result

        return train_one_step

    patch_method(trainer, "train_one_step", make)
    return trainer


def main(argv: Optional[Sequence[str]] = None, *, trainer_cls: Optional[Callable[[Any], Any]] = None) -> None:
    """Entry point of ``msm-train`` and ``python -m msm_plugin.train``.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).
        trainer_cls: the Trainer class to build (default: upstream CausVid's); tests inject a
            stand-in with the same interface.
    """
    args = build_parser().parse_args(argv)
    config = load_config(args.config_path, no_save=args.no_save, no_visualize=args.no_visualize)
    losses = build_extra_losses(config)  # fails before any model is built or file written
    if trainer_cls is None:
        trainer_cls = upstream_trainer_class()
    trainer = trainer_cls(config)
    if losses:
        dmd, _ = find_dmd(trainer)
        wrap_dmd(dmd, losses)
        log_extra_losses(trainer)
    trainer.train()
    import wandb

    wandb.finish()


if __name__ == "__main__":
    main()
