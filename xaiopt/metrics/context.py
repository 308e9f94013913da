"""What a metric gets to see: the trial's attributions plus the worker's cached benchmark."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

# explain(x, targets), and explain(x, targets, fixed=...) for a model with fixed inputs
ExplainFn = Callable[..., Tensor]
ExplainWithFn = Callable[..., Tensor]


def call_explain(fn: Callable[..., Tensor], *args: Any, fixed: tuple[Tensor, ...]) -> Tensor:
    """``fn(*args, fixed=fixed)`` for a model with fixed inputs, else ``fn(*args)``: an explain function
    of a model of the image alone may take its two (or three) arguments only."""
    return fn(*args, fixed=fixed) if fixed else fn(*args)


@dataclass
class MetricContext:
    """Everything a metric needs for one trial; see docs/contracts.md (metrics -> objective).

    Example::

        ctx = MetricContext(model=model, x=x, y=y, masks=masks, logits=model(x),
                            attributions=a, explain=explain, seed=0, cache={}, batch_budget=256)
        scores = get_metric("sparseness")(ctx)
    """

    model: nn.Module
    x: Tensor
    y: Tensor
    masks: Optional[Tensor]
    logits: Tensor
    attributions: Tensor
    explain: ExplainFn
    seed: int = 0
    cache: dict[Any, Any] = field(default_factory=dict)
    batch_budget: int = 256
    # Optional: the trial's explainer applied to another model (a randomised copy of
    # ctx.model); only `mprt` needs it and raises a clear error when it is absent.
    explain_with: Optional[ExplainWithFn] = None
    # megabytes of occlusion scores kept in ``cache`` across trials (xaiopt/metrics/score_memo.py);
    # 0: every occluded image is forwarded
    score_cache_mb: float = 0.0
    # the model's inputs after x, one row per sample (a VQA model's questions): every forward and
    # explanation of rows derived from sample i gets row i of each (``rows``, ``forward``, ``explain_rows``)
    fixed: tuple[Tensor, ...] = ()

    @property
    def device(self) -> torch.device:
        return self.x.device

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def rows(self, index: Tensor | slice) -> tuple[Tensor, ...]:
        """The fixed inputs of the samples ``index`` (one per row of a batch built from them)."""
        return tuple(f[index] for f in self.fixed)

    def forward(self, images: Tensor, index: Tensor | slice) -> Tensor:
        """``model(images, *fixed inputs of index)``: the logits of images derived from samples ``index``."""
        return self.model(images, *self.rows(index))

    def explain_rows(self, images: Tensor, targets: Tensor, index: Tensor | slice) -> Tensor:
        """``explain`` of images derived from samples ``index``, with their fixed inputs."""
        return call_explain(self.explain, images, targets, fixed=self.rows(index))
