"""Loading a user's network file (feature extractor, flow network) without running pickled code."""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["load_network"]


def load_network(path, *, what: str):
    """A ``torch.export`` program (``.pt2``) or a TorchScript file, on the CPU, as a callable module.

    Neither format unpickles arbitrary objects, and nothing is downloaded.

    Args:
        path: the file.
        what: what the network is, for the error message ("feature extractor").

    Raises:
        ValueError: when the file is missing or is neither format.
    """
    path = Path(path)
    try:
        if path.suffix == ".pt2":
            return torch.export.load(str(path)).module()
        module = torch.jit.load(str(path), map_location="cpu")
        module.eval()
        return module
    except Exception as error:  # both loaders raise RuntimeError, ValueError or zip errors on a bad file
        raise ValueError(f"cannot load {what} {path} (torch.export .pt2 or TorchScript): {error}") from error
