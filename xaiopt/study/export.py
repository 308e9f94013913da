"""Export a trial's explainer: a Python module with ``make_composite()`` (zennit plus the canonizer; for a
transformer, LXT's patches plus ``explain()``, :mod:`xaiopt.study.export_lxt`), or a versioned JSON document
for :func:`xaiopt.load_composite` / :func:`xaiopt.load_explainer` (docs/export.md).

Example::

    loaded = load_study("quickstart", storage="sqlite:///xaiopt.db")
    export_composite(loaded, trial=7, out="trial7.json")      # or out="trial7.py"
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from xaiopt import __version__
from xaiopt.errors import ConfigError, StudyError
from xaiopt.files import write_atomic
from xaiopt.objective.attrs import spec_dict
from xaiopt.space.exported import composite_document, name_rules, plugin_imports
from xaiopt.space.groups import LayerGroups
from xaiopt.space.rules import get_rule
from xaiopt.space.spec import UNGROUPED_EPSILON, ExplainerSpec
from xaiopt.study.manage import (
    BOUNDS_ATTR,
    FIRST_ATTR,
    GROUPS_ATTR,
    TWIN_FIRST_ATTR,
    TWIN_GROUPS_ATTR,
    LoadedStudy,
)
from xaiopt.study.pareto import front_trials

# output format by the suffix of --out
FORMATS = {".py": "python", ".json": "json"}

_TEMPLATE = '''"""zennit composite exported by xaiopt: study {study}, trial {number}.

Explainer: {text}
Metric values: {values}
Requires: {requires}

Usage::

    from {module} import make_composite
    composite = make_composite()
    with composite.context(model) as modified:   # model: {model}, in eval mode
        ...                                       # e.g. zennit.attribution.Gradient(modified, composite)
"""

import torch
from zennit.composites import LayerMapComposite, MixedComposite, NameMapComposite
from zennit.layer import Sum
from zennit.rules import AlphaBeta, Epsilon, Flat, Gamma, Norm, Pass, WSquare, ZBox, ZPlus
from zennit.types import Activation, AvgPool, BatchNorm, Convolution, Linear
{canon_import}{plugin_import}
LOW = torch.tensor({low}).view(1, -1, 1, 1)
HIGH = torch.tensor({high}).view(1, -1, 1, 1)

NAME_MAP = [
{name_map}
]


def make_composite():
    """The composite of trial {number}{canon_doc}."""
    return MixedComposite(
        [
            NameMapComposite([(names, rule) for names, rule in NAME_MAP]),
            LayerMapComposite([
{base_map}
            ]),
        ],
        canonizers={canonizers},
    )
'''


def export_composite(loaded: LoadedStudy, *, trial: int | None, out: str | Path, fmt: str | None = None) -> Path:
    """Write trial ``trial``'s explainer to ``out`` and return the path.

    ``fmt``: ``python`` (a module with ``make_composite()``) or ``json`` (an ``xaiopt.composite``
    document); None takes it from the suffix of ``out`` (``.py`` / ``.json``). ``trial=None`` takes
    the first Pareto-optimal distinct setting (the CLI passes the recommended one). The file is
    written whole or not at all.
    """
    out = Path(out)
    fmt = output_format(out, fmt)
    if not out.resolve().parent.is_dir():
        raise ConfigError(f"--out: directory {out.parent} does not exist")
    t = _chosen_trial(loaded, trial)
    raw = spec_dict(t)
    if raw is None:
        raise StudyError(f"trial {t.number} of study {loaded.study.study_name!r} recorded no explainer")
    spec = ExplainerSpec.from_dict(raw)
    activations: tuple[str, ...] = ()
    if spec.attention is not None and fmt != "json":
        # a transformer setting is written as an LXT module where LXT can express it (docs/export.md)
        from xaiopt.study.export_lxt import lxt_refusal

        why, activations = lxt_refusal(loaded.config.model, spec)
        if why is not None:
            raise ConfigError(f"--out: trial {t.number} ({spec.describe()}) has no LXT module to write as Python: "
                              f"{why}; export it as JSON (--out F.json) and load it with "
                              f"xaiopt.load_explainer(document, model)")
    study = loaded.study
    layers = study_layers(loaded, canonized=spec.canonize)
    bounds: dict[str, Any] = study.user_attrs[BOUNDS_ATTR]
    if fmt == "json":
        directions = [d.name.lower() for d in study.directions]
        metrics = [{"name": n, "value": v, "direction": d}
                   for n, v, d in zip(loaded.metric_names, t.values, directions)]
        doc = composite_document(spec=spec, layers=layers, low=bounds["low"], high=bounds["high"],
                                 study=study.study_name, trial=t.number, model=loaded.config.model.name,
                                 metrics=metrics, xaiopt_version=__version__)
        text = json.dumps(doc, indent=2, allow_nan=False) + "\n"
    elif spec.attention is not None:
        from xaiopt.study.export_lxt import lxt_source

        text = lxt_source(spec, layers, low=bounds["low"], high=bounds["high"],
                          header=_header_fields(loaded, t, spec, out), activations=activations)
    else:
        text = _python_module(loaded, t, spec, layers, bounds, out)
    write_atomic(out, text)
    return out


def study_layers(loaded: LoadedStudy, *, canonized: bool) -> LayerGroups:
    """The module names a trial's rules sit on: the canonized twin's for canonize: true trials (studies
    created before the twin's names were stored fall back to the plain model's, equal for in-place merges)."""
    attrs = loaded.study.user_attrs
    if canonized and attrs.get(TWIN_GROUPS_ATTR) is not None:
        return LayerGroups(groups=attrs[TWIN_GROUPS_ATTR], first_layer=attrs[TWIN_FIRST_ATTR])
    return LayerGroups(groups=attrs[GROUPS_ATTR], first_layer=attrs[FIRST_ATTR])


def output_format(out: Path, fmt: str | None) -> str:
    """``python`` or ``json``: ``fmt`` if given (and agreeing with the suffix), else the suffix's."""
    valid = ", ".join(f"{s} ({f})" for s, f in FORMATS.items())
    by_suffix = FORMATS.get(out.suffix)
    if fmt is not None and fmt not in FORMATS.values():
        raise ConfigError(f"--format: {fmt!r} is not an export format (valid: {', '.join(FORMATS.values())})")
    if by_suffix is None:
        raise ConfigError(f"--out: {out.name!r} has no export suffix (valid: {valid})")
    if fmt is not None and fmt != by_suffix:
        raise ConfigError(f"--format {fmt} does not match --out {out.name!r} "
                          f"(a {by_suffix} file; valid pairs: {valid})")
    return by_suffix


def _chosen_trial(loaded: LoadedStudy, trial: int | None) -> FrozenTrial:
    study = loaded.study
    complete = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    if trial is None:
        front = front_trials(loaded) if complete else []
        if not front:
            raise StudyError(f"study {study.study_name!r} has no complete trial to export")
        return front[0]
    if trial not in complete:
        valid = ", ".join(map(str, sorted(complete))) or "none"
        raise ConfigError(f"--trial: trial {trial} of study {study.study_name!r} is not complete (complete: {valid})")
    return complete[trial]


def _in_docstring(text: str) -> str:
    """``text`` as it must be written inside the module's docstring for ``__doc__`` to read it back:
    a study, metric or file name holding ``\"\"\"`` or a backslash would otherwise end the docstring
    early, and what followed would run as code when the module is imported."""
    out = []
    for ch in text:
        if ch in '\\"':
            out.append("\\" + ch)
        elif ch != "\n" and (ord(ch) < 32 or ord(ch) == 127):
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def _in_comment(text: str) -> str:
    """``text`` on one comment line (a module name may hold a newline; the next line would be code)."""
    return text.encode("unicode_escape").decode("ascii")


def _header_fields(loaded: LoadedStudy, t: FrozenTrial, spec: ExplainerSpec, out: Path) -> dict[str, Any]:
    """What the exported module's docstring says of its trial, escaped for the docstring."""
    return dict(
        study=_in_docstring(repr(loaded.study.study_name)), number=t.number, text=_in_docstring(spec.describe()),
        values=_in_docstring(", ".join(f"{n}={v:.4g}" for n, v in zip(loaded.metric_names, t.values))),
        module=_in_docstring(out.stem), model=_in_docstring(loaded.config.model.name),
    )


def _python_module(loaded: LoadedStudy, t: FrozenTrial, spec: ExplainerSpec, layers: LayerGroups,
                   bounds: dict[str, Any], out: Path) -> str:
    lines = []
    for entry in name_rules(spec, layers):
        code = get_rule(entry.rule).code.format(param=entry.value, low="LOW", high="HIGH")
        lines.append(f"    ({entry.names!r}, {code}),  # {_in_comment(entry.label)}")
    fields = dict(
        **_header_fields(loaded, t, spec, out),
        canon_import="from xaiopt.canonize import GraphCanonizer\n" if spec.canonize else "",
        canon_doc=" (canonizes the model while registered; removed afterwards)" if spec.canonize else "",
        canonizers="[GraphCanonizer()]" if spec.canonize else "None",
        low=[float(v) for v in bounds["low"]], high=[float(v) for v in bounds["high"]],
        name_map="\n".join(lines), base_map=_base_map(spec.base),
    )
    # a plugin's rule is built by names of its own module: import those the module above lacks
    defined = _defined_names(_TEMPLATE.format(**fields, plugin_import="", requires=""))
    plugins = plugin_imports(spec, defined)
    imports = "".join(f"{line}\n" for line in plugins)
    return _TEMPLATE.format(**fields, plugin_import=imports, requires=_requires(spec.canonize, plugins))


def _base_map(base: str) -> str:
    """The layer map of the layers no name reaches: the spec's base composite (SpecComposite's)."""
    if base == "excitation_backprop":
        rows = ["# Excitation Backprop: no rule on activations and batch norms (their gradient carries the relevance)",
                "((Sum, AvgPool), Norm()),", "((Convolution, Linear), ZPlus()),"]
    else:
        rows = ["(Activation, Pass()),", "(BatchNorm, Pass()),", "((Sum, AvgPool), Norm()),",
                f"((Convolution, Linear), Epsilon(epsilon={UNGROUPED_EPSILON})),"]
    return "\n".join(" " * 16 + row for row in rows)


def _requires(canonized: bool, plugin_lines: list[str]) -> str:
    """What the exported module imports, said plainly in its docstring."""
    needs = ["torch", "zennit"]
    if canonized:
        needs.append("xaiopt (its GraphCanonizer canonizes the model while the composite is registered)")
    modules = sorted({line.split()[1] for line in plugin_lines if line.startswith(("from ", "import "))})
    if modules:
        needs.append(f"the plugin module{'s' if len(modules) > 1 else ''} {', '.join(modules)}")
    return _in_docstring(", ".join(needs[:-1]) + " and " + needs[-1])


def _defined_names(source: str) -> set[str]:
    """The module-level names a Python module's imports and assignments bind."""
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
    return names
