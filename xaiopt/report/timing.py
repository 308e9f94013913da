"""Where a trial's time goes: attribution and each metric, from the trials' recorded timings.

Example::

    timing_figure(loaded).show()
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from optuna.trial import TrialState

from xaiopt.objective.attrs import distinct_settings, timings
from xaiopt.report.view import empty_figure
from xaiopt.study import LoadedStudy

_OTHER = "other (suggest, bookkeeping)"


def phase_table(loaded: LoadedStudy) -> tuple[list[int], list[str], np.ndarray]:
    """(trial numbers, phases, seconds (T, P)) of the complete trials that computed their values
    (a repeat copies its values and records only its total)."""
    complete = [t for t in loaded.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.values is not None]
    settings = distinct_settings(complete)[0]
    rows = [(t.number, timings(t)) for t in settings]
    rows = [(n, s) for n, s in rows if "attribution" in s]
    phases = ["attribution"] + [f"metric:{m}" for m in loaded.metric_names]
    if not rows:
        return [], phases + [_OTHER], np.zeros((0, len(phases) + 1))
    table = np.array([[float(s.get(p, 0.0)) for p in phases] for _, s in rows])
    total = np.array([float(s.get("total", row.sum())) for (_, s), row in zip(rows, table)])
    other = np.maximum(total - table.sum(axis=1), 0.0)
    return [n for n, _ in rows], phases + [_OTHER], np.column_stack([table, other])


def timing_figure(loaded: LoadedStudy) -> go.Figure:
    """Stacked bars of seconds per phase: the median over the trials first, then each trial.

    Example::

        fig = timing_figure(loaded)
        fig.layout.meta["median_total"]      # median seconds of a computed trial
    """
    numbers, phases, table = phase_table(loaded)
    if not numbers:
        return empty_figure("no trial recorded its time per phase (trials written before xaiopt kept it)",
                            title="Time per trial")
    median = np.median(table, axis=0)
    x = ["median"] + [f"trial {n}" for n in numbers]
    fig = go.Figure()
    for j, p in enumerate(phases):
        y = np.concatenate([[median[j]], table[:, j]])
        name = p.removeprefix("metric:")
        fig.add_trace(go.Bar(x=x, y=y, name=name, hovertemplate=f"{name}: %{{y:.3f}} s<extra>%{{x}}</extra>"))
    fig.update_yaxes(title="seconds")
    fig.update_xaxes(tickangle=-45, tickfont=dict(size=10))
    fig.update_layout(
        title=dict(text=f"Time per computed trial by phase (median {np.median(table.sum(axis=1)):.2f} s; "
                        f"{len(numbers)} trials)", font=dict(size=14)),
        barmode="stack", template="plotly_white", height=440, margin=dict(t=70, r=260),
        legend=dict(x=1.01, y=1.0, xanchor="left", yanchor="top", bordercolor="#ccc", borderwidth=1),
        meta={"median_total": float(np.median(table.sum(axis=1))), "phases": phases, "trials": numbers},
    )
    return fig
