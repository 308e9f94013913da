"""The trial's explainer: a zennit composite registered once, attributions computed batched."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor, nn

from xaiopt.space import ExplainerSpec, LayerGroups


class Explainer:
    """``explain(x, targets) -> (N, 1, H, W)``: LRP relevance of the target logits, channels summed.

    The relevance at the output is the target logit itself (one-hot times the logit), so for
    conservative rules the input relevance of a sample sums to its explained logit.
    Inputs are processed in chunks of ``batch_budget`` images.
    """

    def __init__(self, model: nn.Module, *, batch_budget: int):
        self.model = model
        self.batch_budget = batch_budget

    def __call__(self, x: Tensor, targets: Tensor) -> Tensor:
        return torch.cat(
            [self._explain(xc, tc) for xc, tc in zip(x.split(self.batch_budget), targets.split(self.batch_budget))]
        )

    def _explain(self, x: Tensor, targets: Tensor) -> Tensor:
        with torch.enable_grad():
            inp = x.detach().clone().requires_grad_(True)
            out = self.model(inp)
            seed = torch.zeros_like(out).scatter_(1, targets.view(-1, 1), out.gather(1, targets.view(-1, 1)).detach())
            (relevance,) = torch.autograd.grad(out, inp, grad_outputs=seed)
        return relevance.sum(dim=1, keepdim=True).detach()


@contextmanager
def explainer_for(
    spec: ExplainerSpec,
    model: nn.Module,
    layers: LayerGroups,
    *,
    low: Tensor | None,
    high: Tensor | None,
    batch_budget: int,
) -> Iterator[Explainer]:
    """Register the spec's composite on ``model`` for the duration of the block."""
    composite = spec.to_composite(layers, low=low, high=high)
    composite.register(model)
    try:
        yield Explainer(model, batch_budget=batch_budget)
    finally:
        composite.remove()
