"""What a model computes, measured by running it: batch norms and weighted layers without a module.

A canonizer's own record of what it merged can be wrong about code it did not write (a module
subclass with its own forward, a fused norm + activation, a functional convolution on a module's
parameters). The census runs one forward pass and watches every torch function call with a
``TorchFunctionMode``, while forward hooks keep the stack of modules currently running:

- a ``batch_norm`` call on the signal path (its input depends on the model input) is a batch norm
  the model still computes, named by the module whose forward ran it;
- a convolution or ``linear`` call on the signal path whose innermost running module is not a
  Conv/Linear module is a weighted layer that no LRP rule can attach to (zennit attaches rules to
  modules, by type).

Weight reparametrizations (a ``batch_norm`` of a weight, as in weight-standardized convolutions)
do not depend on the input and are not counted. Only the input is made to require gradients; the
model's parameters are frozen for the pass and restored afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode
from zennit.types import Convolution, Linear

from .inputs import Example, split

_BATCH_NORM = {F.batch_norm, torch.batch_norm, torch.native_batch_norm}
_WEIGHTED = {
    F.conv1d: "conv1d", F.conv2d: "conv2d", F.conv3d: "conv3d",
    torch.conv1d: "conv1d", torch.conv2d: "conv2d", torch.conv3d: "conv3d",
    F.conv_transpose1d: "conv_transpose1d", F.conv_transpose2d: "conv_transpose2d",
    F.conv_transpose3d: "conv_transpose3d", torch.convolution: "convolution",
    F.linear: "linear", torch.addmm: "addmm",
}


@dataclass(frozen=True)
class Census:
    """The result of one measured forward pass.

    ``batch_norms``: one entry per batch-norm call on the signal path, the name of the module whose
    forward made it (``<forward of Name>`` for the model's own forward).
    ``unhooked``: one entry per convolution/linear call on the signal path that no Conv/Linear
    module runs, as ``"<module>: conv2d"``.
    ``weighted_calls``: convolution/linear calls on the signal path (hooked or not).
    """

    batch_norms: list[str] = field(default_factory=list)
    unhooked: list[str] = field(default_factory=list)
    weighted_calls: int = 0

    @property
    def clean(self) -> bool:
        return not self.batch_norms and not self.unhooked


def _signal(args, kwargs) -> bool:
    tensor = args[0] if args else kwargs.get("input")
    return isinstance(tensor, torch.Tensor) and tensor.requires_grad


class _Watch(TorchFunctionMode):
    def __init__(self, stack: list[tuple[str, nn.Module]], root_label: str) -> None:
        super().__init__()
        self.stack = stack
        self.root_label = root_label
        self.batch_norms: list[str] = []
        self.unhooked: list[str] = []
        self.weighted = 0
        self._depth = 0

    def _where(self) -> str:
        return self.stack[-1][0] if self.stack and self.stack[-1][0] else self.root_label

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        # a function implemented by other torch functions (F.linear via addmm on some paths) is
        # one call: only the outermost counts
        if self._depth == 0:
            if func in _BATCH_NORM and _signal(args, kwargs):
                self.batch_norms.append(self._where())
            elif func is F.multi_head_attention_forward and _signal(args, kwargs):
                # its q, k, v and output projections are F.linear calls on the module's parameters
                self.weighted += 4
                self.unhooked += [f"{self._where()}: linear (multi_head_attention_forward)"] * 4
            elif func in _WEIGHTED and _signal(args, kwargs):
                self.weighted += 1
                inner = self.stack[-1][1] if self.stack else None
                if not isinstance(inner, (Convolution, Linear)):
                    self.unhooked.append(f"{self._where()}: {_WEIGHTED[func]}")
        self._depth += 1
        try:
            return func(*args, **kwargs)
        finally:
            self._depth -= 1


def census(model: nn.Module, example_input: Example) -> Census:
    """Run ``model`` once on ``example_input`` and count what it computes (see the module docstring).
    A tuple ``(x, *fixed)`` passes the fixed inputs after ``x``; only what depends on ``x`` is counted.

    Example::

        result = census(twin, x[:1])
        assert not result.batch_norms, result.batch_norms
    """
    stack: list[tuple[str, nn.Module]] = []
    handles = []

    def enter(name: str, module: nn.Module):
        def hook(mod, args):
            stack.append((name, module))
        return hook

    def leave(mod, args, output):
        stack.pop()

    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(enter(name, module)))
        handles.append(module.register_forward_hook(leave, always_call=True))
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    watch = _Watch(stack, f"<forward of {type(model).__name__}>")
    try:
        explained, fixed = split(example_input)
        x = explained.detach().clone().requires_grad_(True)
        with torch.enable_grad(), watch:
            model(x, *fixed)
    finally:
        for h in handles:
            h.remove()
        for p in frozen:
            p.requires_grad_(True)
    return Census(watch.batch_norms, watch.unhooked, watch.weighted)
