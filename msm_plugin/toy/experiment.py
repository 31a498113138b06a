"""The toy protocol: DMD and DMD+MSM from one teacher, same seeds, prompts and iterations.

For every seed, each arm starts from the same teacher copy, draws the same prompts (a
dedicated RNG stream) and the same noise (``torch.manual_seed(seed)``; MSM draws no random
numbers), and trains for the same number of iterations. The arms differ only in the loss:
``dmd`` is the host unchanged; ``dmd+msm`` and every sweep value ``lam`` are the same trainer
after ``msm_plugin.wrap_trainer(trainer, lam=lam, ...)``, the path a real host takes.

Every student is then sampled on one fixed evaluation set (labels cycling through all
conditions, fixed noise) and measured by :func:`msm_plugin.metrics.motion_metrics` against
the teacher's many-step samples from the same noise and against fresh data videos.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from omegaconf import OmegaConf

from msm_plugin.toy.data import (
    ToyDataConfig,
    appearance_to_motion_ratio,
    condition_names,
    make_videos,
    to_unit_range,
)
from msm_plugin.toy.teacher import TeacherConfig, load_or_train_teacher, sample_with_cfg
from msm_plugin.toy.trainer import ToyTrainer, make_trainer_config

__all__ = [
    "ARM_DMD",
    "ARM_MSM",
    "ExperimentConfig",
    "arm_name",
    "motion_metrics_pair",
    "per_frame_motion",
    "quick_config",
    "run_experiment",
    "summarise",
]

ARM_DMD = "dmd"
ARM_MSM = "dmd+msm"
# Fixed, independent of the training seeds, so that every arm and seed is judged on one set.
EVAL_NOISE_SEED = 1234
EVAL_DATA_SEED = 4321
MSM_OPTION_KEYS = ("normalization", "order", "timestep_policy", "feature")


def arm_name(lam: float, main_lam: float) -> str:
    """``dmd`` for lam 0, ``dmd+msm`` for the main lam, ``dmd+msm(lam=...)`` for sweep values.

    >>> arm_name(0.0, 1.0), arm_name(1.0, 1.0), arm_name(4.0, 1.0)
    ('dmd', 'dmd+msm', 'dmd+msm(lam=4)')
    """
    if lam == 0:
        return ARM_DMD
    return ARM_MSM if lam == main_lam else f"{ARM_MSM}(lam={lam:g})"


@dataclass
class ExperimentConfig:
    """Everything one ``msm-demo`` run does.

    Args:
        data, teacher: the synthetic data and the teacher (its cache key).
        seeds: training seeds; each arm runs once per seed.
        iters: training iterations (critic steps) per run; the generator steps every
            ``dfake_gen_update_ratio`` of them.
        lam: MSM weight of the ``dmd+msm`` arm (> 0).
        sweep: extra lam values, each run over all seeds (the trade-off plot).
        msm_options: passed to ``wrap_trainer`` (``normalization``, ``order``, ...).
        trainer: overrides of :data:`~msm_plugin.toy.trainer.DEFAULT_TRAINER_CONFIG`.
        num_eval: evaluation videos per arm (labels cycle through the conditions).
        video_seeds: how many seeds get a side-by-side video.

    >>> ExperimentConfig(iters=10).lams()
    [0.0, 1.0]
    >>> ExperimentConfig(lam=1.0, sweep=(0.5, 1.0, 4.0)).lams()
    [0.0, 0.5, 1.0, 4.0]
    """

    data: ToyDataConfig = field(default_factory=ToyDataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    seeds: tuple = (0, 1, 2)
    iters: int = 300
    lam: float = 1.0
    sweep: tuple = ()
    msm_options: dict = field(default_factory=dict)
    trainer: dict = field(default_factory=lambda: {"batch_size": 8})
    num_eval: int = 128
    video_seeds: int = 1

    def __post_init__(self):
        if not self.seeds or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in self.seeds):
            raise ValueError(f"`seeds` should be a non-empty list of non-negative ints, got {list(self.seeds)}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"`seeds` should not repeat, got {list(self.seeds)}")
        if not isinstance(self.iters, int) or self.iters < 1:
            raise ValueError(f"`iters` should be a positive int, got {self.iters!r}")
        if not self.lam > 0 or any(not float(v) >= 0 for v in self.sweep):
            raise ValueError(f"expected lam > 0 and sweep values >= 0, got lam={self.lam}, sweep={list(self.sweep)}")
        if not isinstance(self.num_eval, int) or self.num_eval < 2:
            raise ValueError(f"`num_eval` should be an int >= 2 (Fréchet distances need two videos), got {self.num_eval!r}")
        unknown = sorted(set(self.msm_options) - set(MSM_OPTION_KEYS))
        if unknown:
            raise ValueError(f"unknown MSM option(s) {unknown}; known: {list(MSM_OPTION_KEYS)}")
        make_trainer_config(**self.trainer)  # fail here, before any training, on an unknown key
        self.seeds = tuple(self.seeds)
        self.sweep = tuple(float(v) for v in self.sweep)
        self.lam = float(self.lam)

    def lams(self) -> list:
        """All lam values run, sorted; 0 is plain DMD."""
        return sorted({0.0, self.lam, *self.sweep})

    def to_dict(self) -> dict:
        return {
            "data": self.data.to_dict(),
            "teacher": self.teacher.to_dict(),
            "seeds": list(self.seeds),
            "iters": self.iters,
            "lam": self.lam,
            "sweep": list(self.sweep),
            "msm_options": dict(self.msm_options),
            "trainer": OmegaConf.to_container(make_trainer_config(**self.trainer)),
            "num_eval": self.num_eval,
        }


def per_frame_motion(videos: torch.Tensor) -> list:
    """Mean motion magnitude per frame pair, ``m[f] = mean_{n,c,h,w} |x[n, f+1] - x[n, f]|``.

    >>> x = torch.zeros(1, 3, 1, 1, 1); x[0, :, 0, 0, 0] = torch.tensor([0.0, 1.0, 3.0])
    >>> per_frame_motion(x)
    [1.0, 2.0]
    """
    return (videos[:, 1:] - videos[:, :-1]).abs().mean(dim=(0, 2, 3, 4)).tolist()


def _evaluate(videos: torch.Tensor, teacher_videos: torch.Tensor, data_videos: torch.Tensor) -> dict:
    from msm_plugin.metrics import motion_metrics

    unit = to_unit_range(videos)
    return {
        "to_teacher": motion_metrics(unit, reference=to_unit_range(teacher_videos)),
        "to_data": motion_metrics(unit, reference=to_unit_range(data_videos)),
        "per_frame_motion": per_frame_motion(unit),
    }


def _wrap(trainer, lam: float, options: dict):
    from msm_plugin import wrap_trainer

    return wrap_trainer(trainer, lam=lam, **options)


def run_experiment(config: ExperimentConfig, cache_dir=None, progress: bool = True, lora: bool = False,
                   wandb: bool = False) -> dict:
    """Run the protocol; returns a JSON-ready dict (see :func:`summarise`) plus ``"videos"``.

    ``videos`` (not JSON) maps ``"data"``, ``"teacher"`` and each arm of the first
    ``video_seeds`` seeds to evaluation videos in model space ``[N, F, C, H, W]``.
    """
    from tqdm.auto import tqdm

    started = time.perf_counter()
    data = config.data
    teacher, encoder, teacher_info = load_or_train_teacher(data, config.teacher, cache_dir=cache_dir, progress=progress)

    n = config.num_eval
    labels = torch.arange(n) % data.num_conditions
    noise = torch.randn(n, *data.video_shape, generator=torch.Generator().manual_seed(EVAL_NOISE_SEED))
    data_videos = make_videos(labels, data, torch.Generator().manual_seed(EVAL_DATA_SEED))
    t0 = time.perf_counter()
    teacher_videos = sample_with_cfg(
        teacher, encoder(labels), encoder.null(n), noise, config.teacher.sample_steps, config.teacher.guidance_scale
    )
    teacher_sample_seconds = time.perf_counter() - t0

    trainer_options = dict(config.trainer, lora=lora, wandb=wandb)
    runs, videos = [], {"data": data_videos, "teacher": teacher_videos}
    lams = config.lams()
    bar = tqdm(total=len(lams) * len(config.seeds) * config.iters, desc="distillation", disable=not progress, leave=False)
    param_report = None
    for seed_index, seed in enumerate(config.seeds):
        for lam in lams:
            arm = arm_name(lam, config.lam)
            bar.set_description(f"{arm} seed {seed}")
            t0 = time.perf_counter()
            options = {**trainer_options, "seed": seed, "wandb_name": f"{arm}-seed{seed}"}
            trainer = ToyTrainer(make_trainer_config(**options), teacher, encoder, data)
            if lam > 0:
                _wrap(trainer, lam, config.msm_options)
            param_report = param_report or trainer.parameter_report()
            generator_logs = []
            for _ in range(config.iters):
                logs = trainer.train_one_step()
                if "generator_loss" in logs:
                    generator_logs.append(logs)
                bar.update(1)
            trainer.finish()
            train_seconds = time.perf_counter() - t0
            student = trainer.generate(labels, noise)
            if not bool(torch.isfinite(student).all()):
                raise FloatingPointError(f"arm {arm} seed {seed} produced non-finite samples")
            run = {
                "arm": arm,
                "lam": lam,
                "seed": seed,
                "iters": config.iters,
                "generator_steps": len(generator_logs),
                "prompt_digest": trainer.prompt_digest,
                "train_seconds": train_seconds,
                "final_logs": _mean_logs(generator_logs[-10:]),
                **_evaluate(student, teacher_videos, data_videos),
            }
            runs.append(run)
            if seed_index < config.video_seeds:
                videos[f"{arm}/seed{seed}"] = student
    bar.close()

    result = {
        "config": config.to_dict(),
        "conditions": condition_names(data),
        "teacher": {
            "cached": teacher_info["cached"],
            "path": teacher_info["path"],
            "train_seconds": teacher_info["train_seconds"],
            "initial_loss": teacher_info["loss_curve"][0][1],
            "final_loss": teacher_info["loss_curve"][-1][1],
            "sample_seconds": teacher_sample_seconds,
            "to_data": motion_metrics_pair(teacher_videos, data_videos),
            "per_frame_motion": per_frame_motion(to_unit_range(teacher_videos)),
        },
        "data": {
            "per_frame_motion": per_frame_motion(to_unit_range(data_videos)),
            "appearance_over_motion": appearance_to_motion_ratio(data_videos),
        },
        "parameters": param_report,
        "runs": runs,
        "summary": summarise(runs),
        "total_seconds": time.perf_counter() - started,
    }
    result["videos"] = videos
    return result


def motion_metrics_pair(videos: torch.Tensor, reference: torch.Tensor) -> dict:
    """``motion_metrics`` of model-space ``videos`` against model-space ``reference`` (both mapped to [0, 1])."""
    from msm_plugin.metrics import motion_metrics

    return motion_metrics(to_unit_range(videos), reference=to_unit_range(reference))


def _mean_logs(logs: list) -> dict:
    keys = sorted({k for entry in logs for k in entry})
    return {k: sum(e[k] for e in logs if k in e) / max(1, sum(k in e for e in logs)) for k in keys}


def _mean_std(values: list) -> dict:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    mean = sum(finite) / len(finite)
    var = sum((v - mean) ** 2 for v in finite) / (len(finite) - 1) if len(finite) > 1 else 0.0
    return {"mean": mean, "std": math.sqrt(var), "n": len(finite)}


def summarise(runs: list) -> dict:
    """Per arm, mean and sample standard deviation over seeds of every metric.

    Returns ``{arm: {"lam": .., "seeds": [..], "to_teacher": {key: {mean, std, n}}, "to_data": {..}}}``.

    >>> runs = [{"arm": "dmd", "lam": 0.0, "seed": s, "to_teacher": {"motion_fd": v}, "to_data": {}}
    ...         for s, v in [(0, 1.0), (1, 3.0)]]
    >>> summarise(runs)["dmd"]["to_teacher"]["motion_fd"]
    {'mean': 2.0, 'std': 1.4142135623730951, 'n': 2}
    """
    summary = {}
    for run in runs:
        entry = summary.setdefault(run["arm"], {"lam": run["lam"], "seeds": [], "_to_teacher": {}, "_to_data": {}})
        entry["seeds"].append(run["seed"])
        for ref in ("to_teacher", "to_data"):
            for key, value in run[ref].items():
                entry[f"_{ref}"].setdefault(key, []).append(value)
    for entry in summary.values():
        for ref in ("to_teacher", "to_data"):
            entry[ref] = {k: _mean_std(v) for k, v in entry.pop(f"_{ref}").items()}
    return summary


def quick_config(**overrides) -> ExperimentConfig:
    """The ``--quick`` preset: a tiny, briefly trained teacher and short runs (< 2 min from scratch)."""
    base = dict(
        teacher=TeacherConfig(train_steps=100, batch_size=16),
        seeds=(0, 1),
        iters=20,
        num_eval=24,
        trainer={"batch_size": 8},
    )
    base.update(overrides)
    return ExperimentConfig(**base)
