"""The memory layout a worker runs the model and the images in (``runtime.memory_format``).

On a CPU, convolutions and above all max pooling run much faster on channels-last tensors (NHWC
strides) than on the default contiguous NCHW ones: the embedded benchmark VGG's forward at 64x64 is
2.3x faster, its gradient pass 1.5x, ResNet-18's forward at 224 1.2x (one thread, this project's
2-core CI machine). Region perturbation and pixel flipping are nothing but such forwards.

Not every model runs in it: code that calls ``.view`` on an activation fails on channels-last
strides, and custom code may depend on the layout in other ways. ``auto`` therefore converts only
when the model gives the same outputs both ways on samples of the evaluation batch (measured by
running, and restored otherwise); ``channels_last`` insists (one clear error when the model fails
the check); ``contiguous`` never converts. On other devices ``auto`` keeps the layout as it is.
The two layouts sum a convolution's products in another order, so values agree to float32 rounding,
not bit for bit.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from xaiopt.errors import ConfigError

log = logging.getLogger(__name__)

CHANNELS_LAST = torch.channels_last


def _outputs(models: list[nn.Module], x: Tensor) -> list[Tensor]:
    with torch.no_grad():
        return [m(x) for m in models]


def _same(before: list[Tensor], after: list[Tensor]) -> bool:
    for a, b in zip(before, after):
        if not isinstance(b, Tensor) or a.shape != b.shape:
            return False
        scale = float(a.abs().max()) if a.numel() else 0.0
        if not torch.allclose(a, b.to(a.dtype), rtol=1e-4, atol=1e-5 * max(scale, 1.0)):
            return False
    return True


def _convert(models: list[nn.Module], fmt: torch.memory_format) -> None:
    for m in models:
        m.to(memory_format=fmt)


def choose_layout(setting: str, models: list[nn.Module], x: Tensor) -> torch.memory_format:
    """Convert ``models`` in place to the layout ``setting`` asks for and return it; ``x`` is the
    evaluation batch (converted by the caller with :func:`as_layout`)."""
    if setting == "contiguous" or x.dim() != 4:
        if setting == "channels_last":
            raise ConfigError(f"runtime.memory_format: channels_last needs images (N, C, H, W); the inputs are "
                              f"{tuple(x.shape)}; use auto or contiguous")
        return torch.contiguous_format
    if setting == "auto" and x.device.type != "cpu":
        return torch.contiguous_format
    probe = x[:2]
    before = _outputs(models, probe)
    _convert(models, CHANNELS_LAST)
    try:
        after = _outputs(models, probe.contiguous(memory_format=CHANNELS_LAST))
        problem = None if _same(before, after) else "gives other outputs"
    except Exception as err:  # the model's own code refuses the layout
        problem = f"fails ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    if problem is None:
        log.info("running the model channels-last (runtime.memory_format: %s)", setting)
        return CHANNELS_LAST
    _convert(models, torch.contiguous_format)
    if setting == "channels_last":
        raise ConfigError(f"runtime.memory_format: the model {problem} in channels_last; use auto or contiguous")
    log.info("the model %s in channels_last: running it contiguous", problem)
    return torch.contiguous_format


def as_layout(t: Tensor | None, fmt: torch.memory_format) -> Tensor | None:
    """``t`` in layout ``fmt`` (4-D tensors only; anything else unchanged)."""
    if t is None or t.dim() != 4:
        return t
    return t.contiguous(memory_format=fmt)
