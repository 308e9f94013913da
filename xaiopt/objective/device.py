"""Resolving ``--device auto|cpu|cuda[:N]`` to a torch device."""

from __future__ import annotations

import torch

from xaiopt.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when it is there, else the CPU; an unavailable CUDA device is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device: unknown device {name!r} (valid: auto, cpu, cuda, cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {name!r} asked for, but CUDA is not available here (use auto or cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device: {name!r} does not exist (this machine has {torch.cuda.device_count()} CUDA device(s))"
            )
    elif dev.type != "cpu":
        raise ConfigError(f"device: {name!r} is not supported (valid: auto, cpu, cuda, cuda:N)")
    return dev
