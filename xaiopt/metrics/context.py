"""What a metric gets to see: the trial's attributions plus the worker's cached benchmark."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

ExplainFn = Callable[[Tensor, Tensor], Tensor]
ExplainWithFn = Callable[[nn.Module, Tensor, Tensor], Tensor]


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

    @property
    def device(self) -> torch.device:
        return self.x.device

    @property
    def n(self) -> int:
        return int(self.x.shape[0])
