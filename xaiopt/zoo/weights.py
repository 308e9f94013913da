"""Local weights files: a state dict read from ``.pt``/``.pth``/``.bin`` (``torch.load(weights_only=True)``)
or ``.safetensors``, and checked to fit a model exactly, each mistake one line naming the file.

Example::

    state = read_state_dict(Path("ft.safetensors"), "timm:resnet18", valid="a state dict file")
    check_fit(model, state, Path("ft.safetensors"), "timm:resnet18")
    model.load_state_dict(state)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xaiopt.errors import ConfigError


def read_state_dict(path: Path, label: str, *, valid: str) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` (under ``state_dict`` or ``model`` too; a ``module.`` prefix on every
    key dropped); ``label`` names the model in the errors, ``valid`` says what a valid setting is."""
    if not path.is_file():
        raise ConfigError(f"model {label!r}: weights file {str(path)!r} does not exist; valid: {valid}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            loaded: Any = load_file(str(path), device="cpu")
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a user's file: whatever the parser objects to, it is not a readable checkpoint
        raise ConfigError(
            f"model {label!r}: cannot read weights file {str(path)!r} ({type(error).__name__}: {one_line(error)})"
        ) from None
    for wrapper in ("state_dict", "model"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(wrapper), Mapping):
            loaded = loaded[wrapper]
            break
    if not (isinstance(loaded, Mapping) and loaded and all(isinstance(v, torch.Tensor) for v in loaded.values())):
        raise ConfigError(
            f"model {label!r}: weights file {str(path)!r} holds no state dict (a mapping of names to tensors, "
            f"optionally under 'state_dict' or 'model')"
        )
    if all(str(k).startswith("module.") for k in loaded):
        return {str(k)[len("module."):]: v for k, v in loaded.items()}
    return {str(k): v for k, v in loaded.items()}


def check_fit(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path, label: str) -> None:
    """One line naming the shapes, missing and unexpected keys (a few of each) when ``state`` does not
    fit ``model`` exactly."""
    own = model.state_dict()
    shapes = [
        f"{k} is {tuple(state[k].shape)} in the file, {tuple(v.shape)} in the model"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    problems = [
        f"{what}: {_first(keys)}"
        for what, keys in (("shape", shapes), ("missing in the file", missing), ("not in the model", unexpected))
        if keys
    ]
    if problems:
        raise ConfigError(f"model {label!r}: weights file {str(path)!r} does not fit; " + "; ".join(problems))


def _first(items: list[str], n: int = 3) -> str:
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def one_line(error: BaseException) -> str:
    """An exception's text on one line, at most 300 characters."""
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:297] + "..."
