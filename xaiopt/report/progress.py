"""Hypervolume over trials: how much of the (normalized) objective space the study had covered.

Example::

    hypervolume_figure(loaded).show()
"""

from __future__ import annotations

import html

import plotly.graph_objects as go

from xaiopt.analysis.hypervolume import hypervolume_history
from xaiopt.objective.attrs import baseline
from xaiopt.report.view import empty_figure
from xaiopt.study import LoadedStudy


def hypervolume_figure(loaded: LoadedStudy) -> go.Figure:
    """The hypervolume of the distinct settings finished so far after each complete trial.

    Normalization and reference point: :func:`xaiopt.analysis.hypervolume.hypervolume_history`
    (its caption is in ``layout.meta.caption``).

    Example::

        fig = hypervolume_figure(loaded)
        fig.data[0].y[-1]        # the final share of the box (1 = one setting best on every metric)
    """
    hist = hypervolume_history(loaded)
    if not hist.trials:
        return empty_figure(f"study {loaded.study.study_name!r} has no complete trials yet", title="Hypervolume")
    if not hist.metrics:
        return empty_figure("every metric is equal on every setting: no hypervolume to show", title="Hypervolume")
    trials = {t.number: t for t in loaded.study.get_trials(deepcopy=False)}
    text = [f"trial {n}" + (f" (baseline {html.escape(baseline(trials[n]))})" if baseline(trials[n]) else "")
            for n in hist.trials]
    fig = go.Figure(go.Scatter(
        x=hist.trials, y=hist.values, mode="lines+markers", line=dict(shape="hv", color="#1f77b4", width=2.5),
        marker=dict(size=6), text=text, hovertemplate="%{text}<br>hypervolume %{y:.4f}<extra></extra>",
        name="hypervolume",
    ))
    fig.update_xaxes(title="trial number")
    fig.update_yaxes(title="hypervolume (share of the box)", rangemode="tozero")
    fig.update_layout(
        title=dict(text=f"Hypervolume of the settings found so far, on {len(hist.metrics)} normalized metrics",
                   font=dict(size=14)),
        template="plotly_white", height=420, margin=dict(t=70), showlegend=False,
        meta={"caption": hist.caption(), "metrics": hist.metrics, "reference": hist.reference},
    )
    return fig
