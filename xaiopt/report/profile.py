"""Radar profile: the normalized metrics of the recommended, the compromise and every baseline setting.

Each metric is normalized as the recommendation normalizes it (min-max over the study's
distinct complete settings, minimized metrics flipped): 1 is the study's best on that metric,
0 its worst, so a larger polygon is better everywhere.

Example::

    radar_figure(loaded, rec=recommend(loaded)).show()
"""

from __future__ import annotations

import plotly.graph_objects as go

from xaiopt.analysis import Recommendation, recommend
from xaiopt.report.view import empty_figure, metric_label, study_view
from xaiopt.study import LoadedStudy

_PALETTE = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22")


def profile_rows(loaded: LoadedStudy, rec: Recommendation) -> list[tuple[str, int]]:
    """(role, trial number) of the recommended, the compromise (when another) and each baseline setting."""
    rows = [("recommended", rec.best.number)]
    if rec.compromise is not None and rec.compromise.number != rec.best.number:
        rows.append(("compromise", rec.compromise.number))
    view = study_view(loaded, rec)
    for t, b in zip(view.settings, view.baselines):
        if b is not None and t.number not in {n for _, n in rows}:
            rows.append((f"baseline {b}", t.number))
    return rows


def radar_figure(loaded: LoadedStudy, rec: Recommendation | None = None) -> go.Figure:
    """Scatterpolar of normalized metrics (1 = best) for the recommended, compromise and baseline settings.

    ``rec``: the recommendation to show (computed with equal weights when None).

    Example::

        fig = radar_figure(loaded)
        fig.data[0].r        # the recommended setting's normalized metrics, 1 = the study's best
    """
    if not study_view(loaded).settings:
        return empty_figure(f"study {loaded.study.study_name!r} has no complete trials yet", title="Profile")
    rec = rec if rec is not None else recommend(loaded)
    view = study_view(loaded, rec)
    theta = [metric_label(m, d) for m, d in zip(view.metrics, view.directions)]
    fig = go.Figure()
    for k, (role, number) in enumerate(profile_rows(loaded, rec)):
        i = view.index(number)
        r = list(view.norm[i])
        strong = role == "recommended"
        colour = "#f2b701" if strong else ("#000000" if role == "compromise" else _PALETTE[k % len(_PALETTE)])
        raw = "<br>".join(f"{lab}: {v:.4g} (normalized {n:.2f})" for lab, v, n in zip(theta, view.values[i], r))
        fig.add_trace(go.Scatterpolar(
            r=r + r[:1], theta=theta + theta[:1], name=f"{role} (trial {number})", mode="lines+markers",
            line=dict(color=colour, width=4 if strong else 2, dash="dash" if role == "compromise" else "solid"),
            fill="toself" if strong else "none", opacity=1.0 if strong or role == "compromise" else 0.8,
            hovertemplate=f"<b>{role}, trial {number}</b><br>{raw}<extra></extra>",
        ))
    fig.update_layout(
        title=dict(text="Normalized metrics: 1 = the study's best on that metric, 0 = its worst "
                        "(↓ metrics flipped, so outward is better everywhere)", font=dict(size=14)),
        polar=dict(radialaxis=dict(range=[0, 1], tickvals=[0, 0.25, 0.5, 0.75, 1], angle=90, tickfont=dict(size=9)),
                   angularaxis=dict(tickfont=dict(size=12))),
        template="plotly_white", height=560, width=980, margin=dict(l=90, r=330, t=90, b=50),
        legend=dict(x=1.05, y=1.0, xanchor="left", yanchor="top", bordercolor="#ccc", borderwidth=1),
        meta={"rows": [n for _, n in profile_rows(loaded, rec)]},
    )
    return fig
