"""Get the teacher's and critic's x0 predictions of one DMD step without running any network again.

The two hosts differ in what they hand back from ``DMD._compute_kl_grad``:

- CausVid returns them in its log dict: ``dmdtrain_pred_real_image`` (after CFG),
  ``dmdtrain_pred_fake_image`` and ``timestep`` ([B, F]); :func:`predictions_from_log` reads them.
- Self-Forcing's log dict has only ``dmdtrain_gradient_norm`` and ``timestep``. Its score wrappers
  return ``(flow_pred, x0_pred)`` tuples and are called with keyword arguments, so
  :class:`ScoreCapture` records each call's x0 output with forward hooks that live only for
  the duration of one ``_compute_kl_grad`` call, tells the conditional from the unconditional
  call by the *identity* of the ``conditional_dict`` passed, and recombines them with the host's
  own guidance attributes exactly as the host does (classifier-free guidance)::

      pred_real = real_cond + (real_cond - real_uncond) * real_guidance_scale
      pred_fake = fake_cond + (fake_cond - fake_uncond) * fake_guidance_scale   # if scale != 0
      pred_fake = fake_cond                                                    # otherwise

The recorded outputs are references to tensors the host computed anyway: no copy, no extra call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn

__all__ = ["CAUSVID_PRED_KEYS", "SCORE_ROLES", "Predictions", "ScoreCapture", "check_score_modules", "predictions_from_log"]

#: Log keys through which CausVid's ``_compute_kl_grad`` exposes its predictions.
CAUSVID_PRED_KEYS = ("dmdtrain_pred_real_image", "dmdtrain_pred_fake_image")
#: The DMD attributes holding the score networks that :class:`ScoreCapture` hooks.
SCORE_ROLES = ("real_score", "fake_score")


def check_score_modules(dmd: Any) -> None:
    """Raise TypeError unless ``dmd.real_score`` and ``dmd.fake_score`` are ``nn.Module`` s (hooks go on them).

    Example:
        >>> check_score_modules(object())
        Traceback (most recent call last):
        ...
        TypeError: expected the DMD object to have an nn.Module `real_score`, got None
    """
    for role in SCORE_ROLES:
        if not isinstance(getattr(dmd, role, None), nn.Module):
            raise TypeError(f"expected the DMD object to have an nn.Module `{role}`, got {getattr(dmd, role, None)!r}")


@dataclass(frozen=True)
class Predictions:
    """The predictions one ``_compute_kl_grad`` call made (all detached, ``[B, F, C, H, W]``).

    Attributes:
        pred_real: teacher x0 prediction after CFG.
        pred_fake: critic x0 prediction (after the critic's CFG when the host uses one).
        timestep: the score timestep ``[B, F]`` or None.
        host: ``"causvid"`` (read from the log dict) or ``"self_forcing"`` (captured by hooks).
    """

    pred_real: Tensor
    pred_fake: Tensor
    timestep: Optional[Tensor]
    host: str


def predictions_from_log(log: Mapping[str, Any]) -> Optional[Predictions]:
    """CausVid-style predictions from a ``_compute_kl_grad`` log dict, None when it lacks them.

    Example:
        >>> import torch
        >>> log = {"dmdtrain_pred_real_image": torch.ones(1, 2, 1, 1, 1),
        ...        "dmdtrain_pred_fake_image": torch.zeros(1, 2, 1, 1, 1), "timestep": torch.ones(1, 2)}
        >>> predictions_from_log(log).host
        'causvid'
        >>> predictions_from_log({"dmdtrain_gradient_norm": torch.tensor(0.1)}) is None
        True
    """
    if not all(isinstance(log.get(key), Tensor) for key in CAUSVID_PRED_KEYS):
        return None
    real, fake = (log[key].detach() for key in CAUSVID_PRED_KEYS)
    timestep = log.get("timestep")
    return Predictions(real, fake, timestep.detach() if isinstance(timestep, Tensor) else None, "causvid")


def _x0(output: Any, role: str) -> Tensor:
    """x0 from a score wrapper's output: the tensor itself (CausVid) or item 1 of a tuple (Self-Forcing)."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)) and len(output) >= 2 and isinstance(output[1], Tensor):
        return output[1]
    raise TypeError(
        f"expected {role} to return an x0 tensor or a (flow_pred, x0_pred, ...) tuple, got {type(output).__name__}"
    )


class ScoreCapture:
    """Context manager recording ``real_score`` / ``fake_score`` x0 outputs during one call.

    Args:
        dmd: the host DMD object (``real_score``, ``fake_score``, ``real_guidance_scale`` and,
            optionally, ``fake_guidance_scale``).
        conditional_dict: the exact object the host passes for the conditional branch.
        unconditional_dict: the exact object passed for the unconditional branch.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> class Score(nn.Module):
        ...     def forward(self, noisy_image_or_video, conditional_dict, timestep):
        ...         x0 = noisy_image_or_video * conditional_dict["scale"]
        ...         return x0 - 1, x0  # (flow_pred, x0_pred)
        >>> dmd = nn.Module(); dmd.real_score, dmd.fake_score = Score(), Score()
        >>> dmd.real_guidance_scale, dmd.fake_guidance_scale = 2.0, 0.0
        >>> cond, uncond, x = {"scale": 3.0}, {"scale": 1.0}, torch.ones(1, 2, 1, 1, 1)
        >>> with ScoreCapture(dmd, cond, uncond) as cap:
        ...     _ = dmd.fake_score(noisy_image_or_video=x, conditional_dict=cond, timestep=None)
        ...     _ = dmd.real_score(noisy_image_or_video=x, conditional_dict=cond, timestep=None)
        ...     _ = dmd.real_score(noisy_image_or_video=x, conditional_dict=uncond, timestep=None)
        >>> real, fake = cap.combined()
        >>> real.flatten().tolist(), fake.flatten().tolist()  # 3 + (3 - 1) * 2, 3
        ([7.0, 7.0], [3.0, 3.0])
    """

    def __init__(self, dmd: Any, conditional_dict: Any, unconditional_dict: Any) -> None:
        check_score_modules(dmd)
        self.dmd = dmd
        self.branches = {id(conditional_dict): "cond", id(unconditional_dict): "uncond"}
        self.outputs: Dict[Tuple[str, str], Any] = {}
        self.problems: List[str] = []
        if conditional_dict is unconditional_dict:
            self.problems.append("conditional_dict and unconditional_dict are the same object, so the two branches cannot be told apart")
        self._handles: list = []

    def _hook(self, role: str):
        # Never raise inside the host's forward: a call the adapter cannot attribute is noted and
        # only becomes an error if its predictions are actually needed (see `combined`).
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            cond = kwargs["conditional_dict"] if "conditional_dict" in kwargs else (args[1] if len(args) > 1 else None)
            branch = self.branches.get(id(cond))
            if branch is None:
                self.problems.append(
                    f"{role} was called with a conditional_dict that is neither the conditional nor the "
                    "unconditional dict _compute_kl_grad received"
                )
            elif (role, branch) in self.outputs:
                self.problems.append(f"{role} was called more than once with the {branch}itional dict")
            else:
                self.outputs[(role, branch)] = output

        return hook

    def __enter__(self) -> "ScoreCapture":
        for role in SCORE_ROLES:
            module = getattr(self.dmd, role)
            self._handles.append(module.register_forward_hook(self._hook(role), with_kwargs=True))
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _get(self, role: str, branch: str) -> Tensor:
        if self.problems:
            raise RuntimeError(
                "cannot recover the host's predictions from the score calls inside _compute_kl_grad: "
                + "; ".join(self.problems)
            )
        if (role, branch) not in self.outputs:
            seen = sorted(f"{r}/{b}" for r, b in self.outputs)
            raise RuntimeError(f"no {branch}itional {role} call was captured inside _compute_kl_grad (captured: {seen})")
        return _x0(self.outputs[(role, branch)], role).detach()

    def combined(self) -> Tuple[Tensor, Tensor]:
        """``(pred_real, pred_fake)`` combined with the host's guidance scales, as the host does."""
        with torch.no_grad():
            real_cond = self._get("real_score", "cond")
            pred_real = real_cond + (real_cond - self._get("real_score", "uncond")) * self.dmd.real_guidance_scale
            fake_cond = self._get("fake_score", "cond")
            fake_scale = getattr(self.dmd, "fake_guidance_scale", 0.0)
            if fake_scale != 0.0:
                pred_fake = fake_cond + (fake_cond - self._get("fake_score", "uncond")) * fake_scale
            else:
                pred_fake = fake_cond
        return pred_real, pred_fake
