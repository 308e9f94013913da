"""An exported explainer: the versioned JSON document that describes one trial's composite, and
:func:`load_composite`, which turns it back into a zennit composite without the study.

The document (``format: xaiopt.composite``, ``version: 1``; every field in docs/export.md) holds
the trial's :class:`~xaiopt.space.ExplainerSpec`, the module names of each layer group and of the
first layer as the worker resolved them, the input bounds of the z-box rule and the epsilon of
ungrouped layers, the plugin modules that registered its non-built-in rules (to import before
loading), plus what it came from (study, trial, model, metric values, xaiopt version).

Which module gets which rule is said once, by :func:`name_rules`: the Python export writes it as
its ``NAME_MAP``, :func:`load_composite` builds its hooks from it through the rule registry. The
layers no name reaches get the worker's defaults (:class:`~xaiopt.space.composite.SpecComposite`):
Pass on activations and batch norms, Norm on sums and average pools, epsilon on conv/linear; under
the spec's base composite ``excitation_backprop``, nothing on activations and batch norms and z+ on
conv/linear.

Example::

    import torch, xaiopt
    from zennit.attribution import Gradient
    composite = xaiopt.load_composite("trial7.json", model.eval())
    with Gradient(model, composite) as attributor:
        out, relevance = attributor(x, torch.eye(4)[y])
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xaiopt.config.schema import ATTENTION_RULES, BASES
from xaiopt.errors import ConfigError, UnknownNameError
from xaiopt.space.groups import LayerGroups
from xaiopt.space.rules import RuleDef, get_rule, rule_names
from xaiopt.space.spec import UNGROUPED_EPSILON, ExplainerSpec, GroupRule

if TYPE_CHECKING:  # only the composite needs torch and zennit; writing a document does not
    from torch import nn
    from zennit.core import Composite

FORMAT = "xaiopt.composite"
VERSION = 1


@dataclass(frozen=True)
class NameRule:
    """One entry of the name map: these modules get ``rule`` (with ``value``); ``label`` says why
    (the layer group's name, or ``first layer``)."""

    label: str
    names: tuple[str, ...]
    rule: str
    value: float | None
    first: bool = False

    @property
    def field(self) -> str:
        """Where the names stand in the export document."""
        return "layers.first_layer" if self.first else f"layers.groups.{self.label}"


def name_rules(spec: ExplainerSpec, layers: LayerGroups) -> list[NameRule]:
    """Which named modules get which rule: each group's rule on its modules, the first-layer rule
    (unless ``same``) on the first layer instead of its group's. Groups without modules are left out.

    Raises :class:`ConfigError` when a group with modules has no rule in ``spec``.
    """
    entries = []
    special_first = spec.first_layer != "same" and layers.first_layer is not None
    for group, modules in layers.groups.items():
        if not modules:
            continue
        choice = spec.groups.get(group)
        if choice is None:
            raise ConfigError(f"spec.groups: layer group {group!r} has modules but no rule "
                              f"(groups with a rule: {', '.join(spec.groups) or 'none'})")
        names = tuple(m for m in modules if not (special_first and m == layers.first_layer))
        if names:
            entries.append(NameRule(group, names, choice.rule, choice.value))
    if special_first:
        entries.append(NameRule("first layer", (str(layers.first_layer),), spec.first_layer, None, first=True))
    return entries


def _plugin_rules(spec: ExplainerSpec) -> list[RuleDef]:
    names = [*(g.rule for g in spec.groups.values()), *([spec.first_layer] if spec.first_layer != "same" else [])]
    return [r for r in (get_rule(n) for n in dict.fromkeys(names)) if not r.builtin]


def plugin_modules(spec: ExplainerSpec) -> list[str]:
    """The modules that registered the rules ``spec`` names beyond the built-in ones (its plugins)."""
    return list(dict.fromkeys(r.module for r in _plugin_rules(spec)))


def plugin_imports(spec: ExplainerSpec, defined: Collection[str]) -> list[str]:
    """``from MODULE import NAME, ...`` lines for the names the export code of ``spec``'s plugin rules
    uses and a module defining ``defined`` lacks (the Python export). :class:`ConfigError` when the
    registering module does not have such a name."""
    wanted: dict[str, list[str]] = {}
    for rule in _plugin_rules(spec):
        module = sys.modules.get(rule.module)
        for name in rule.code_names():
            if name in defined:
                continue
            if module is None or not hasattr(module, name):
                raise ConfigError(f"rule {rule.name!r}: its export code {rule.code!r} uses {name!r}, which module "
                                  f"{rule.module!r} that registered it does not define (define or import it there)")
            wanted.setdefault(rule.module, []).append(name)
    return [f"from {m} import {', '.join(dict.fromkeys(names))}" for m, names in wanted.items()]


def composite_document(*, spec: ExplainerSpec, layers: LayerGroups, low: list[float], high: list[float],
                       study: str, trial: int, model: str, metrics: list[dict[str, Any]],
                       xaiopt_version: str) -> dict[str, Any]:
    """The export document of one trial (see docs/export.md); ``metrics``: ``{name, value, direction}`` each."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "xaiopt_version": xaiopt_version,
        "study": study,
        "trial": int(trial),
        "model": model,
        "explainer": spec.describe(),
        "spec": spec.to_dict(),
        "layers": {"groups": {g: list(m) for g, m in layers.groups.items()}, "first_layer": layers.first_layer},
        "input_bounds": {"low": [float(v) for v in low], "high": [float(v) for v in high]},
        "ungrouped_epsilon": UNGROUPED_EPSILON,
        "plugins": plugin_modules(spec),
        "metrics": [{"name": str(m["name"]), "value": float(m["value"]), "direction": str(m["direction"])}
                    for m in metrics],
    }


@dataclass(frozen=True)
class ExportedComposite:
    """A checked export document: what :func:`load_composite` needs, plus where it came from."""

    spec: ExplainerSpec
    layers: LayerGroups
    low: tuple[float, ...]
    high: tuple[float, ...]
    ungrouped_epsilon: float
    document: dict[str, Any]

    @classmethod
    def read(cls, source: Mapping[str, Any] | str | os.PathLike) -> ExportedComposite:
        """Parse and check a document given as a dict, JSON text or the path of a JSON file."""
        return _check(_parse(source))

    def composite(self) -> Composite:
        """A fresh zennit composite of this document (canonizing while registered, if the spec says so)."""
        import torch

        from xaiopt.space.composite import ExportedComposite as Registered

        low = torch.tensor(self.low, dtype=torch.float64).view(1, -1, 1, 1)
        high = torch.tensor(self.high, dtype=torch.float64).view(1, -1, 1, 1)
        hooks = {}
        for entry in name_rules(self.spec, self.layers):
            rule = get_rule(entry.rule)
            for name in entry.names:
                hooks[name] = rule.hook(entry.value, low=low, high=high)
        return Registered(hooks, self, canonize=self.spec.canonize)


def load_composite(spec: Mapping[str, Any] | str | os.PathLike, model: nn.Module) -> Composite:
    """The zennit composite of an exported trial (``xaiopt study export NAME --out F.json``).

    ``spec`` is the export document: a dict, its JSON text, or the path of the file. ``model`` is
    the plain model of the study (not canonized, in eval mode). Registered on it (``composite.context
    (model)``, or zennit's attributors), the composite canonizes the model with
    :class:`~xaiopt.canonize.GraphCanonizer` when the trial did, attaches the trial's rules and gives
    the trial's attributions; removed, it leaves the model computing its own function again.

    The document is checked here, and its module names against ``model`` (canonized when the spec
    says so): a mistake raises :class:`ConfigError` naming the field and what is valid.

    Example::

        composite = load_composite("trial7.json", model.eval())
        with composite.context(model) as modified:
            x.requires_grad_(True)
            out = modified(x)
            (relevance,) = torch.autograd.grad(out, x, grad_outputs=torch.eye(out.shape[1])[y] * out)
    """
    from torch import nn

    if not isinstance(model, nn.Module):
        raise ConfigError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    exported = ExportedComposite.read(spec)
    if exported.spec.attention is not None:
        raise ConfigError(f"spec.attention: {exported.spec.attention!r} is a transformer setting, which has no zennit "
                          f"composite (zennit has no rules for softmax, attention products or layer norms); load it "
                          f"with xaiopt.load_explainer(document, model)")
    composite = exported.composite()
    composite.register(model)  # checks the names on the model as it will be (canonized or not)
    composite.remove()
    return composite


def _listing(names: list[str], limit: int = 12) -> str:
    if not names:
        return "none"
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _parse(source: Mapping[str, Any] | str | os.PathLike) -> Any:
    if isinstance(source, Mapping):
        return dict(source)
    if isinstance(source, str) and source.lstrip().startswith("{"):
        return _loads(source, "spec")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"spec: {str(path)!r} is not a file (give the export document as a dict, "
                              f"its JSON text, or the path of its .json file)")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"spec: cannot read {str(path)!r} ({type(err).__name__}: {err})") from None
        return _loads(text, f"spec file {str(path)!r}")
    raise ConfigError(f"spec: expected a dict, JSON text or a path, got {type(source).__name__}")


def _loads(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{what}: not JSON ({err.msg} at line {err.lineno} column {err.colno}); "
                          f"expected an {FORMAT} document (xaiopt study export NAME --out FILE.json)") from None


def _get(doc: Mapping[str, Any], key: str, path: str, kind: type | tuple[type, ...], what: str) -> Any:
    if key not in doc:
        raise ConfigError(f"{path}: field is missing (expected {what})")
    value = doc[key]
    if not _is(value, kind):
        raise ConfigError(f"{path}: expected {what}, got {_show(value)}")
    return value


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool):
        return bool in kinds
    if float in kinds and isinstance(value, int):
        return True
    return isinstance(value, kinds)


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value: Any, path: str) -> float:
    if not _is(value, float) or not math.isfinite(float(value)):
        raise ConfigError(f"{path}: expected a finite number, got {_show(value)}")
    return float(value)


def _check(doc: Any) -> ExportedComposite:
    if not isinstance(doc, dict):
        raise ConfigError(f"spec: expected a JSON object ({FORMAT} document), got {_show(doc)}")
    fmt = _get(doc, "format", "format", str, f"{FORMAT!r}")
    if fmt != FORMAT:
        raise ConfigError(f"format: {fmt!r} is not an exported composite (valid: {FORMAT!r})")
    version = _get(doc, "version", "version", int, f"an integer, {VERSION}")
    if version != VERSION:
        raise ConfigError(f"version: {version} is not supported by xaiopt here (valid: {VERSION})")

    plugins = doc.get("plugins") or []
    if not isinstance(plugins, list) or not all(isinstance(m, str) for m in plugins):
        raise ConfigError(f"plugins: expected a list of module names, got {_show(plugins)}")
    missing = [m for m in plugins if m not in sys.modules]
    # a rule registered by a plugin exists once its module is imported; the document names the module
    hint = (f"; the document's rules come from plugin module(s) {', '.join(map(repr, missing))}: import them "
            f"before load_composite" if missing else "")
    raw = _get(doc, "spec", "spec", dict, "an object with canonize, first_layer, groups")
    canonize = _get(raw, "canonize", "spec.canonize", bool, "true or false")
    free = [r for r in rule_names() if get_rule(r).param is None]
    first_rule = _get(raw, "first_layer", "spec.first_layer", str, "a rule name or 'same'")
    if first_rule != "same":
        try:
            rule = get_rule(first_rule)
        except UnknownNameError:
            rule = None
        if rule is None or rule.param is not None:
            raise ConfigError(f"spec.first_layer: {first_rule!r} is not a first-layer rule "
                              f"(valid: same, {', '.join(free)}){hint if rule is None else ''}")
    groups: dict[str, GroupRule] = {}
    for g, choice in _get(raw, "groups", "spec.groups", dict, "an object: group -> {rule, value}").items():
        path = f"spec.groups.{g}"
        if not isinstance(choice, dict):
            raise ConfigError(f"{path}: expected an object {{rule, value}}, got {_show(choice)}")
        name = _get(choice, "rule", f"{path}.rule", str, "a rule name")
        try:
            rule = get_rule(name)
        except UnknownNameError:
            raise ConfigError(f"{path}.rule: unknown rule {name!r} (valid: {', '.join(rule_names())}){hint}") from None
        value = choice.get("value")
        if rule.param is None:
            if value is not None:
                raise ConfigError(f"{path}.value: rule {name!r} takes no parameter (valid: null), got {_show(value)}")
        elif "value" not in choice or value is None:
            raise ConfigError(f"{path}.value: rule {name!r} needs its {rule.param} (a number)")
        else:
            value = _number(value, f"{path}.value")
        groups[str(g)] = GroupRule(name, value)
    attention = raw.get("attention")
    if attention is not None and attention not in ATTENTION_RULES:
        raise ConfigError(f"spec.attention: {_show(attention)} is not an attention rule "
                          f"(valid: {', '.join(ATTENTION_RULES)}, or no key for a CNN)")
    base = raw.get("base", "lrp")
    if base not in BASES:
        raise ConfigError(f"spec.base: {_show(base)} is not a base composite (valid: {', '.join(BASES)}, or no key "
                          f"for lrp)")
    if base != "lrp" and attention is not None:
        raise ConfigError(f"spec.base: {base!r} is a CNN's base composite; a transformer's spec (spec.attention) "
                          f"takes none")
    spec = ExplainerSpec(canonize=canonize, first_layer=first_rule, groups=groups, attention=attention, base=base)

    raw_layers = _get(doc, "layers", "layers", dict, "an object with groups and first_layer")
    modules: dict[str, list[str]] = {}
    for g, names in _get(raw_layers, "groups", "layers.groups", dict, "an object: group -> module names").items():
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"layers.groups.{g}: expected a list of module names, got {_show(names)}")
        modules[str(g)] = list(names)
    first = _get(raw_layers, "first_layer", "layers.first_layer", (str, type(None)), "a module name or null")
    extra = [g for g in groups if g not in modules]
    if extra:
        raise ConfigError(f"spec.groups: {', '.join(map(repr, extra))} not in layers.groups "
                          f"(valid: {', '.join(modules) or 'none'})")
    layers = LayerGroups(groups=modules, first_layer=first, transformer=attention is not None)
    name_rules(spec, layers)  # every group with modules has a rule

    bounds = _get(doc, "input_bounds", "input_bounds", dict, "an object with low and high (one number per channel)")
    low = _get(bounds, "low", "input_bounds.low", list, "a list of numbers, one per input channel")
    high = _get(bounds, "high", "input_bounds.high", list, "a list of numbers, one per input channel")
    low = tuple(_number(v, f"input_bounds.low[{i}]") for i, v in enumerate(low))
    high = tuple(_number(v, f"input_bounds.high[{i}]") for i, v in enumerate(high))
    if not low or len(low) != len(high):
        raise ConfigError(f"input_bounds: low and high need one number per input channel each "
                          f"(got {len(low)} and {len(high)})")
    bad = [i for i, (a, b) in enumerate(zip(low, high)) if not a < b]
    if bad:
        raise ConfigError(f"input_bounds: low must be below high in every channel (not in channel {bad[0]}: "
                          f"{low[bad[0]]} >= {high[bad[0]]})")
    eps = _number(_get(doc, "ungrouped_epsilon", "ungrouped_epsilon", float, "a positive number"),
                  "ungrouped_epsilon")
    if eps <= 0:
        raise ConfigError(f"ungrouped_epsilon: must be > 0, got {eps:g}")
    return ExportedComposite(spec=spec, layers=layers, low=low, high=high, ungrouped_epsilon=eps, document=doc)
