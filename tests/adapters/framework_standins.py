"""Tiny stand-ins for FastVideo's and FastGen's DMD method classes, written from their interfaces.

Nothing here is upstream code. What is reproduced (from reading the upstream interfaces, which
``test_upstream_interfaces.py`` compares with these when a framework's source is at hand):
FastVideo's ``DMD2Method(cfg=..., role_models=...)`` with ``method_config`` (and ``cfg.raw``, the
whole YAML), role models whose ``predict_x0`` / ``predict_noise`` take ``conditional``
keyword-only and required, the student trained at iterations that are multiples of
``generator_update_interval``,
``single_train_step(batch, iteration) -> (loss_map, outputs, metrics)``, ``_dmd_loss`` whose
predictions are local variables (``critic.predict_x0`` / ``teacher.predict_x0(..., conditional=)``,
CFG ``uncond + (cond - uncond) * real_score_guidance_scale``, ONE scalar normaliser over the
batch, ``nan_to_num``, ``0.5 * mse`` in float32), a ``[1]`` score timestep on the 0-1000 scale
drawn from ``self.cuda_generator``, frames on dim 1; ``SelfForcingMethod`` routing x0 through
``_predict_x0_with_scheduler(model, ...)``. FastGen's ``LazyCall`` / ``instantiate`` (the
keywords reach the class as ``DictConfig`` / ``ListConfig``), ``DMD2Model(config)`` refusing any
other keyword and building its networks in the constructor, a noise schedule on the student's
network (``net.noise_scheduler``: ``max_t``, ``forward_process``, ``sample_t``; rectified flow,
EDM or trigonometric), ``single_train_step(data, iteration)`` training the student at iterations
that are multiples of ``student_update_freq``, ``_student_update_step(input_student,
t_student, t, eps, data, condition=None, neg_condition=None) -> (loss_map, outputs)`` calling the
module-level ``variational_score_distillation_loss(gen_data, teacher_x0, fake_score_x0)``
(per-sample ``1 / (mean |gen - teacher| + 1e-6)``), CFG ``x0 + (scale - 1) * (x0 - x0_neg)``,
``t`` ``[B]`` (float64) in the schedule's range, frames on dim 2; ``CausVidModel`` / ``SelfForcingModel`` inheriting the
student step. Every network call is counted, and each ``_dmd_loss`` / student step keeps what
upstream holds as local variables in ``.seen`` so tests can compare against it.
"""

from __future__ import annotations

import importlib
import math
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
import yaml
from omegaconf import DictConfig, ListConfig
from torch import Tensor, nn

FV_SHAPE = (2, 5, 3, 4, 4)  # FastVideo [B, F, C, H, W]
FG_SHAPE = (2, 3, 5, 4, 4)  # FastGen [B, C, T, H, W]
calls = {"networks": 0}


class Net(nn.Module):
    """A 3-D convolution over ``[B, C, T, H, W]`` (frames interact), a per-token linear output
    projection over channels as a transformer ends with (so the output is channels-last in memory,
    and a gradient arriving in another layout changes the summation order of its backward pass),
    plus a condition offset."""

    def __init__(self, channels: int, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv3d(channels, channels, 3, padding=1)
        self.head = nn.Linear(channels, channels)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.3 * torch.randn(p.shape, generator=g))

    def forward(self, video: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        calls["networks"] += 1
        scale = t.to(video.dtype).reshape(-1, *([1] * (video.dim() - 1))) if t.numel() == video.shape[0] else t.to(video.dtype).reshape(())
        h = self.head(self.conv(video).permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)
        return h * (1 - 0.5 * scale) + cond.to(video.dtype)


# ---------------------------------------------------------------- FastVideo (frames on dim 1)


class Role:
    """A role model (student / teacher / critic): ``predict_x0`` and ``predict_noise`` on ``[B, F, C, H, W]``."""

    num_train_timesteps = 1000

    def __init__(self, seed: int, trainable: bool, dtype: torch.dtype = torch.float32) -> None:
        self.transformer = Net(FV_SHAPE[2], seed).to(dtype)
        self._trainable = trainable

    def predict_x0(self, noisy_latents, timestep, batch, *, conditional, cfg_uncond=None, attn_kind="dense"):
        cond = batch.text if conditional else batch.negative
        out = self.transformer(noisy_latents.transpose(1, 2), timestep.float() / 1000, cond)
        return out.transpose(1, 2)

    def predict_noise(self, noisy_latents, timestep, batch, *, conditional, cfg_uncond=None, attn_kind="dense"):
        x0 = self.predict_x0(noisy_latents, timestep, batch, conditional=conditional, cfg_uncond=cfg_uncond, attn_kind=attn_kind)
        return noisy_latents - x0

    def add_noise(self, x, noise, timestep):
        s = timestep.to(x.dtype) / 1000
        return (1 - s) * x + s * noise

    def shift_and_clamp_timestep(self, timestep):
        return timestep.clamp(20, 980)


class DMD2Method(nn.Module):
    constructed = 0

    def __init__(self, *, cfg: Any, role_models: Dict[str, Role]) -> None:
        super().__init__()
        DMD2Method.constructed += 1
        self.method_config = dict(cfg.method)
        self.student, self.teacher, self.critic = (role_models[r] for r in ("student", "teacher", "critic"))
        self.cuda_generator = torch.Generator().manual_seed(7)
        self.seen: Dict[str, Tensor] = {}

    def _sample_score_timestep(self, device) -> Tensor:
        t = torch.randint(0, 1000, [1], device=device, dtype=torch.long, generator=self.cuda_generator)
        return self.student.shift_and_clamp_timestep(t)

    def _student_rollout(self, batch, *, with_grad: bool) -> Tensor:
        with torch.set_grad_enabled(with_grad):
            t = torch.full([1], 900, dtype=torch.long)
            return self.student.predict_x0(batch.latents, t, batch, conditional=True)

    def _guidance(self) -> float:
        raw = self.method_config.get("real_score_guidance_scale")
        return 1.0 if raw is None else float(raw)

    def _score(self, model: Role, noisy, timestep, batch, conditional: bool) -> Tensor:
        return model.predict_x0(noisy, timestep, batch, conditional=conditional, cfg_uncond=None, attn_kind="dense")

    def _dmd_loss(self, generator_pred_x0: Tensor, batch: Any) -> Tensor:
        scale = self._guidance()
        with torch.no_grad():
            timestep = self._sample_score_timestep(generator_pred_x0.device)
            noise = torch.randn(generator_pred_x0.shape, dtype=generator_pred_x0.dtype, generator=self.cuda_generator)
            noisy = self.student.add_noise(generator_pred_x0, noise, timestep)
            fake = self._score(self.critic, noisy, timestep, batch, True)
            cond = self._score(self.teacher, noisy, timestep, batch, True)
            uncond = self._score(self.teacher, noisy, timestep, batch, False)
            real = uncond + (cond - uncond) * scale
            normaliser = (generator_pred_x0 - real).abs().mean()  # one scalar for the whole batch
            grad = torch.nan_to_num((fake - real) / normaliser)
        self.seen = {"real": real, "fake": fake, "timestep": timestep}
        return 0.5 * F.mse_loss(generator_pred_x0.float(), (generator_pred_x0.float() - grad.float()).detach())

    def _critic_flow_matching_loss(self, batch: Any):
        with torch.no_grad():
            x = self._student_rollout(batch, with_grad=False)
        t = self._sample_score_timestep(x.device)
        noise = torch.randn(x.shape, dtype=x.dtype, generator=self.cuda_generator)
        pred = self.critic.predict_noise(self.student.add_noise(x, noise, t), t, batch, conditional=True)
        return torch.mean((pred - (noise - x)) ** 2), None, {}

    def _should_update_student(self, iteration: int) -> bool:
        raw = self.method_config.get("generator_update_interval")
        interval = 1 if raw is None else int(raw)
        return interval <= 0 or iteration % interval == 0

    def single_train_step(self, batch: Any, iteration: int):
        update_student = bool(self._should_update_student(iteration))
        generator_loss = torch.zeros(())
        if update_student:
            generator_loss = self._dmd_loss(self._student_rollout(batch, with_grad=True), batch)
        critic_loss, _, outputs = self._critic_flow_matching_loss(batch)
        loss_map = {"total_loss": generator_loss + critic_loss, "generator_loss": generator_loss, "fake_score_loss": critic_loss}
        return loss_map, dict(outputs), {"update_student": float(update_student)}


class SelfForcingMethod(DMD2Method):
    def _predict_x0_with_scheduler(self, model, noisy_latents, timestep, batch, *, conditional, attn_kind):
        flow = model.predict_noise(noisy_latents, timestep, batch, conditional=conditional, cfg_uncond=None, attn_kind=attn_kind)
        return noisy_latents - flow  # x0 from the flow prediction (the stand-in's scheduler)

    def _score(self, model: Role, noisy, timestep, batch, conditional: bool) -> Tensor:
        return self._predict_x0_with_scheduler(model, noisy, timestep, batch, conditional=conditional, attn_kind="dense")


def fastvideo_cfg(top: Optional[Dict[str, Any]] = None, **method: Any) -> SimpleNamespace:
    """FastVideo's run config: ``method`` (a dict), ``training`` and ``raw`` (the whole YAML, plus ``top``)."""
    method = {"_target_": "x", "real_score_guidance_scale": 3.0, **method}
    raw = {"models": {}, "method": method, "training": {}, **(top or {})}
    return SimpleNamespace(method=method, training=None, raw=raw)


def _cli_value(text: str) -> Any:
    """A command-line value: true/false, none/null, an int, a float, a ``[...]`` YAML list, else the text."""
    named = {"true": True, "false": False, "none": None, "null": None}
    if text.lower() in named:
        return named[text.lower()]
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            continue
    is_list = text.startswith("[") and text.endswith("]")
    try:
        return yaml.safe_load(text) if is_list else text
    except yaml.error.YAMLError:
        return text


def fastvideo_cli_overrides(cfg: SimpleNamespace, tokens) -> None:
    """``run.sh config.yaml --dotted.key value`` (or ``--dotted.key=value``): each value is set at
    its dotted path of the YAML, creating mappings on the way; ``cfg.method`` is then the YAML's
    ``method:`` mapping again."""
    tokens = list(tokens)
    while tokens:
        key = tokens.pop(0)[2:]
        key, value = key.split("=", 1) if "=" in key else (key, tokens.pop(0))
        *parents, leaf = key.split(".")
        node = cfg.raw
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = _cli_value(value)
    cfg.method = dict(cfg.raw["method"])


def fastvideo_train(method: Any, batch: Any, steps: range, accumulation: int = 1):
    """FastVideo's loop: ``single_train_step(batch, step)`` ``accumulation`` times per step, steps from 1."""
    return [method.single_train_step(batch, step) for step in steps for _ in range(accumulation)]


def fastvideo_roles(dtype: torch.dtype = torch.float32) -> Dict[str, Role]:
    return {"student": Role(1, True, dtype), "teacher": Role(2, False, dtype), "critic": Role(3, True, dtype)}


def fastvideo_batch(seed: int = 0, dtype: torch.dtype = torch.float32) -> SimpleNamespace:
    g = torch.Generator().manual_seed(seed)
    c = FV_SHAPE[2]
    return SimpleNamespace(
        latents=torch.randn(FV_SHAPE, generator=g).to(dtype),
        text=torch.randn(1, c, 1, 1, 1, generator=g),
        negative=torch.randn(1, c, 1, 1, 1, generator=g),
    )


# ---------------------------------------------------------------- FastGen (frames on dim 2)


def variational_score_distillation_loss(gen_data, teacher_x0, fake_score_x0, additional_scale=None):
    with torch.no_grad():
        gap = (gen_data.float() - teacher_x0.float()).abs().flatten(1).mean(1)
        w = (1 / (gap + 1e-6)).reshape(-1, *([1] * (gen_data.dim() - 1))).to(gen_data.dtype)
        target = gen_data - (fake_score_x0 - teacher_x0) * w
    return 0.5 * F.mse_loss(gen_data, target)


class NoiseSchedule(nn.Module):
    """A noise schedule on FastGen's time axis: ``t`` in ``[min_t, max_t]`` (float64), ``max_t`` its scale."""

    KINDS = {"rf": (0.0, 0.999), "edm": (0.002, 80.0), "trig": (0.0, math.pi / 2)}

    def __init__(self, kind: str = "rf") -> None:
        super().__init__()
        self.kind = kind
        self.time_range = self.KINDS[kind]
        self.t_precision = torch.float64

    @property
    def max_t(self) -> float:  # the scale of t
        return self.time_range[1]

    def forward_process(self, x, eps, t):
        s = t.to(x.dtype).reshape(-1, 1, 1, 1, 1)
        if self.kind == "edm":
            return x + s * eps
        if self.kind == "trig":
            return torch.cos(s) * x + torch.sin(s) * eps
        return (1 - s) * x + s * eps

    def sample_t(self, n: int) -> Tensor:
        """Rectified flow: 0.05-0.95 (as before the other schedules); the others: their whole range."""
        if self.kind == "rf":
            return torch.rand(n, dtype=self.t_precision) * 0.9 + 0.05
        low, high = self.time_range
        return low + torch.rand(n, dtype=self.t_precision) * (high - low)


class FGNet(nn.Module):
    def __init__(self, seed: int, schedule: str = "rf") -> None:
        super().__init__()
        self.net = Net(FG_SHAPE[1], seed)
        self.noise_scheduler = NoiseSchedule(schedule)

    def forward(self, x, t, condition=None, fwd_pred_type="x0"):
        return self.net(x, t / self.noise_scheduler.max_t, condition)


class DMD2Model(nn.Module):
    built = 0

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
        self.build_model()

    def build_model(self) -> None:
        DMD2Model.built += 1
        schedule = getattr(self.config, "schedule", "rf")
        # the critic starts as the teacher
        self.net, self.teacher, self.fake_score = FGNet(1, schedule), FGNet(2, schedule), FGNet(2, schedule)
        self.to(self.config.dtype)
        self.seen: Dict[str, Tensor] = {}

    def _student_update_step(self, input_student, t_student, t, eps, data, condition=None, neg_condition=None):
        gen_data = self.net(input_student, t_student, condition=condition)
        perturbed = self.net.noise_scheduler.forward_process(gen_data, eps, t)
        with torch.no_grad():
            fake = self.fake_score(perturbed, t, condition=condition, fwd_pred_type="x0")
            teacher_x0 = self.teacher(perturbed, t, condition=condition, fwd_pred_type="x0").detach()
        if self.config.guidance_scale is not None:
            with torch.no_grad():
                negative = self.teacher(perturbed, t, condition=neg_condition, fwd_pred_type="x0")
            teacher_x0 = teacher_x0 + (self.config.guidance_scale - 1) * (teacher_x0 - negative)
        self.seen = {"gen": gen_data, "real": teacher_x0, "fake": fake}
        vsd = variational_score_distillation_loss(gen_data, teacher_x0, fake)
        gan = torch.zeros((), dtype=vsd.dtype)
        return {"total_loss": vsd + 0.0 * gan, "vsd_loss": vsd, "gan_loss_gen": gan}, {"gen_rand": gen_data}

    def _fake_score_discriminator_update_step(self, input_student, t_student, t, eps, real_data, condition=None):
        with torch.no_grad():
            gen = self.net(input_student, t_student, condition=condition)
        pred = self.fake_score(self.net.noise_scheduler.forward_process(gen, eps, t), t, condition=condition)
        loss = F.mse_loss(pred, gen)
        return {"total_loss": loss, "fake_score_loss": loss}, {}

    def single_train_step(self, data: Dict[str, Any], iteration: int):
        real = data["real"]
        b = real.shape[0]
        input_student = torch.randn(real.shape, dtype=real.dtype)
        t_student = torch.full((b,), self.net.noise_scheduler.max_t, dtype=torch.float64)
        t = self.net.noise_scheduler.sample_t(b)
        eps = torch.randn_like(real)
        if iteration % self.config.student_update_freq == 0:
            return self._student_update_step(input_student, t_student, t, eps, data, condition=data["condition"], neg_condition=data["neg_condition"])
        return self._fake_score_discriminator_update_step(input_student, t_student, t, eps, real, condition=data["condition"])


class CausVidModel(DMD2Model):
    pass


class SelfForcingModel(CausVidModel):
    pass


def fastgen_config(dtype: torch.dtype = torch.float32, guidance_scale: Optional[float] = 4.0, schedule: str = "rf") -> SimpleNamespace:
    return SimpleNamespace(dtype=dtype, guidance_scale=guidance_scale, student_update_freq=5, schedule=schedule)


def LazyCall(target: Any):
    """``L(target)(**kwargs)``: the call as a ``DictConfig`` that may hold objects, ``_target_`` included."""
    return lambda **kwargs: DictConfig({**kwargs, "_target_": target}, flags={"allow_objects": True})


def instantiate(node: Any) -> Any:
    """Build a ``LazyCall``: nested calls first; the other values reach the target as they are in
    the ``DictConfig``, i.e. a dict as ``DictConfig`` and a list as ``ListConfig``."""
    if isinstance(node, ListConfig):
        return ListConfig([instantiate(item) for item in node], flags={"allow_objects": True})
    if not (isinstance(node, Mapping) and "_target_" in node):
        return node
    arguments = {key: instantiate(value) for key, value in node.items()}
    return arguments.pop("_target_")(**arguments)


def fastgen_train(model: Any, steps: range, seed: int = 0, dtype: torch.dtype = torch.float64, accumulation: int = 1):
    """FastGen's loop: ``single_train_step(data, iteration)`` ``accumulation`` times per iteration, from 1."""
    out = []
    for iteration in steps:
        for _ in range(accumulation):
            torch.manual_seed(seed)
            out.append(model.single_train_step(fastgen_data(dtype=dtype), iteration))
    return out


def fastgen_data(seed: int = 0, dtype: torch.dtype = torch.float32) -> Dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    c = FG_SHAPE[1]
    return {
        "real": torch.randn(FG_SHAPE, generator=g).to(dtype),
        "condition": torch.randn(1, c, 1, 1, 1, generator=g),
        "neg_condition": torch.randn(1, c, 1, 1, 1, generator=g),
    }


# ---------------------------------------------------------------- the launchers' path rules


def fastgen_load_config(path: str) -> Any:
    """FastGen's ``train.py --config=FILE``: a ``.py`` file that exists (from the working folder),
    imported as the module named by its path with ``/`` as ``.`` and ``.py`` removed, whose
    ``create_config()`` gives the config. An absolute path names a relative import, which fails."""
    if not path.endswith(".py"):
        raise ValueError(f"not a .py file: {path}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"no file {path}")
    return importlib.import_module(path.replace(".py", "").replace("/", ".")).create_config()


def fastvideo_run_config_path(config: str, cwd: str) -> str:
    """FastVideo's ``examples/train/run.sh CONFIG``: a relative CONFIG is taken from the folder it
    is run in (made absolute before the script moves to the checkout); an absolute one as it is."""
    return config if config.startswith("/") else f"{cwd}/{config}"


# ---------------------------------------------------------------- the framework packages, injected


def _package(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = []  # a package, so submodules can be imported from sys.modules
    module.__dict__.update(attrs)
    return module


def framework_modules() -> Dict[str, types.ModuleType]:
    """``sys.modules`` entries making ``fastvideo`` and ``fastgen`` importable with these stand-ins."""
    fv = "fastvideo.train.methods.distribution_matching"
    fg = "fastgen.methods.distribution_matching"
    return {
        "fastvideo": _package("fastvideo"),
        "fastvideo.train": _package("fastvideo.train"),
        "fastvideo.train.methods": _package("fastvideo.train.methods"),
        fv: _package(fv),
        f"{fv}.dmd2": _package(f"{fv}.dmd2", DMD2Method=DMD2Method),
        f"{fv}.self_forcing": _package(f"{fv}.self_forcing", SelfForcingMethod=SelfForcingMethod),
        "fastgen": _package("fastgen"),
        "fastgen.methods": _package("fastgen.methods"),
        fg: _package(fg),
        f"{fg}.dmd2": _package(f"{fg}.dmd2", DMD2Model=DMD2Model),
        f"{fg}.causvid": _package(f"{fg}.causvid", CausVidModel=CausVidModel),
        f"{fg}.self_forcing": _package(f"{fg}.self_forcing", SelfForcingModel=SelfForcingModel),
    }


def install_frameworks(monkeypatch) -> None:
    for name, module in framework_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
