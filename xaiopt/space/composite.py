"""The zennit composites a spec stands for: the worker's (:class:`SpecComposite`) and an exported
document's (:class:`ExportedComposite`, what :func:`xaiopt.load_composite` returns). The one module of
the space that needs zennit at import: specs, groups and export documents are read without it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn
from zennit.core import Composite
from zennit.layer import Sum
from zennit.rules import Epsilon, Norm, Pass, ZPlus
from zennit.types import Activation, AvgPool, BatchNorm

from xaiopt.config.schema import BASES
from xaiopt.errors import ConfigError
from xaiopt.space.exported import _listing, name_rules
from xaiopt.space.groups import is_weighted
from xaiopt.space.spec import UNGROUPED_EPSILON

if TYPE_CHECKING:
    from xaiopt.space.exported import ExportedComposite as Exported


class SpecComposite(Composite):
    """Name-mapped rules for weighted layers; the base composite's defaults for the rest.

    ``base="lrp"``: zennit's usual defaults (Pass on activations and batch norms, Norm on sums and
    average pools, epsilon on other conv/linear layers). ``base="excitation_backprop"``: zennit's
    ``ExcitationBackprop`` (no hook on activations and batch norms, whose gradient then carries the
    relevance; Norm on sums and average pools; z+ on other conv/linear layers).
    """

    def __init__(self, hooks: dict, *, base: str = "lrp"):
        if base not in BASES:
            raise ValueError(f"base composite {base!r} (valid: {', '.join(BASES)})")
        self.hooks = hooks
        self.base = base
        self._pass = Pass() if base == "lrp" else None
        self._norm = Norm()
        self._ungrouped = Epsilon(epsilon=UNGROUPED_EPSILON) if base == "lrp" else ZPlus()
        super().__init__(module_map=self._map)

    def _map(self, ctx, name, module):
        hook = self.hooks.get(name)
        if hook is not None:
            return hook
        if isinstance(module, (Activation, BatchNorm)):
            return self._pass
        if isinstance(module, (Sum, AvgPool)):
            return self._norm
        if is_weighted(module):
            return self._ungrouped
        return None


class ExportedComposite(SpecComposite):
    """The worker's composite (:class:`SpecComposite`) plus the canonizer and a name check at registration."""

    def __init__(self, hooks: dict, exported: Exported, *, canonize: bool):
        super().__init__(hooks, base=exported.spec.base)
        self.exported = exported
        if exported.spec.base == "lrp":
            self._ungrouped = Epsilon(epsilon=exported.ungrouped_epsilon)
        if canonize:
            from xaiopt.canonize import GraphCanonizer

            self.canonizers = [GraphCanonizer()]

    def register(self, module: nn.Module) -> None:
        if module.training:
            raise ConfigError("model: is in training mode; call model.eval() before registering the composite "
                              "(batch norms must use their running statistics, as in the study)")
        super().register(module)
        try:
            self._check_names(module)
        except ConfigError:
            self.remove()
            raise

    def _check_names(self, module: nn.Module) -> None:
        modules = dict(module.named_modules())
        weighted = [n for n, m in modules.items() if is_weighted(m)]
        which = "the canonized model" if self.canonizers else "the model"
        for entry in name_rules(self.exported.spec, self.exported.layers):
            field = entry.field
            for name in entry.names:
                if name not in modules:
                    raise ConfigError(f"{field}: module {name!r} is not in {which} "
                                      f"(its conv/linear modules: {_listing(weighted)})")
                if not is_weighted(modules[name]):
                    raise ConfigError(f"{field}: module {name!r} of {which} is a {type(modules[name]).__name__}, "
                                      f"not a conv/linear layer (its conv/linear modules: {_listing(weighted)})")
