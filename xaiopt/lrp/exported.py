"""An exported transformer setting as an explain function: :func:`load_explainer`.

A transformer's setting (``spec.attention`` in the export document) has no zennit composite: its
attention, norm and activation rules are xaiopt's engine's (docs/transformers.md). The document
then loads as an ``explain(x, targets)`` that computes the trial's attributions with the engine,
on the model canonized first when the trial was.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from xaiopt.errors import ConfigError
from xaiopt.lrp.engine import LrpExplainer
from xaiopt.space.exported import ExportedComposite, name_rules
from xaiopt.space.groups import is_weighted


class ExportedExplainer:
    """``explain(x, targets) -> (N, 1, H, W)``: the exported trial's relevance of the target logits.

    The model is canonized (:func:`xaiopt.canonize.canonize`, checked on the first batch) on the first
    call when the trial was; ``model`` itself is never changed.
    """

    def __init__(self, exported: ExportedComposite, model: nn.Module, *, batch_budget: int = 64) -> None:
        if model.training:
            raise ConfigError("model: is in training mode; call model.eval() first (as in the study)")
        self.exported = exported
        self.model = model
        self.batch_budget = batch_budget
        self._explainer: LrpExplainer | None = None
        if not exported.spec.canonize:
            self._explainer = self._build(model)

    def _build(self, model: nn.Module) -> LrpExplainer:
        modules = dict(model.named_modules())
        which = "the canonized model" if self.exported.spec.canonize else "the model"
        for entry in name_rules(self.exported.spec, self.exported.layers):
            for name in entry.names:
                if name not in modules or not is_weighted(modules[name]):
                    weighted = [n for n, m in modules.items() if is_weighted(m)]
                    raise ConfigError(f"{entry.field}: module {name!r} is not a conv/linear layer of {which} "
                                      f"(its conv/linear modules: {', '.join(weighted[:12])}"
                                      f"{', ...' if len(weighted) > 12 else ''})")
        reference = next(iter(model.parameters()), None)
        dtype = reference.dtype if reference is not None else torch.float32
        device = reference.device if reference is not None else torch.device("cpu")
        low = torch.tensor(self.exported.low, dtype=dtype, device=device).view(1, -1, 1, 1)
        high = torch.tensor(self.exported.high, dtype=dtype, device=device).view(1, -1, 1, 1)
        return LrpExplainer(self.exported.spec, model, self.exported.layers, low=low, high=high,
                            batch_budget=self.batch_budget)

    def __call__(self, x: Tensor, targets: Tensor) -> Tensor:
        if self._explainer is None:
            from xaiopt.canonize import canonize

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                twin, report = canonize(self.model, x[:1])
            if not report.ok:
                raise ConfigError(f"spec.canonize: the model could not be canonized as in the study ({report.reason})")
            self._explainer = self._build(twin)
        return self._explainer(x, targets)


def load_explainer(spec: Mapping[str, Any] | str | os.PathLike, model: nn.Module, *,
                   batch_budget: int = 64) -> ExportedExplainer:
    """The explain function of an exported transformer trial (``xaiopt study export NAME --out F.json``).

    ``spec``: the export document (dict, JSON text or path); ``model``: the study's plain model in
    eval mode. A CNN's document loads as well (the engine equals its zennit composite); for those,
    :func:`xaiopt.load_composite` gives the zennit composite itself.

    Example::

        explain = xaiopt.load_explainer("vit_trial.json", vit.eval())
        relevance = explain(x, y)          # (N, 1, H, W), the trial's attributions
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    return ExportedExplainer(ExportedComposite.read(spec), model, batch_budget=batch_budget)
