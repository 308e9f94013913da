"""Export a trial's explainer as a ready-to-use zennit composite (a small Python module)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from xaiopt.errors import ConfigError, StudyError
from xaiopt.objective.attrs import spec_dict
from xaiopt.space import ExplainerSpec, get_rule
from xaiopt.study.manage import BOUNDS_ATTR, FIRST_ATTR, GROUPS_ATTR, LoadedStudy

_TEMPLATE = '''"""zennit composite exported by xaiopt: study {study!r}, trial {number}.

Explainer: {text}
Metric values: {values}

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
{canon_import}
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
                (Activation, Pass()),
                (BatchNorm, Pass()),
                ((Sum, AvgPool), Norm()),
                ((Convolution, Linear), Epsilon(epsilon={ungrouped})),
            ]),
        ],
        canonizers={canonizers},
    )
'''


def export_composite(loaded: LoadedStudy, *, trial: int | None, out: str | Path, fmt: str | None = None) -> Path:
    """Write a Python module with ``make_composite()`` for a trial (default: the first Pareto-optimal one)."""
    from xaiopt.space.spec import UNGROUPED_EPSILON

    study = loaded.study
    complete = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    if trial is None:
        best = sorted(study.best_trials, key=lambda t: t.number) if complete else []
        if not best:
            raise StudyError(f"study {study.study_name!r} has no complete trial to export")
        t = best[0]
    elif trial not in complete:
        valid = ", ".join(map(str, sorted(complete))) or "none"
        raise ConfigError(f"--trial: trial {trial} of study {study.study_name!r} is not complete (complete: {valid})")
    else:
        t = complete[trial]
    spec = ExplainerSpec.from_dict(spec_dict(t))
    groups: dict[str, list[str]] = study.user_attrs[GROUPS_ATTR]
    bounds: dict[str, Any] = study.user_attrs[BOUNDS_ATTR]
    first = study.user_attrs[FIRST_ATTR]
    lines = []
    for g, mods in groups.items():
        if not mods or g not in spec.groups:
            continue
        choice = spec.groups[g]
        rule = get_rule(choice.rule)
        names = [m for m in mods if not (spec.first_layer != "same" and m == first)]
        if names:
            code = rule.code.format(param=choice.value, low="LOW", high="HIGH")
            lines.append(f"    ({tuple(names)!r}, {code}),  # {g}")
    if spec.first_layer != "same" and first is not None:
        code = get_rule(spec.first_layer).code.format(param=None, low="LOW", high="HIGH")
        lines.append(f"    (({first!r},), {code}),  # first layer")
    out = Path(out)
    if out.suffix != ".py":
        raise ConfigError(f"--out: {out} must be a .py file (it is imported as a module)")
    if not out.resolve().parent.is_dir():
        raise ConfigError(f"--out: directory {out.parent} does not exist")
    text = _TEMPLATE.format(
        study=study.study_name, number=t.number, text=spec.describe(),
        values=", ".join(f"{n}={v:.4g}" for n, v in zip(loaded.metric_names, t.values)),
        module=out.stem, model=loaded.config.model.name,
        canon_import="from xaiopt.canonize import GraphCanonizer\n" if spec.canonize else "",
        canon_doc=" (canonizes the model while registered; removed afterwards)" if spec.canonize else "",
        canonizers="[GraphCanonizer()]" if spec.canonize else "None",
        low=[float(v) for v in bounds["low"]], high=[float(v) for v in bounds["high"]],
        name_map="\n".join(lines), ungrouped=UNGROUPED_EPSILON,
    )
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out
