"""Extra generator losses; ``msm`` is the one this package is about. Each registers itself on import."""

from msm_plugin.losses.msm import MSMConfig, MSMLoss, MSMTerm, msm_loss, scheduled_lam

__all__ = ["MSMConfig", "MSMLoss", "MSMTerm", "msm_loss", "scheduled_lam"]
