"""A log of the in-place edits a canonizer makes, so that ``remove()`` can undo them exactly.

Parameters are restored by handing back the very tensors they held, so the original module
computes bit-identical outputs after removal.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

_MISSING = object()


class EditLog:
    """Apply edits now, undo them later in reverse order."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def set_data(self, tensor: torch.Tensor, value: torch.Tensor) -> None:
        old = tensor.data
        tensor.data = value
        self._undo.append(lambda: setattr(tensor, "data", old))

    def ensure_bias(self, module: nn.Module, size: int) -> nn.Parameter:
        if module.bias is None:
            weight = module.weight
            module.bias = nn.Parameter(torch.zeros(size, dtype=weight.dtype, device=weight.device))
            self._undo.append(lambda: setattr(module, "bias", None))
        return module.bias

    def set_attr(self, owner: Any, name: str, value: Any) -> None:
        """Set an attribute (module, buffer or plain); undo restores or deletes it."""
        old = owner.__dict__.get(name, _MISSING)
        if isinstance(owner, nn.Module):
            for store in (owner._modules, owner._buffers, owner._parameters):
                if name in store:
                    old = store[name]
        if isinstance(owner, nn.Module) and isinstance(old, torch.Tensor) and name in owner._buffers:
            owner._buffers[name] = value
        else:
            setattr(owner, name, value)

        def undo() -> None:
            if old is _MISSING:
                delattr(owner, name)
            elif isinstance(owner, nn.Module) and name in owner._buffers:
                owner._buffers[name] = old
            else:
                setattr(owner, name, old)

        self._undo.append(undo)

    def on_undo(self, action: Callable[[], None]) -> None:
        self._undo.append(action)

    def undo(self) -> None:
        while self._undo:
            self._undo.pop()()

    def __len__(self) -> int:
        return len(self._undo)
