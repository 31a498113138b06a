"""Extra generator losses; ``msm`` is the one this package is about. Each registers itself on import."""

from msm_plugin.losses.msm import MSMConfig, MSMLoss, MSMTerm, msm_loss, scheduled_lam
from msm_plugin.losses.temporal_variance import (
    TemporalVarianceConfig,
    TemporalVarianceLoss,
    TemporalVarianceTerm,
    temporal_variance_loss,
)

__all__ = [
    "MSMConfig",
    "MSMLoss",
    "MSMTerm",
    "TemporalVarianceConfig",
    "TemporalVarianceLoss",
    "TemporalVarianceTerm",
    "msm_loss",
    "scheduled_lam",
    "temporal_variance_loss",
]
