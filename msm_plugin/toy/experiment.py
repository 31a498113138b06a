"""The toy protocol: arms of DMD with and without MSM, from one exact teacher, paired per seed.

For every seed, each arm builds the same trainer (same residual initialisation, same prompts
from a dedicated RNG stream, same noise; MSM draws no random numbers) and trains for the same
number of iterations. Arms differ only in the loss: ``dmd`` is the host unchanged; every other
arm is the same trainer after ``msm_plugin.wrap_trainer(trainer, lam=..., **options)``, the path
a real host takes. An arm is a name, a lam and a dict of MSM options, so other MSM variants are
one more :class:`Arm`.

At checkpoints during training every student is sampled on one fixed evaluation set (labels
cycling through the conditions, fixed noise) and measured against the ground truth
(:mod:`.tracking`: velocity error, direction, frozen share, flicker) and against the data set
(:func:`msm_plugin.metrics.motion_metrics`: smoothness, flow, appearance and motion Fréchet
distances).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from omegaconf import OmegaConf

from msm_plugin.losses.msm import MSMConfig
from msm_plugin.toy.data import ToyDataConfig, appearance_to_motion_ratio, condition_names, make_dataset, to_unit_range
from msm_plugin.toy.teacher import ClassTextEncoder, ExactTeacher, NetConfig, sample_with_cfg
from msm_plugin.toy.tracking import BlobTracker, high_frequency_power, motion_truth_metrics, summarise_truth
from msm_plugin.toy.trainer import ToyTrainer, make_trainer_config

__all__ = [
    "ARM_DMD",
    "ARM_MSM",
    "Arm",
    "ExperimentConfig",
    "build_teacher",
    "default_arms",
    "evaluate_videos",
    "nearest_rms",
    "options_arms",
    "pareto_arms",
    "per_frame_motion",
    "quick_config",
    "run_experiment",
    "summarise",
]

ARM_DMD = "dmd"
ARM_MSM = "dmd+msm"
# Fixed, independent of the training seeds, so that every arm and seed is judged on one set.
EVAL_NOISE_SEED = 1234
TEXT_SEED = 99
# Every MSM option but the weight, which an arm gives as `lam`: one list, MSMConfig's own.
MSM_OPTION_KEYS = tuple(name for name in MSMConfig.option_names() if name != "lam")
# The trainer settings of the demo (see README "The built-in demo" for how they were chosen):
# Adam without momentum as DMD2, a fast learning rate for 400 iterations, critic ratio 2.
DEMO_TRAINER = {
    "batch_size": 16,
    "lr": 1e-3,
    "lr_critic": 1e-3,
    "beta1": 0.0,
    "beta2": 0.99,
    "dfake_gen_update_ratio": 2,
    "real_guidance_scale": 0.0,
}


@dataclass(frozen=True)
class Arm:
    """One arm: ``lam == 0`` is plain DMD; otherwise ``wrap_trainer(trainer, lam=lam, **options)``.

    >>> Arm("dmd+msm", lam=1.0, options=(("normalization", "dmd"),)).msm_options
    {'normalization': 'dmd'}
    """

    name: str
    lam: float = 0.0
    options: tuple = ()

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"an arm needs a non-empty name, got {self.name!r}")
        if isinstance(self.lam, bool) or not isinstance(self.lam, (int, float)) or not self.lam >= 0:
            raise ValueError(f"arm {self.name!r}: `lam` should be a number >= 0, got {self.lam!r}")
        options = dict(self.options)
        unknown = sorted(set(options) - set(MSM_OPTION_KEYS))
        if unknown:
            raise ValueError(f"unknown MSM option(s) {unknown}; known: {list(MSM_OPTION_KEYS)}")
        object.__setattr__(self, "lam", float(self.lam))
        object.__setattr__(self, "options", tuple(sorted(options.items())))

    @property
    def msm_options(self) -> dict:
        return dict(self.options)

    def to_dict(self) -> dict:
        return {"name": self.name, "lam": self.lam, "options": self.msm_options}


def default_arms(lam: float = 1.0, normalization: str = "motion") -> tuple:
    """DMD and one DMD+MSM arm."""
    return (Arm(ARM_DMD), Arm(ARM_MSM, lam=lam, options=(("normalization", normalization),)))


def options_arms(lam: float = 1.0) -> tuple:
    """DMD, the paper's MSM and MSM with each option of issue 13 on its own (same ``lam``).

    The schedule is sized for the default 400 iterations at critic ratio 2 (200 generator
    steps): off for the first 50, ramped over the next 50, while the critic learns the student.

    >>> [a.name for a in options_arms()]
    ['dmd', 'dmd+msm', 'msm binomial', 'msm warm-up', 'msm t>=0.5']
    """
    paper = (("normalization", "motion"),)
    return (
        Arm(ARM_DMD),
        Arm(ARM_MSM, lam=lam, options=paper),
        Arm("msm binomial", lam=lam, options=paper + (("smoothing", "binomial"),)),
        Arm("msm warm-up", lam=lam, options=paper + (("warmup_steps", 50), ("ramp_steps", 50))),
        Arm("msm t>=0.5", lam=lam, options=paper + (("t_min", 0.5),)),
    )


def pareto_arms(lams=(0.25, 0.5, 1.0, 2.0), normalizations=("motion", "dmd")) -> tuple:
    """DMD plus one arm per (lam, normalization): the trade-off sweep.

    >>> [a.name for a in pareto_arms((0.5,), ("motion", "dmd"))]
    ['dmd', 'msm lam=0.5 motion', 'msm lam=0.5 dmd']
    """
    arms = [Arm(ARM_DMD)]
    for lam in lams:
        for norm in normalizations:
            arms.append(Arm(f"msm lam={lam:g} {norm}", lam=lam, options=(("normalization", norm),)))
    return tuple(arms)


@dataclass
class ExperimentConfig:
    """Everything one ``msm-demo`` run does.

    Args:
        data: the synthetic data and its finite set (the exact teacher's).
        net: architecture of the critic's and student's Wan residuals.
        arms: the arms to run (:func:`default_arms`, :func:`pareto_arms`).
        seeds: training seeds; each arm runs once per seed.
        iters: training iterations (critic steps) per run; the generator steps every
            ``dfake_gen_update_ratio`` of them.
        checkpoints: number of evaluations during training, evenly spaced, the last at ``iters``.
        trainer: overrides of :data:`~msm_plugin.toy.trainer.DEFAULT_TRAINER_CONFIG`.
        num_eval: evaluation videos per arm (labels cycle through the conditions).
        teacher_steps, teacher_guidance: the teacher's sampler (Euler steps, CFG scale).
        video_seeds: how many seeds get a side-by-side video.

    >>> [a.name for a in ExperimentConfig(iters=10).arms]
    ['dmd', 'dmd+msm']
    >>> ExperimentConfig(iters=400, checkpoints=4).eval_iters()
    [100, 200, 300, 400]
    """

    data: ToyDataConfig = field(default_factory=ToyDataConfig)
    net: NetConfig = field(default_factory=NetConfig)
    arms: tuple = field(default_factory=default_arms)
    seeds: tuple = (0, 1, 2)
    iters: int = 400
    checkpoints: int = 4
    trainer: dict = field(default_factory=lambda: dict(DEMO_TRAINER))
    num_eval: int = 64
    teacher_steps: int = 20
    teacher_guidance: float = 0.0
    video_seeds: int = 1
    framewise_critic: bool = False

    def __post_init__(self):
        if not self.seeds or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in self.seeds):
            raise ValueError(f"`seeds` should be a non-empty list of non-negative ints, got {list(self.seeds)}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"`seeds` should not repeat, got {list(self.seeds)}")
        if not isinstance(self.iters, int) or self.iters < 1:
            raise ValueError(f"`iters` should be a positive int, got {self.iters!r}")
        if not isinstance(self.checkpoints, int) or not 1 <= self.checkpoints <= self.iters:
            raise ValueError(f"`checkpoints` should be an int in [1, iters={self.iters}], got {self.checkpoints!r}")
        if not self.arms or any(not isinstance(a, Arm) for a in self.arms):
            raise TypeError(f"`arms` should be a non-empty list of Arm, got {self.arms!r}")
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names should not repeat, got {names}")
        if not isinstance(self.num_eval, int) or self.num_eval < 2:
            raise ValueError(f"`num_eval` should be an int >= 2 (Fréchet distances need two videos), got {self.num_eval!r}")
        make_trainer_config(**self.trainer)  # fail here, before any training, on an unknown key
        self.seeds = tuple(self.seeds)
        self.arms = tuple(self.arms)

    def eval_iters(self) -> list:
        """The iterations after which every run is evaluated."""
        return sorted({round(self.iters * (k + 1) / self.checkpoints) for k in range(self.checkpoints)})

    def to_dict(self) -> dict:
        return {
            "data": self.data.to_dict(),
            "net": self.net.to_dict(),
            "arms": [a.to_dict() for a in self.arms],
            "seeds": list(self.seeds),
            "iters": self.iters,
            "eval_iters": self.eval_iters(),
            "trainer": OmegaConf.to_container(make_trainer_config(**self.trainer)),
            "num_eval": self.num_eval,
            "teacher_steps": self.teacher_steps,
            "teacher_guidance": self.teacher_guidance,
            "video_seeds": self.video_seeds,
            "framewise_critic": self.framewise_critic,
        }


def build_teacher(data: ToyDataConfig, text_dim: int = 16):
    """``(teacher, text_encoder, data_videos, data_labels)``: the exact teacher of ``data``'s finite set.

    The text encoder's class tokens are fixed random vectors (seed ``TEXT_SEED``), frozen.
    """
    videos, labels = make_dataset(data)
    teacher = ExactTeacher(videos, labels, data.num_conditions)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TEXT_SEED)
        encoder = ClassTextEncoder(data.num_conditions, text_dim).requires_grad_(False)
    return teacher, encoder, videos, labels


def per_frame_motion(videos: torch.Tensor) -> list:
    """Mean motion magnitude per frame pair, ``m[f] = mean_{n,c,h,w} |x[n, f+1] - x[n, f]|``.

    >>> x = torch.zeros(1, 3, 1, 1, 1); x[0, :, 0, 0, 0] = torch.tensor([0.0, 1.0, 3.0])
    >>> per_frame_motion(x)
    [1.0, 2.0]
    """
    return (videos[:, 1:] - videos[:, :-1]).abs().mean(dim=(0, 2, 3, 4)).tolist()


def nearest_rms(videos: torch.Tensor, data_videos: torch.Tensor) -> float:
    """Mean over ``videos`` of the RMS difference to the nearest data video (model space): 0 for data.

    >>> nearest_rms(torch.ones(2, 2, 1, 1, 1), torch.stack([torch.zeros(2, 1, 1, 1), 3 * torch.ones(2, 1, 1, 1)]))
    1.0
    """
    a, b = videos.flatten(1).double(), data_videos.flatten(1).double()
    sq = (a**2).sum(1, keepdim=True) - 2 * a @ b.T + (b**2).sum(1)
    return float((sq.min(dim=1).values.clamp_min(0) / a.shape[1]).sqrt().mean())


def evaluate_videos(videos: torch.Tensor, labels: torch.Tensor, data_videos: torch.Tensor, data: ToyDataConfig,
                    tracker: BlobTracker) -> dict:
    """Ground-truth motion (``truth``), weight-free metrics against the data set (``metrics``), per-pair motion."""
    from msm_plugin.metrics import motion_metrics

    truth = summarise_truth(motion_truth_metrics(videos, labels, data, tracker), labels, data)
    metrics = motion_metrics(to_unit_range(videos), reference=to_unit_range(data_videos))
    metrics["nn_rms"] = nearest_rms(videos, data_videos)
    return {"truth": truth, "metrics": metrics, "per_frame_motion": per_frame_motion(to_unit_range(videos))}


def run_experiment(config: ExperimentConfig, progress: bool = True, wandb: bool = False) -> dict:
    """Run the protocol; returns a JSON-ready dict (see :func:`summarise`) plus ``"videos"``.

    ``videos`` (not JSON) maps ``"data"``, ``"teacher"`` and ``"<arm>/seed<S>"`` to evaluation
    videos in model space ``[N, F, C, H, W]`` (``"data"``: the data set's first video of each
    evaluation label's condition, in order).
    """
    from tqdm.auto import tqdm

    started = time.perf_counter()
    data = config.data
    teacher, encoder, data_videos, data_labels = build_teacher(data, config.net.text_dim)
    tracker = BlobTracker(data)

    n = config.num_eval
    labels = torch.arange(n) % data.num_conditions
    noise = torch.randn(n, *data.video_shape, generator=torch.Generator().manual_seed(EVAL_NOISE_SEED))
    t0 = time.perf_counter()
    teacher_videos = sample_with_cfg(teacher, encoder(labels), encoder.null(n), noise, config.teacher_steps,
                                     config.teacher_guidance)
    teacher_sample_seconds = time.perf_counter() - t0
    # The data set's own videos, as many per condition as the evaluation set holds (the validation
    # of the tracker: it must recover the true velocities).
    per_condition = [torch.nonzero(data_labels == c).flatten() for c in range(data.num_conditions)]
    data_eval = torch.stack([per_condition[int(c)][i // data.num_conditions % len(per_condition[int(c)])]
                             for i, c in enumerate(labels)])
    eval_iters = config.eval_iters()
    total_evals = len(config.arms) * len(config.seeds) * len(eval_iters) + 2
    scoring = tqdm(total=total_evals, desc="scoring", disable=not progress, leave=False, position=1)
    reference = {}
    for name, videos in (("data", data_videos[data_eval]), ("teacher", teacher_videos)):
        reference[name] = evaluate_videos(videos, labels, data_videos, data, tracker)
        scoring.update(1)

    trainer_options = dict(config.trainer, wandb=wandb)
    runs, videos = [], {"data": data_videos[data_eval], "teacher": teacher_videos}
    bar = tqdm(total=len(config.arms) * len(config.seeds) * config.iters, desc="training", disable=not progress,
               leave=False, position=0)
    param_report = None
    for seed in config.seeds:
        for arm in config.arms:
            bar.set_description(f"{arm.name} seed {seed}")
            options = {**trainer_options, "seed": seed, "wandb_name": f"{arm.name}-seed{seed}"}
            trainer = ToyTrainer(make_trainer_config(**options), teacher, encoder, data, config.net,
                                 framewise_critic=config.framewise_critic)
            if arm.lam > 0:
                from msm_plugin import wrap_trainer

                wrap_trainer(trainer, lam=arm.lam, **arm.msm_options)
            param_report = param_report or trainer.parameter_report()
            generator_logs, checkpoints, train_seconds = [], [], 0.0
            for it in range(1, config.iters + 1):
                t0 = time.perf_counter()
                logs = trainer.train_one_step()
                train_seconds += time.perf_counter() - t0
                if "generator_loss" in logs:
                    generator_logs.append(logs)
                bar.update(1)
                if it in eval_iters:
                    student = trainer.generate(labels, noise)
                    if not bool(torch.isfinite(student).all()):
                        raise FloatingPointError(f"arm {arm.name} seed {seed} produced non-finite samples")
                    checkpoints.append({"iter": it, **evaluate_videos(student, labels, data_videos, data, tracker)})
                    scoring.update(1)
            trainer.finish()
            final = checkpoints[-1]
            critic_spectrum = torch.stack(trainer.critic_error_spectra).mean(dim=0)
            critic_hf_power, critic_hf_share = high_frequency_power(critic_spectrum)
            runs.append({
                "arm": arm.name,
                "lam": arm.lam,
                "options": arm.msm_options,
                "seed": seed,
                "iters": config.iters,
                "generator_steps": len(generator_logs),
                "prompt_digest": trainer.prompt_digest,
                "train_seconds": train_seconds,
                "final_logs": _mean_logs(generator_logs[-10:]),
                "truth": final["truth"],
                "metrics": final["metrics"],
                "per_frame_motion": final["per_frame_motion"],
                "training": {"critic_error_hf_power": critic_hf_power, "critic_error_hf_share": critic_hf_share},
                "critic_error_spectrum": critic_spectrum.tolist(),
                "checkpoints": [{"iter": c["iter"], "truth": c["truth"], "metrics": c["metrics"]} for c in checkpoints],
            })
            videos[f"{arm.name}/seed{seed}"] = student
    bar.close()
    scoring.close()

    result = {
        "config": config.to_dict(),
        "conditions": condition_names(data),
        "teacher": {
            "kind": "exact posterior mean of the finite data set",
            "dataset_size": int(data_videos.shape[0]),
            "sample_seconds": teacher_sample_seconds,
            **reference["teacher"],
        },
        "data": {**reference["data"], "appearance_over_motion": appearance_to_motion_ratio(data_videos)},
        "parameters": param_report,
        "runs": runs,
        "summary": summarise(runs),
        "total_seconds": time.perf_counter() - started,
    }
    result["videos"] = videos
    return result


def _mean_logs(logs: list) -> dict:
    keys = sorted({k for entry in logs for k in entry})
    return {k: sum(e[k] for e in logs if k in e) / max(1, sum(k in e for e in logs)) for k in keys}


def _mean_std(values: list) -> dict:
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    mean = sum(finite) / len(finite)
    var = sum((v - mean) ** 2 for v in finite) / (len(finite) - 1) if len(finite) > 1 else 0.0
    return {"mean": mean, "std": math.sqrt(var), "n": len(finite)}


def summarise(runs: list) -> dict:
    """Per arm, mean and sample standard deviation over seeds, at the end and at every checkpoint.

    Returns ``{arm: {"lam", "options", "seeds", "truth": {key: {mean, std, n}}, "metrics": {..},
    "curve": [{"iter", "truth": {..}, "metrics": {..}}]}}``.

    >>> runs = [{"arm": "dmd", "lam": 0.0, "options": {}, "seed": s, "truth": {"frozen_share": v},
    ...          "metrics": {}, "checkpoints": []} for s, v in [(0, 1.0), (1, 3.0)]]
    >>> summarise(runs)["dmd"]["truth"]["frozen_share"]
    {'mean': 2.0, 'std': 1.4142135623730951, 'n': 2}
    """
    grouped = {}
    for run in runs:
        grouped.setdefault(run["arm"], []).append(run)
    summary = {}
    for arm, group in grouped.items():
        entry = {"lam": group[0]["lam"], "options": group[0]["options"], "seeds": [r["seed"] for r in group]}
        for part in ("truth", "metrics", "training"):
            keys = sorted({k for r in group for k in r.get(part, {})})
            entry[part] = {k: _mean_std([r.get(part, {}).get(k, float("nan")) for r in group]) for k in keys}
        curve = []
        for i, point in enumerate(group[0]["checkpoints"]):
            at = [r["checkpoints"][i] for r in group]
            curve.append({
                "iter": point["iter"],
                **{part: {k: _mean_std([c[part][k] for c in at]) for k in point[part]} for part in ("truth", "metrics")},
            })
        entry["curve"] = curve
        summary[arm] = entry
    return summary


def quick_config(**overrides) -> ExperimentConfig:
    """The ``--quick`` preset: two seeds, short runs, a small evaluation set (a smoke run, not evidence)."""
    base = dict(seeds=(0, 1), iters=20, checkpoints=2, num_eval=16, teacher_steps=10,
                trainer=dict(DEMO_TRAINER, batch_size=8))
    base.update(overrides)
    return ExperimentConfig(**base)
