"""``msm-train``: a host's own DMD training script, plus the extra losses its config lists.

Drop-in for CausVid's ``causvid/train_distillation.py`` (default) or, with ``--host self_forcing``,
Self-Forcing's ``train.py`` (run from its checkout), with the same flags, under torchrun::

    msm-plugin config causvid_wan_stage1_msm > stage1_msm.yaml
    torchrun --nproc_per_node 8 -m msm_plugin.train --config_path stage1_msm.yaml
    msm-plugin config self_forcing_dmd_msm > self_forcing_msm.yaml
    torchrun --nproc_per_node 8 -m msm_plugin.train --host self_forcing --config_path self_forcing_msm.yaml

Order of events (the config is checked before anything is built or written):

1. load the config as the host's script does (:meth:`~msm_plugin.hosts.Host.load_config`);
2. validate ``extra_losses`` and the per-loss sections and build the losses
   (:meth:`~msm_plugin.hosts.Host.build_losses`): a typo fails here, on every rank;
3. build the host's *unmodified* trainer (:meth:`~msm_plugin.hosts.Host.trainer_class`);
4. install the losses on its DMD object;
5. route the extra losses' scalar logs of each generator step to the host's wandb run, at the
   step upstream logs that row (:meth:`~msm_plugin.hosts.Host.route_logs`);
6. ``trainer.train()``, then ``wandb.finish()`` as upstream.

A user error in steps 1-3 (no such config file, a config error, the host not installed) prints
one line, ``msm-train: error: ...``, and exits with status 2.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable, List, Optional, Sequence

from omegaconf import DictConfig

from msm_plugin.hosts import Host, available_hosts, detect_host, get_host
from msm_plugin.hosts.causvid import load_yaml

__all__ = ["build_parser", "load_config", "log_extra_losses", "main", "run", "runnable_hosts", "upstream_trainer_class"]

DEFAULT_HOST = "causvid"


def runnable_hosts() -> List[str]:
    """The registered hosts whose own trainer msm-train can build and run.

    A host qualifies when it implements :meth:`~msm_plugin.hosts.Host.trainer_class`; a host whose
    framework picks msm-plugin's class from its config (``route``: FastVideo, FastGen) trains
    under that framework's own launcher instead.

    >>> runnable_hosts()
    ['causvid', 'self_forcing']
    """
    return [
        name
        for name in available_hosts()
        if not getattr(get_host(name), "route", "") and type(get_host(name)).trainer_class is not Host.trainer_class
    ]


def build_parser(host: str = DEFAULT_HOST) -> argparse.ArgumentParser:
    """``--host``, ``--config_path`` and the flags of that host's own training script.

    Example:
        >>> build_parser().parse_args(["--config_path", "c.yaml", "--no_save"]).no_save
        True
    """
    others = [name for name in available_hosts() if name not in runnable_hosts()]
    parser = argparse.ArgumentParser(
        prog="msm-train",
        description="A host's own DMD distillation with extra generator losses (MSM) from its config.",
        epilog=(
            f"{', '.join(others)}: not run by msm-train; their framework's own launcher builds msm-plugin's "
            "class named in the config (examples: `msm-plugin config`)."
        )
        if others
        else None,
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"whose trainer to run: {', '.join(runnable_hosts())} (default: %(default)s)")
    parser.add_argument("--config_path", type=str, required=True, help="the host's YAML, plus extra_losses")
    get_host(host).add_arguments(parser)
    return parser


def load_config(path: str, *, no_save: bool = False, no_visualize: bool = False) -> DictConfig:
    """Load a CausVid YAML as upstream does and set the two flags on it."""
    config = load_yaml(path)
    config.no_save = no_save
    config.no_visualize = no_visualize
    return config


def upstream_trainer_class() -> type:
    """``causvid.train_distillation.Trainer``, imported only now (it needs CUDA at import)."""
    return get_host("causvid").trainer_class()


def log_extra_losses(trainer: Any, log: Optional[Callable[..., Any]] = None, *, host: Any = None) -> Any:
    """Route the extra losses' per-step scalars to ``log(logs, step=...)`` (default ``wandb.log``)
    on the main process, as the trainer's host does it (:meth:`~msm_plugin.hosts.Host.route_logs`).

    Returns:
        ``trainer`` itself.
    """
    (detect_host(trainer) if host is None else get_host(host)).route_logs(trainer, log)
    return trainer


def _host_name(argv: Optional[Sequence[str]]) -> str:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--host", default=DEFAULT_HOST)
    return pre.parse_known_args(argv)[0].host


def _prepare(argv: Optional[Sequence[str]], trainer_cls: Optional[Callable[[Any], Any]]):
    """Steps 1-3 up to (not including) building the trainer: ``(host, config, losses, trainer_cls)``."""
    host: Host = get_host(_host_name(argv))
    args = build_parser(host.name).parse_args(argv)
    config = host.load_config(args)
    losses = host.build_losses(config)  # fails before any model is built or file written
    return host, config, losses, (trainer_cls if trainer_cls is not None else host.trainer_class())


def _train(host: Host, config: Any, losses: list, trainer_cls: Callable[[Any], Any]) -> None:
    trainer = trainer_cls(config)
    if losses:
        host.attach(trainer, losses)
        host.route_logs(trainer)
    trainer.train()
    import wandb

    wandb.finish()


def run(argv: Optional[Sequence[str]] = None, *, trainer_cls: Optional[Callable[[Any], Any]] = None) -> None:
    """What ``msm-train`` does, raising its errors (for callers that handle them).

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).
        trainer_cls: the Trainer class to build (default: the host's own); tests inject a
            stand-in with the same interface.
    """
    _train(*_prepare(argv, trainer_cls))


def main(argv: Optional[Sequence[str]] = None, *, trainer_cls: Optional[Callable[[Any], Any]] = None) -> None:
    """Entry point of ``msm-train`` and ``python -m msm_plugin.train``: :func:`run`, with a user
    error before training (missing file, config error, host not installed, unknown host, a host
    without a msm-train route) printed as one line and exit status 2."""
    try:
        prepared = _prepare(argv, trainer_cls)
    except (FileNotFoundError, ModuleNotFoundError, NotImplementedError, TypeError, ValueError) as exc:
        argparse.ArgumentParser(prog="msm-train").exit(2, f"msm-train: error: {exc}\n")
    _train(*prepared)


if __name__ == "__main__":
    main()
