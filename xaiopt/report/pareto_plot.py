"""Interactive plotly figures of a study's trials and Pareto front."""

from __future__ import annotations

import html
from pathlib import Path

import plotly.graph_objects as go
from optuna.trial import TrialState

from xaiopt.study import LoadedStudy

_PARETO = "#d62728"
_OTHER = "#9aa7b8"


def _trials(loaded: LoadedStudy):
    complete = loaded.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best = {t.number for t in loaded.study.best_trials} if complete else set()
    return complete, best


def _hover(t) -> str:
    base = t.user_attrs.get("baseline")
    head = f"trial {t.number}" + (f" (baseline {html.escape(base)})" if base else "")
    return f"{head}<br>{html.escape(t.user_attrs.get('explainer_text', ''))}"


def pareto_figure(loaded: LoadedStudy) -> go.Figure:
    """Every pair of metrics against each other (a scatter matrix); Pareto-optimal trials in red,
    enqueued baselines as diamonds.

    With two metrics this is the classic Pareto-front scatter; with more, each panel is one
    projection of the front. Hover shows the trial's explainer settings.
    """
    names = loaded.metric_names
    directions = [d.name.lower() for d in loaded.study.directions]
    complete, best = _trials(loaded)
    labels = [f"{n} ({'max' if d == 'maximize' else 'min'})" for n, d in zip(names, directions)]
    fig = go.Figure()
    for is_best, colour, label in ((False, _OTHER, "dominated"), (True, _PARETO, "Pareto-optimal")):
        ts = [t for t in complete if (t.number in best) == is_best]
        text = [_hover(t) for t in ts]
        symbols = ["diamond" if t.user_attrs.get("baseline") else "circle" for t in ts]
        if len(names) == 1:
            fig.add_trace(go.Scatter(x=[t.number for t in ts], y=[t.values[0] for t in ts], mode="markers",
                                     name=label, marker=dict(color=colour, size=9, symbol=symbols), text=text,
                                     hovertemplate="%{text}<br>%{y:.4g}<extra></extra>"))
        elif len(names) == 2:
            fig.add_trace(go.Scatter(x=[t.values[0] for t in ts], y=[t.values[1] for t in ts], mode="markers",
                                     name=label, marker=dict(color=colour, size=9, symbol=symbols), text=text,
                                     hovertemplate="%{text}<br>%{x:.4g}, %{y:.4g}<extra></extra>"))
        else:
            fig.add_trace(go.Splom(
                dimensions=[dict(label=lab, values=[t.values[i] for t in ts]) for i, lab in enumerate(labels)],
                name=label, text=text,
                marker=dict(color=colour, size=6, symbol=symbols, line=dict(width=0.3, color="white")),
                diagonal_visible=False, showupperhalf=False,
                hovertemplate="%{text}<extra></extra>",
            ))
    if len(names) == 1:
        fig.update_xaxes(title="trial")
        fig.update_yaxes(title=labels[0])
    elif len(names) == 2:
        fig.update_xaxes(title=labels[0])
        fig.update_yaxes(title=labels[1])
    size = max(600, 170 * len(names))
    fig.update_layout(
        title=f"Study {loaded.study.study_name}: {len(complete)} complete trials, {len(best)} Pareto-optimal",
        width=size + 150, height=size, template="plotly_white", dragmode="select", legend=dict(x=0.75, y=0.98),
    )
    return fig


def parallel_figure(loaded: LoadedStudy) -> go.Figure:
    """Parallel coordinates of the Pareto-optimal trials, one axis per metric."""
    names = loaded.metric_names
    complete, best = _trials(loaded)
    ts = [t for t in complete if t.number in best]
    dims = [dict(label=n, values=[t.values[i] for t in ts]) for i, n in enumerate(names)]
    fig = go.Figure(go.Parcoords(
        line=dict(color=[t.number for t in ts], colorscale="Viridis", showscale=True,
                  colorbar=dict(title="trial")),
        dimensions=dims,
    ))
    fig.update_layout(title="Pareto-optimal trials, one line each", template="plotly_white", height=450)
    return fig


def write_pareto_html(loaded: LoadedStudy, out: str | Path) -> Path:
    """One self-contained HTML file (plotly.js embedded: opens offline) with both figures."""
    out = Path(out)
    parts = [pareto_figure(loaded).to_html(full_html=False, include_plotlyjs=True)]
    if len(loaded.metric_names) > 2 and loaded.study.best_trials:
        parts.append(parallel_figure(loaded).to_html(full_html=False, include_plotlyjs=False))
    body = "\n".join(parts)
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>xaiopt: {html.escape(loaded.study.study_name)}"
           f"</title></head><body style='font-family:sans-serif'>{body}</body></html>")
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(doc, encoding="utf-8")
    tmp.replace(out)
    return out
