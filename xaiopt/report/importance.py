"""Which search parameters mattered for each metric: Optuna's PED-ANOVA importances.

PED-ANOVA (``optuna.importance.PedAnovaImportanceEvaluator``) compares the distribution of each
parameter among the best settings of a metric with its distribution over all settings; it is
deterministic (no random forest, no seed) and, in Optuna >= 4.6, handles conditional parameters
(a group's ``gamma`` exists only where its rule is ``gamma``) by weighing each regime in which
the parameter exists. The importances of a metric are normalized to sum to 1. Only distinct
settings count: a repeat of a finished setting would weigh it twice.

Example::

    imp = param_importances(loaded)
    imp.values["sparseness"]     # {'conv1.rule': 0.41, 'first_layer': 0.22, ...}
    importance_figure(loaded).show()
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import optuna
import plotly.graph_objects as go
from optuna.trial import TrialState

from xaiopt.objective.attrs import distinct_settings
from xaiopt.report.view import empty_figure, metric_label
from xaiopt.study import LoadedStudy

# PED-ANOVA contrasts the top quantile with the rest: with fewer settings the top holds one or two
MIN_SETTINGS = 10
# the evaluator's top quantile holds at least this many settings (Optuna's advice: 5 or more)
TOP = 5


@dataclass(frozen=True)
class Importances:
    """``values[metric][param]`` (each metric's importances sum to 1), or ``reason`` why there are none."""

    values: dict[str, dict[str, float]]
    params: list[str]
    settings: int
    quantile: float | None = None
    reason: str | None = None
    notes: list[str] = field(default_factory=list)


def param_importances(loaded: LoadedStudy) -> Importances:
    """PED-ANOVA importance of every search parameter for every metric (direction respected).

    Example::

        param_importances(loaded).reason     # None, or why the study cannot say (too few settings)
    """
    complete = [t for t in loaded.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.values is not None]
    settings = [t for t in distinct_settings(complete)[0] if t.distributions]
    n = len(settings)
    if n < MIN_SETTINGS:
        return Importances({}, [], n, reason=f"parameter importance needs at least {MIN_SETTINGS} distinct complete "
                                             f"settings with search parameters; this study has {n}")
    params = sorted({p for t in settings for p in t.distributions})
    varied = [p for p in params if len({repr(t.params.get(p)) for t in settings}) > 1]
    if not varied:
        return Importances({}, params, n, reason="no search parameter takes more than one value among the settings")
    directions = [d.name.lower() for d in loaded.study.directions]
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created in memory" line
    try:
        copy = optuna.create_study(directions=directions)
    finally:
        optuna.logging.set_verbosity(verbosity)
    copy.add_trials(settings)
    quantile = min(0.5, max(0.1, TOP / n))
    evaluator = optuna.importance.PedAnovaImportanceEvaluator(target_quantile=quantile)
    values: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    for j, (m, d) in enumerate(zip(loaded.metric_names, directions)):
        sign = -1.0 if d == "maximize" else 1.0  # PED-ANOVA ranks smaller targets as better

        def target(t, j=j, sign=sign):
            return sign * t.values[j]

        if len({t.values[j] for t in settings}) == 1:
            notes.append(f"{m} is equal on every setting: no parameter matters for it")
            values[m] = {p: 0.0 for p in params}
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                got = optuna.importance.get_param_importances(copy, evaluator=evaluator, target=target,
                                                              params=params, normalize=True)
        except (ValueError, RuntimeError, ZeroDivisionError) as err:
            notes.append(f"{m}: the importance evaluator failed ({err})")
            continue
        values[m] = {p: float(got.get(p, 0.0)) if math.isfinite(got.get(p, 0.0)) else 0.0 for p in params}
    if not values:
        return Importances({}, params, n, quantile, reason="; ".join(notes) or "no metric could be evaluated",
                           notes=notes)
    return Importances(values, params, n, quantile, notes=notes)


def importance_figure(loaded: LoadedStudy, *, importances: Importances | None = None) -> go.Figure:
    """Heatmap of importances: one row per search parameter, one column per metric (each column sums to 1).

    A study with too few distinct settings gets an empty figure that says why
    (``layout.meta.empty``). ``importances``: a :func:`param_importances` result to draw.

    Example::

        importance_figure(loaded).show()
    """
    imp = importances if importances is not None else param_importances(loaded)
    if imp.reason is not None:
        return empty_figure(imp.reason, title="Parameter importance")
    directions = dict(zip(loaded.metric_names, (d.name.lower() for d in loaded.study.directions)))
    metrics = list(imp.values)
    z = np.array([[imp.values[m][p] for m in metrics] for p in imp.params])
    order = np.argsort(-z.mean(axis=1), kind="stable")
    params = [imp.params[i] for i in order]
    z = z[order]
    cols = [metric_label(m, directions[m]) for m in metrics]
    fig = go.Figure(go.Heatmap(
        z=z, x=cols, y=params, colorscale="Blues", zmin=0.0, zmax=max(0.05, float(z.max())),
        text=[[f"{v:.2f}" for v in row] for row in z], texttemplate="%{text}", textfont=dict(size=10),
        colorbar=dict(title=dict(text="importance<br>(column sums to 1)")),
        hovertemplate="%{y} for %{x}: %{z:.3f}<extra></extra>",
    ))
    fig.update_yaxes(autorange="reversed", tickfont=dict(size=11))
    fig.update_xaxes(side="top", tickangle=0, tickfont=dict(size=11))
    fig.update_layout(
        title=dict(text=f"PED-ANOVA importance per metric ({imp.settings} distinct settings, top "
                        f"{imp.quantile:.0%} of each metric against all)", font=dict(size=14)),
        template="plotly_white", height=max(320, 32 * len(params) + 170), margin=dict(l=150, t=120),
        meta={"params": params, "metrics": metrics},
    )
    return fig
