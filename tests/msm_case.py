"""Shared by the MSM tests: random float64 inputs and the comparison with the NumPy reference."""

from __future__ import annotations

import math

import torch


def random_inputs(seed: int, shape: tuple, dtype: torch.dtype = torch.float64):
    """``(generated with grad, pred_real, pred_fake)`` drawn in float64, then cast to ``dtype``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype).requires_grad_(True)
    real = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    fake = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    return x, real, fake


def check_against_reference(loss, x, ref_loss, ref_grad) -> None:
    """Loss and gradient equal to the reference's. Both are float64 and sum in different orders,
    so they agree to a few ulps (~1e-15 relative), far inside these bounds."""
    (grad,) = torch.autograd.grad(loss, x)
    assert loss.dtype == torch.float64
    assert math.isclose(loss.item(), ref_loss, rel_tol=1e-10)
    torch.testing.assert_close(grad, torch.from_numpy(ref_grad).to(grad.dtype), rtol=1e-9, atol=1e-12)
