"""xaiopt's LRP engine: an ExplainerSpec's relevance in one forward and one backward.

Example::

    from xaiopt.lrp import LrpExplainer, shared_cache
    explain = LrpExplainer(spec, model, layers, low=low, high=high, batch_budget=64,
                           cache=shared_cache(1024))
    relevance = explain(x, targets)          # (N, 1, H, W), the zennit composite's values
"""

from __future__ import annotations

import weakref

import torch
from torch import Tensor, nn

from xaiopt.lrp.cache import (
    ForwardCache,
    Recorded,
    input_fingerprint,
    model_fingerprint,
)
from xaiopt.lrp.mapping import rule_table
from xaiopt.lrp.recorder import Recorder, RuleBoard, hooked_modules
from xaiopt.space import ExplainerSpec, LayerGroups


def _nbytes(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        if t is None:
            continue
        key = (t.untyped_storage().data_ptr(), t.device)
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total


def record(model: nn.Module, rules: dict, x: Tensor, *, measure: bool) -> Recorded:
    """Run the forward of ``model`` on ``x`` with relevance nodes behind every hooked module."""
    board = RuleBoard(rules)
    recorder = Recorder(model, board, hooked_modules(model, rules))
    saved: list[Tensor] = []
    try:
        with torch.enable_grad():
            inp = x.detach().clone().requires_grad_(True)
            if measure:
                def pack(t):
                    saved.append(t)
                    return t

                with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                    out = model(inp)
            else:
                out = model(inp)
    finally:
        recorder.remove()
    base = _nbytes([inp, out, *saved, *(s.x for s in recorder.sites), *(s.y for s in recorder.sites)]) if measure else 0
    return Recorded(inp=inp, out=out, board=board, sites=recorder.sites, base_bytes=base,
                    model_ref=weakref.ref(model))


def relevance_of(entry: Recorded, targets: Tensor, *, keep: bool) -> Tensor:
    """Input relevance (channels summed) of the target logits, seeded with the logits themselves."""
    out = entry.out
    t = targets.view(-1, 1).to(out.device)
    seed = torch.zeros_like(out).scatter_(1, t, out.gather(1, t).detach())
    (rel,) = torch.autograd.grad(out, entry.inp, grad_outputs=seed, retain_graph=keep)
    return rel.sum(dim=1, keepdim=True).detach()


class LrpExplainer:
    """``explain(x, targets) -> (N, 1, H, W)``: the spec's LRP relevance, in chunks of ``batch_budget``.

    With a :class:`~xaiopt.lrp.cache.ForwardCache`, a chunk whose model and input were seen before
    runs the backward only.
    """

    def __init__(self, spec: ExplainerSpec, model: nn.Module, layers: LayerGroups, *, low: Tensor | None,
                 high: Tensor | None, batch_budget: int, cache: ForwardCache | None = None) -> None:
        self.model = model
        self.rules = rule_table(spec, model, layers, low=low, high=high)
        self.batch_budget = batch_budget
        self.cache = cache if cache is not None and cache.budget_bytes > 0 else None
        self._names = tuple(self.rules)

    def __call__(self, x: Tensor, targets: Tensor) -> Tensor:
        model_key = model_fingerprint(self.model) if self.cache is not None else None
        return torch.cat([
            self._explain(xc, tc, model_key)
            for xc, tc in zip(x.split(self.batch_budget), targets.split(self.batch_budget))
        ])

    def _explain(self, x: Tensor, targets: Tensor, model_key) -> Tensor:
        cache = self.cache
        if cache is None:
            return relevance_of(record(self.model, self.rules, x, measure=False), targets, keep=False)
        key = (model_key, self._names, input_fingerprint(x))
        entry = cache.lookup(key, self.model)
        fresh = entry is None
        if fresh:
            entry = record(self.model, self.rules, x, measure=True)
            if cache.admits(entry):
                for site in entry.sites:
                    if site.x is not None:
                        site.derived = {}
            else:
                return relevance_of(entry, targets, keep=False)
        entry.board.rules = self.rules
        relevance = relevance_of(entry, targets, keep=True)
        if fresh:
            cache.store(key, entry)
        return relevance
