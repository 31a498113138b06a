"""Motion metrics for generated videos (``msm-eval``): weight-free, or on a user's local flow network.

Videos are float tensors or arrays ``[N, F, C, H, W]`` in [0, 1]. Start with
:func:`motion_metrics` (a flat dict of floats, keys and directions in :data:`METRICS`),
or :func:`evaluate` for files and folders.

>>> import torch
>>> sorted(motion_metrics(torch.zeros(2, 3, 1, 8, 8)))[:3]
['accel_mean', 'accel_p90', 'appearance_energy']
"""

from .energy import DEFAULT_STATIC_THRESHOLD, appearance_energy, energy_ratio, motion_energy, static_fraction
from .features import appearance_features, extractor_features, motion_features
from .flow import NetworkFlow, farneback_flow, flow_statistics, load_flow_network, optical_flow, warp
from .frechet import frechet_distance, gaussian_frechet_distance
from .fvmd import fvmd_features, fvmd_proxy
from .io import VideoSet, load_videos, read_frame_folder, read_tensor_file, read_video
from .kinematics import acceleration_samples, distribution_summary, speed_samples, wasserstein_1d
from .report import METRICS, evaluate, markdown_report, markdown_table, motion_metrics, write_results
from .smoothness import smoothness_error
from .vbench import dynamic_degree_proxy, is_static_proxy, motion_smoothness_proxy, temporal_flickering_proxy

__all__ = [
    "DEFAULT_STATIC_THRESHOLD",
    "METRICS",
    "NetworkFlow",
    "VideoSet",
    "acceleration_samples",
    "appearance_energy",
    "appearance_features",
    "distribution_summary",
    "dynamic_degree_proxy",
    "energy_ratio",
    "evaluate",
    "extractor_features",
    "farneback_flow",
    "flow_statistics",
    "frechet_distance",
    "fvmd_features",
    "fvmd_proxy",
    "gaussian_frechet_distance",
    "is_static_proxy",
    "load_flow_network",
    "load_videos",
    "markdown_report",
    "markdown_table",
    "motion_energy",
    "motion_features",
    "motion_metrics",
    "motion_smoothness_proxy",
    "optical_flow",
    "read_frame_folder",
    "read_tensor_file",
    "read_video",
    "smoothness_error",
    "speed_samples",
    "static_fraction",
    "temporal_flickering_proxy",
    "warp",
    "wasserstein_1d",
    "write_results",
]
