"""One call of a hooked module in a recorded forward: what its rule needs at backward time."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


class Site:
    """The input and output of one module call, plus rule-independent quantities derived from them.

    ``derived`` is a dict while the recorded forward is kept for later backward passes (the
    quantities then survive to the next trial) and ``None`` otherwise (computed, used, dropped).
    """

    __slots__ = ("_nonneg", "derived", "module", "name", "x", "x_shape", "x_version", "y", "y_version")

    def __init__(self, name: str, module: nn.Module, x: Tensor | None, y: Tensor | None) -> None:
        self.name = name
        self.module = module
        self.x = x
        self.x_shape = x.shape if x is not None else None
        self.x_version = x._version if x is not None else 0
        self.y = y
        self.y_version = y._version if y is not None else 0
        self.derived: dict[str, Tensor] | None = None
        self._nonneg: bool | None = None

    def input(self) -> Tensor:
        if self.x is None:
            raise RuntimeError(f"LRP: the input of {self.name!r} was not kept")
        if self.x._version != self.x_version:
            raise RuntimeError(
                f"LRP: the input of {self.name!r} was modified in place after the layer used it; "
                "the layer's relevance cannot be computed (use an out-of-place operation there)"
            )
        return self.x

    def output(self) -> Tensor:
        """The layer's output as its forward computed it; recomputed from the input when a later
        in-place operation overwrote it (e.g. ``x += identity`` on a conv output)."""
        if self.y is None or self.y._version != self.y_version:
            with torch.no_grad():
                self.y = self.module(self.input())
            self.y_version = self.y._version
        return self.y

    def nonnegative(self) -> bool:
        if self._nonneg is None:
            x = self.input()
            # a reduction, not a bool tensor: (x < 0).any() is about 10x slower on CPUs
            self._nonneg = x.numel() == 0 or not bool(x.amin() < 0)
        return self._nonneg

    def memo(self, key: str, compute: Callable[[], Tensor]) -> Tensor:
        if self.derived is None:
            return compute()
        value = self.derived.get(key)
        if value is None:
            value = self.derived[key] = compute()
        return value

    def nbytes(self) -> int:
        if not self.derived:
            return 0
        return sum(t.numel() * t.element_size() for t in self.derived.values())
