"""The toy protocol: arms of DMD with and without extra losses, from one exact teacher, paired per seed.

An arm is a name and the extra-loss entries of its trainer config, exactly as a user writes them
(``{"extra_losses": ["msm"], "msm": {"lam": 0.25}}``; ``{}`` is plain DMD). The trainer installs
them itself through :func:`msm_plugin.adapters.apply_extra_losses`, as a CausVid trainer with
msm-plugin's patch does, so MSM and any other registered loss reach it by the public route.

For every seed, each arm builds the same trainer (same residual initialisation, same prompts
from a dedicated RNG stream, same noise) and trains for the same number of generator steps. At
checkpoints every student is sampled on one fixed evaluation set (labels cycling through the
conditions, fixed noise) and measured against the ground truth (:mod:`.tracking`: tracked blob,
velocity, direction, frozen share, blob strength) and against the data set (nearest data frame,
and at the last checkpoint :func:`msm_plugin.metrics.motion_metrics`: motion-compensated
smoothness, flow and appearance Fréchet distances). The data's own videos, the teacher's samples
and the initial student (the conditional data mean) are measured the same way.
"""

from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass, field

import torch
from omegaconf import OmegaConf

from msm_plugin.toy.checks import compare_arms, student_checks
from msm_plugin.toy.data import ToyDataConfig, appearance_to_motion_ratio, condition_names, make_dataset, to_unit_range
from msm_plugin.toy.networks import ResidualConfig
from msm_plugin.toy.teacher import ClassTextEncoder, ExactTeacher, sample_with_cfg
from msm_plugin.toy.tracking import BlobTracker, motion_truth_metrics, summarise_truth
from msm_plugin.toy.trainer import ToyTrainer, make_trainer_config

__all__ = [
    "ARM_DMD",
    "ARM_MSM",
    "DEMO_TRAINER",
    "Arm",
    "ExperimentConfig",
    "build_teacher",
    "evaluate_videos",
    "library_versions",
    "msm_arm",
    "nearest_frame_rms",
    "nearest_rms",
    "run_experiment",
    "summarise",
]

ARM_DMD = "dmd"
ARM_MSM = "dmd+msm"
# Fixed, independent of the training seeds, so that every arm and seed is judged on one set.
EVAL_NOISE_SEED = 1234
TEXT_SEED = 99
#: The demo's trainer settings: Adam without momentum (DMD2), a faster critic, 5 critic updates
#: per generator update, no CFG (the exact teacher needs none).
DEMO_TRAINER = {
    "batch_size": 32,
    "lr": 2e-4,
    "lr_critic": 6e-4,
    "beta1": 0.0,
    "beta2": 0.99,
    "dfake_gen_update_ratio": 5,
    "real_guidance_scale": 0.0,
}
#: The student's and the critic's residuals (chosen by measurement: docs/demo.md).
GENERATOR_NET = ResidualConfig(kind="mlp", width=512, depth=2)
CRITIC_NET = ResidualConfig(kind="mlp", width=256, depth=2, reads_base=True)


@dataclass(frozen=True)
class Arm:
    """One arm: a name and the extra-loss entries of its trainer config (``{}``: plain DMD).

    ``losses`` is what a user adds to a host config: ``extra_losses`` and one options section per
    listed loss. It is validated on construction, so a misspelt loss or option fails before any
    training.

    >>> Arm("dmd+msm", {"extra_losses": ["msm"], "msm": {"lam": 0.5}}).losses
    {'extra_losses': ['msm'], 'msm': {'lam': 0.5}}
    >>> Arm("x", {"extra_losses": ["msm"], "msm": {"lamda": 0.5}})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: arm 'x': unknown option `msm.lamda`; did you mean `lam`? Options of extra loss 'msm': lam, ...
    """

    name: str
    losses: dict = field(default_factory=dict)

    def __post_init__(self):
        from msm_plugin.config import parse_extra_losses

        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"an arm needs a non-empty name, got {self.name!r}")
        if not isinstance(self.losses, dict):
            raise TypeError(f"arm {self.name!r}: `losses` should be a dict of extra-loss config entries, got {self.losses!r}")
        try:
            parse_extra_losses(self.losses)
        except (TypeError, ValueError) as error:
            raise type(error)(f"arm {self.name!r}: {error}") from error
        object.__setattr__(self, "losses", OmegaConf.to_container(OmegaConf.create(self.losses)))

    @property
    def loss_names(self) -> list:
        """The extra losses this arm lists."""
        return list(self.losses.get("extra_losses", []))

    def to_dict(self) -> dict:
        return {"name": self.name, "losses": self.losses}


def msm_arm(name: str = ARM_MSM, **options) -> Arm:
    """DMD+MSM with MSM's ``options`` (none: the defaults, what ``extra_losses: [msm]`` gives).

    >>> msm_arm(lam=0.25).losses
    {'extra_losses': ['msm'], 'msm': {'lam': 0.25}}
    """
    return Arm(name, {"extra_losses": ["msm"], "msm": dict(options)})


def default_arms() -> tuple:
    """DMD and DMD+MSM with MSM's defaults (lam 1, the ``motion`` normaliser)."""
    return (Arm(ARM_DMD), msm_arm())


@dataclass
class ExperimentConfig:
    """Everything one run of arms x seeds does.

    Args:
        data: the synthetic data and its finite set (the exact teacher's).
        generator_net, critic_net: the residuals of the student and the critic.
        arms: the arms to run (see :class:`Arm`).
        seeds: training seeds; each arm runs once per seed.
        steps: generator updates per run (``dfake_gen_update_ratio`` critic updates between two).
        checkpoints: number of evaluations during training, evenly spaced, the last at ``steps``.
        trainer: overrides of :data:`~msm_plugin.toy.trainer.DEFAULT_TRAINER_CONFIG`.
        num_eval: evaluation videos per run (labels cycle through the conditions).
        teacher_steps, teacher_guidance: the teacher's sampler (Euler steps, CFG scale).
        video_seeds: how many seeds get a side-by-side video.
        flow_metrics: compute the flow-based metrics (smoothness, Fréchet distances) at the last
            checkpoint; off, only the tracker and the nearest-frame distance run.

    >>> [a.name for a in ExperimentConfig(steps=10).arms]
    ['dmd', 'dmd+msm']
    >>> ExperimentConfig(steps=400, checkpoints=4).eval_steps()
    [100, 200, 300, 400]
    """

    data: ToyDataConfig = field(default_factory=ToyDataConfig)
    generator_net: ResidualConfig = GENERATOR_NET
    critic_net: ResidualConfig = CRITIC_NET
    arms: tuple = field(default_factory=default_arms)
    seeds: tuple = (0, 1, 2)
    steps: int = 300
    checkpoints: int = 6
    trainer: dict = field(default_factory=lambda: dict(DEMO_TRAINER))
    num_eval: int = 64
    teacher_steps: int = 20
    teacher_guidance: float = 0.0
    video_seeds: int = 1
    flow_metrics: bool = True

    def __post_init__(self):
        if not self.seeds or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in self.seeds):
            raise ValueError(f"`seeds` should be a non-empty list of non-negative ints, got {list(self.seeds)}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"`seeds` should not repeat, got {list(self.seeds)}")
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 1:
            raise ValueError(f"`steps` should be a positive int, got {self.steps!r}")
        if not isinstance(self.checkpoints, int) or not 1 <= self.checkpoints <= self.steps:
            raise ValueError(f"`checkpoints` should be an int in [1, steps={self.steps}], got {self.checkpoints!r}")
        if not self.arms or any(not isinstance(a, Arm) for a in self.arms):
            raise TypeError(f"`arms` should be a non-empty list of Arm, got {self.arms!r}")
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names should not repeat, got {names}")
        if not isinstance(self.num_eval, int) or self.num_eval < 2:
            raise ValueError(f"`num_eval` should be an int >= 2 (Fréchet distances need two videos), got {self.num_eval!r}")
        clash = sorted(set(self.trainer) & ({"extra_losses", "seed"} | {k for a in self.arms for k in a.losses}))
        if clash:
            raise ValueError(f"`trainer` should not set {clash}: the seed comes from `seeds`, extra losses from the arms")
        make_trainer_config(**self.trainer)  # fail here, before any training, on an unknown key
        self.seeds = tuple(self.seeds)
        self.arms = tuple(self.arms)

    @property
    def critic_ratio(self) -> int:
        """Critic updates per generator update."""
        return int(make_trainer_config(**self.trainer).dfake_gen_update_ratio)

    def eval_steps(self) -> list:
        """The generator steps after which every run is evaluated."""
        return sorted({round(self.steps * (k + 1) / self.checkpoints) for k in range(self.checkpoints)})

    def to_dict(self) -> dict:
        return {
            "data": self.data.to_dict(),
            "generator_net": self.generator_net.to_dict(),
            "critic_net": self.critic_net.to_dict(),
            "arms": [a.to_dict() for a in self.arms],
            "seeds": list(self.seeds),
            "steps": self.steps,
            "eval_steps": self.eval_steps(),
            "trainer": OmegaConf.to_container(make_trainer_config(**self.trainer)),
            "num_eval": self.num_eval,
            "teacher_steps": self.teacher_steps,
            "teacher_guidance": self.teacher_guidance,
            "video_seeds": self.video_seeds,
            "flow_metrics": self.flow_metrics,
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


def nearest_rms(videos: torch.Tensor, data_videos: torch.Tensor) -> float:
    """Mean over ``videos`` of the RMS difference to the nearest data video (model space): 0 for data.

    >>> nearest_rms(torch.ones(2, 2, 1, 1, 1), torch.stack([torch.zeros(2, 1, 1, 1), 3 * torch.ones(2, 1, 1, 1)]))
    1.0
    """
    return _nearest(videos.flatten(1), data_videos.flatten(1))


def nearest_frame_rms(videos: torch.Tensor, data_videos: torch.Tensor) -> float:
    """Mean over every frame of ``videos`` of the RMS difference to the nearest frame of any data video.

    Frames are compared one by one, so a student whose frames are data frames scores 0 even if it
    strings them together differently; it measures appearance, not motion.

    >>> data = torch.stack([torch.zeros(2, 1, 1, 1), 4 * torch.ones(2, 1, 1, 1)])  # 2 videos of 2 frames
    >>> nearest_frame_rms(torch.tensor([1.0, 3.0]).reshape(1, 2, 1, 1, 1), data)
    1.0
    """
    return _nearest(videos.flatten(0, 1).flatten(1), data_videos.flatten(0, 1).flatten(1))


def _nearest(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    sq = (a**2).sum(1, keepdim=True) - 2 * a @ b.T + (b**2).sum(1)
    return float((sq.min(dim=1).values.clamp_min(0) / a.shape[1]).sqrt().mean())


def evaluate_videos(videos: torch.Tensor, labels: torch.Tensor, data_videos: torch.Tensor, data: ToyDataConfig,
                    tracker: BlobTracker, flow_metrics: bool = True) -> dict:
    """Ground-truth motion (``truth``), distances to the data set and, with ``flow_metrics``, the
    weight-free metrics of :func:`msm_plugin.metrics.motion_metrics` (``metrics``)."""
    per_video = motion_truth_metrics(videos, labels, data, tracker)
    truth = summarise_truth(per_video, labels, data)
    metrics = {"nearest_frame_rms": nearest_frame_rms(videos, data_videos), "nearest_video_rms": nearest_rms(videos, data_videos)}
    if flow_metrics:
        from msm_plugin.metrics import motion_metrics

        metrics.update(motion_metrics(to_unit_range(videos), reference=to_unit_range(data_videos)))
    return {"truth": truth, "metrics": metrics, "remainder_spectrum": per_video["flicker_spectrum"].tolist()}


def library_versions() -> dict:
    """The versions behind a run's numbers: Python, torch (and its BLAS), NumPy, OpenCV, the CPU."""
    import numpy

    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
                "machine": platform.machine(), "cpu": _cpu_name(), "torch_threads": torch.get_num_threads()}
    try:
        import cv2

        versions["opencv"] = cv2.__version__
    except ImportError:
        versions["opencv"] = "not installed"
    try:
        from msm_plugin import __version__

        versions["msm_plugin"] = __version__
    except ImportError:
        versions["msm_plugin"] = "unknown"
    return versions


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "unknown")
    except OSError:
        return platform.processor() or "unknown"


def run_experiment(config: ExperimentConfig, progress: bool = True, wandb: bool = False) -> dict:
    """Run the protocol; returns a JSON-ready dict plus ``"videos"``.

    Keys: ``config``, ``conditions``, ``versions``, ``data``, ``teacher`` and ``initial`` (the
    evaluations of the data's own videos, the teacher's samples and the untrained student),
    ``runs`` (one per arm and seed, with its checkpoints), ``summary`` (:func:`summarise`),
    ``checks`` (:func:`~msm_plugin.toy.checks.student_checks` of the DMD arm, when it ran),
    ``comparisons`` (:func:`~msm_plugin.toy.checks.compare_arms`: every arm against DMD, paired
    by seed), ``total_seconds``.

    ``videos`` (not JSON) maps ``"data"``, ``"teacher"``, ``"initial"`` and ``"<arm>/seed<S>"`` to
    evaluation videos in model space ``[N, F, C, H, W]`` (``"data"``: data videos of each
    evaluation label's condition, in order).
    """
    from tqdm.auto import tqdm

    started = time.perf_counter()
    data = config.data
    teacher, encoder, data_videos, data_labels = build_teacher(data, config.generator_net.text_dim)
    tracker = BlobTracker(data)

    n = config.num_eval
    labels = torch.arange(n) % data.num_conditions
    noise = torch.randn(n, *data.video_shape, generator=torch.Generator().manual_seed(EVAL_NOISE_SEED))
    teacher_videos = sample_with_cfg(teacher, encoder(labels), encoder.null(n), noise, config.teacher_steps,
                                     config.teacher_guidance)
    per_condition = [torch.nonzero(data_labels == c).flatten() for c in range(data.num_conditions)]
    data_eval = torch.stack([per_condition[int(c)][i // data.num_conditions % len(per_condition[int(c)])]
                             for i, c in enumerate(labels)])
    # The untrained student: zero residuals, so it samples the teacher at the student's steps (one
    # step: the conditional mean).
    untrained = ToyTrainer(make_trainer_config(**config.trainer), teacher, encoder, data, config.generator_net,
                           config.critic_net)
    initial_videos = untrained.generate(labels, noise)
    eval_steps = config.eval_steps()
    reference, videos = {}, {"data": data_videos[data_eval], "teacher": teacher_videos, "initial": initial_videos}
    for name in ("data", "teacher", "initial"):
        reference[name] = evaluate_videos(videos[name], labels, data_videos, data, tracker, config.flow_metrics)

    runs = []
    bar = tqdm(total=len(config.arms) * len(config.seeds) * config.steps, desc="training", disable=not progress,
               leave=False)
    for seed in config.seeds:
        for arm in config.arms:
            bar.set_description(f"{arm.name} seed {seed}")
            options = {**config.trainer, **arm.losses, "seed": seed, "wandb": wandb, "wandb_name": f"{arm.name}-seed{seed}"}
            trainer = ToyTrainer(make_trainer_config(**options), teacher, encoder, data, config.generator_net,
                                 config.critic_net)
            generator_logs, checkpoints, train_seconds, train_cpu = [], [], 0.0, 0.0
            while len(generator_logs) < config.steps:
                t0, c0 = time.perf_counter(), time.process_time()
                logs = trainer.train_one_step()
                train_seconds += time.perf_counter() - t0
                train_cpu += time.process_time() - c0
                if "generator_loss" not in logs:
                    continue
                generator_logs.append(logs)
                bar.update(1)
                if len(generator_logs) in eval_steps:
                    student = trainer.generate(labels, noise)
                    if not bool(torch.isfinite(student).all()):
                        raise FloatingPointError(f"arm {arm.name} seed {seed} produced non-finite samples")
                    last = len(generator_logs) == config.steps
                    point = evaluate_videos(student, labels, data_videos, data, tracker, config.flow_metrics and last)
                    checkpoints.append({"step": len(generator_logs), **point})
            trainer.finish()
            final = checkpoints[-1]
            runs.append({
                "arm": arm.name,
                "losses": arm.losses,
                "seed": seed,
                "steps": config.steps,
                "trainer_steps": trainer.step,
                "prompt_digest": trainer.prompt_digest,
                "train_seconds": train_seconds,
                "train_cpu_seconds": train_cpu,
                "parameters": trainer.parameter_report(),
                "final_logs": _mean_logs(generator_logs[-10:]),
                "truth": final["truth"],
                "metrics": final["metrics"],
                "remainder_spectrum": final["remainder_spectrum"],
                "checkpoints": [{"step": c["step"], "truth": c["truth"], "metrics": c["metrics"]} for c in checkpoints],
            })
            videos[f"{arm.name}/seed{seed}"] = student
    bar.close()

    result = {
        "config": config.to_dict(),
        "conditions": condition_names(data),
        "versions": library_versions(),
        "teacher": {"kind": "exact posterior mean of the finite data set", "dataset_size": int(data_videos.shape[0]),
                    **reference["teacher"]},
        "data": {**reference["data"], "appearance_over_motion": appearance_to_motion_ratio(data_videos)},
        "initial": reference["initial"],
        "runs": runs,
        "summary": summarise(runs),
    }
    if any(r["arm"] == ARM_DMD for r in runs):
        result["checks"] = student_checks(result)
        result["comparisons"] = compare_arms(result)
    result["total_seconds"] = time.perf_counter() - started
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


def _scalars(part: dict) -> list:
    return [k for k, v in part.items() if isinstance(v, (int, float))]


def summarise(runs: list) -> dict:
    """Per arm, mean and sample standard deviation over seeds, at the end and at every checkpoint.

    Returns ``{arm: {"losses", "seeds", "truth": {key: {mean, std, n}}, "metrics": {..},
    "curve": [{"step", "truth": {..}, "metrics": {..}}]}}`` (scalar keys only).

    >>> runs = [{"arm": "dmd", "losses": {}, "seed": s, "truth": {"frozen_share": v},
    ...          "metrics": {}, "checkpoints": []} for s, v in [(0, 1.0), (1, 3.0)]]
    >>> summarise(runs)["dmd"]["truth"]["frozen_share"]
    {'mean': 2.0, 'std': 1.4142135623730951, 'n': 2}
    """
    grouped = {}
    for run in runs:
        grouped.setdefault(run["arm"], []).append(run)
    summary = {}
    for arm, group in grouped.items():
        entry = {"losses": group[0]["losses"], "seeds": [r["seed"] for r in group]}
        for part in ("truth", "metrics"):
            keys = sorted({k for r in group for k in _scalars(r[part])})
            entry[part] = {k: _mean_std([r[part].get(k, float("nan")) for r in group]) for k in keys}
        curve = []
        for i, point in enumerate(group[0]["checkpoints"]):
            at = [r["checkpoints"][i] for r in group]
            curve.append({
                "step": point["step"],
                **{part: {k: _mean_std([c[part].get(k, float("nan")) for c in at]) for k in _scalars(point[part])}
                   for part in ("truth", "metrics")},
            })
        entry["curve"] = curve
        summary[arm] = entry
    return summary


def quick_config(**overrides) -> ExperimentConfig:
    """The ``--quick`` preset: two seeds, a few steps, a small evaluation set (a smoke run, not evidence)."""
    base = dict(seeds=(0, 1), steps=10, checkpoints=2, num_eval=16, teacher_steps=10,
                trainer=dict(DEMO_TRAINER, batch_size=8))
    base.update(overrides)
    return ExperimentConfig(**base)

