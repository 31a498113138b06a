"""The benchmark (``msm-demo --benchmark``): every motion loss against plain DMD in the map's worst regime.

Each arm is the extra-loss part of a trainer config, written as a user writes it, so adding a
registered loss is one line here. Every arm runs the same seeds, prompts, noise and steps;
:func:`~msm_plugin.toy.checks.compare_arms` pairs each with DMD seed by seed.
"""

from __future__ import annotations

from dataclasses import replace

from msm_plugin.toy.experiment import ARM_DMD, Arm, ExperimentConfig, msm_arm
from msm_plugin.toy.regimes import demo_base

__all__ = ["BENCHMARK_SEEDS", "benchmark_arms", "benchmark_config"]

BENCHMARK_SEEDS = (0, 1, 2, 3, 4)


def benchmark_arms() -> tuple:
    """DMD; DMD+MSM with the paper's MSM (MSM's defaults but the weight) at lam 0.25, 0.5 and 1;
    MSM at lam 1 with DiagDistill's per-pair weights; Adaptive Video Distillation's temporal
    variance regulariser (weight 0.05, threshold 0.8).

    >>> [a.name for a in benchmark_arms()]
    ['dmd', 'dmd+msm lam=0.25', 'dmd+msm lam=0.5', 'dmd+msm lam=1', 'dmd+msm pair weights', 'dmd+temporal variance']
    """
    return (
        Arm(ARM_DMD),
        msm_arm("dmd+msm lam=0.25", lam=0.25),
        msm_arm("dmd+msm lam=0.5", lam=0.5),
        msm_arm("dmd+msm lam=1", lam=1.0),
        msm_arm("dmd+msm pair weights", lam=1.0, pair_weights="hybrid"),
        Arm("dmd+temporal variance", {"extra_losses": ["temporal_variance"],
                                      "temporal_variance": {"weight": 0.05, "threshold": 0.8}}),
    )


def benchmark_config(**changes) -> ExperimentConfig:
    """The benchmark: the demo's regime and training, :func:`benchmark_arms`, :data:`BENCHMARK_SEEDS`."""
    return replace(demo_base(), arms=benchmark_arms(), seeds=BENCHMARK_SEEDS, **changes)
