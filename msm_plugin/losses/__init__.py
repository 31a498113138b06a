"""Extra generator losses; ``msm`` is the one this package is about."""

from msm_plugin.losses.msm import MSMLoss, MSMTerm, msm_loss

__all__ = ["MSMLoss", "MSMTerm", "msm_loss"]
