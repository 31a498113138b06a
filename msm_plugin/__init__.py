"""msm-plugin: Motion Score Matching for DMD video distillation, without forking the trainer."""

from importlib import metadata as _metadata

from msm_plugin.adapters import active_losses, unwrap_trainer, wrap_trainer
from msm_plugin.context import LossContext, compose
from msm_plugin.losses import (  # registers the built-in losses
    MSMConfig,
    MSMLoss,
    MSMTerm,
    TemporalVarianceConfig,
    TemporalVarianceLoss,
    TemporalVarianceTerm,
    msm_loss,
    temporal_variance_loss,
)
from msm_plugin.motion import motion_score
from msm_plugin.registry import ENTRY_POINT_GROUP, available_losses, get_loss, register_loss

try:
    __version__ = _metadata.version("msm-plugin")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = sorted(
    [
        "ENTRY_POINT_GROUP",
        "LossContext",
        "MSMConfig",
        "MSMLoss",
        "MSMTerm",
        "TemporalVarianceConfig",
        "TemporalVarianceLoss",
        "TemporalVarianceTerm",
        "active_losses",
        "available_losses",
        "compose",
        "get_loss",
        "motion_score",
        "msm_loss",
        "register_loss",
        "temporal_variance_loss",
        "unwrap_trainer",
        "wrap_trainer",
    ]
)
