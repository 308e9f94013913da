"""The trial's explainer: LRP attributions of an ExplainerSpec, computed batched.

Two engines give the same relevance (float64: within 1e-10 of the largest value, tests/lrp):
``xaiopt`` (default; :mod:`xaiopt.lrp`, one forward and one backward, forward state kept across
trials within ``lrp_cache_mb``) and ``zennit`` (the spec's zennit composite registered on the model,
the reference and the export format).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from xaiopt.errors import ConfigError
from xaiopt.lrp import RULES, LrpExplainer, shared_cache
from xaiopt.lrp.engine import INPUT, called_once, concat_chunks, layer_names, relevances, sample_chunks
from xaiopt.lrp.mapping import named_rules
from xaiopt.space import ExplainerSpec, LayerGroups

logger = logging.getLogger(__name__)

ENGINES = ("xaiopt", "zennit")


class Explainer:
    """``explain(x, targets) -> (N, 1, H, W)``: LRP relevance of the target logits, channels summed.

    The relevance at the output is the target logit itself (one-hot times the logit), so for
    conservative rules the input relevance of a sample sums to its explained logit.
    Inputs are processed in chunks of ``batch_budget`` images. ``what`` names the model in errors
    (``the canonized twin`` for a canonized spec).
    """

    def __init__(self, model: nn.Module, *, batch_budget: int, what: str = "the model"):
        self.model = model
        self.batch_budget = batch_budget
        self._what = what

    def __call__(self, x: Tensor, targets: Tensor, fixed: tuple[Tensor, ...] = ()) -> Tensor:
        """``fixed``: the model's inputs after ``x``, one row per sample (as :class:`LrpExplainer`)."""
        return self._run(x, targets, (), fixed)[INPUT]

    def relevance_at(self, x: Tensor, targets: Tensor, layers: Sequence[str],
                     fixed: tuple[Tensor, ...] = ()) -> dict[str, Tensor]:
        """Relevance at the outputs of the modules named ``layers``, plus the input relevance under
        ``"input"``; the same contract as :meth:`xaiopt.lrp.LrpExplainer.relevance_at`."""
        return self._run(x, targets, layer_names(self.model, layers, what=self._what), fixed)

    def _run(self, x: Tensor, targets: Tensor, watch: tuple[str, ...],
             fixed: tuple[Tensor, ...] = ()) -> dict[str, Tensor]:
        return concat_chunks([self._explain(xc, tc, watch, fc)
                              for xc, tc, fc in sample_chunks(x, targets, fixed, self.batch_budget)])

    def _explain(self, x: Tensor, targets: Tensor, watch: tuple[str, ...],
                 fixed: tuple[Tensor, ...] = ()) -> dict[str, Tensor]:
        outputs: dict[str, list] = {name: [] for name in watch}
        # registered after the composite's hooks: they see the output the rest of the graph consumes
        handles = [self.model.get_submodule(name).register_forward_hook(
            lambda module, args, output, into=outputs[name]: into.append(output)) for name in watch]
        try:
            with torch.enable_grad():
                inp = x.detach().clone().requires_grad_(True)
                out = self.model(inp, *fixed)
        finally:
            for handle in handles:
                handle.remove()
        return relevances(out, inp, called_once(outputs, what=self._what), targets, keep=False)


def _engine_covers(spec: ExplainerSpec, layers: LayerGroups, low, high) -> bool:
    """Whether every rule the spec names has an implementation in :mod:`xaiopt.lrp` (a plugin's
    own rule exists only as a zennit hook)."""
    return all(rule in RULES for rule, _ in named_rules(spec, layers, low=low, high=high).values())


@contextmanager
def explainer_for(
    spec: ExplainerSpec,
    model: nn.Module,
    layers: LayerGroups,
    *,
    low: Tensor | None,
    high: Tensor | None,
    batch_budget: int,
    engine: str = "xaiopt",
    lrp_cache_mb: float = 0.0,
) -> Iterator[Explainer | LrpExplainer]:
    """An ``explain(x, targets)`` for ``spec`` on ``model`` for the duration of the block.

    ``engine="xaiopt"``: xaiopt's LRP engine, recorded forwards kept in the process-wide
    :func:`~xaiopt.lrp.shared_cache` within ``lrp_cache_mb`` (0: none kept); a spec naming a rule the
    engine lacks (a plugin's) runs under zennit. ``engine="zennit"``: the spec's zennit composite,
    registered on ``model`` until the block ends.

    Both explainers also give the relevance at chosen modules' outputs, ``explain.relevance_at(x,
    targets, layers=[...])``: names of ``model``'s modules (for a canonized spec ``model`` is the
    canonized twin, which keeps the names of the modules it does not merge away; a name it lacks is
    a one-line :class:`ConfigError`).

    Example::

        with explainer_for(spec, model, layers, low=low, high=high, batch_budget=64) as explain:
            relevance = explain(x, targets)   # (N, 1, H, W)
            at = explain.relevance_at(x, targets, layers=["features.10"])   # {"features.10": ..., "input": ...}
    """
    if engine not in ENGINES:
        raise ConfigError(f"runtime.engine: unknown LRP engine {engine!r} (valid: {', '.join(ENGINES)})")
    if spec.attention is not None:
        # zennit has no rules for attention, norms or products of activations: transformers are explained
        # by xaiopt's engine only (equal to LXT's AttnLRP / CP-LRP, tests/lrp/test_transformer_vs_lxt.py)
        if engine != "xaiopt":
            raise ConfigError("runtime.engine: zennit cannot explain a transformer (no rules for softmax, "
                              "attention products or layer norms); use runtime.engine: xaiopt")
        if not _engine_covers(spec, layers, low, high):
            raise ConfigError(f"space.rules: {spec.describe()} names a plugin rule, which exists only as a zennit "
                              f"hook; a transformer is explained by xaiopt's engine alone (valid: the built-in rules)")
    if engine == "xaiopt":
        if _engine_covers(spec, layers, low, high):
            cache = shared_cache(lrp_cache_mb) if lrp_cache_mb > 0 else None
            yield LrpExplainer(spec, model, layers, low=low, high=high, batch_budget=batch_budget, cache=cache)
            return
        logger.debug("LRP engine: %s names a rule without an engine implementation; using zennit", spec.describe())
    composite = spec.to_composite(layers, low=low, high=high)
    composite.register(model)
    try:
        yield Explainer(model, batch_budget=batch_budget, what="the canonized twin" if spec.canonize else "the model")
    finally:
        composite.remove()
