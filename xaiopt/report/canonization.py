"""The canonization effect: settings evaluated both with and without canonization, side by side.

A pair is two distinct settings whose explainer specs differ only in ``canonize`` (the enqueued
baselines come in such pairs; the search may find more). For each pair the figure shows every
metric normalized as the recommendation normalizes it (1 = the study's best), so a taller bar is
better on every metric; the table gives the raw values with each metric's direction and marks
the better one. A bar of height 0 (the study's worst on that metric) carries the text ``0`` so it
does not read as a missing bar; a value that is not a number is drawn as ``n/a``.

Example::

    pairs = canonization_pairs(loaded)      # [(canonized trial, plain trial), ...]
    canonization_figure(loaded).show()
"""

from __future__ import annotations

import math

import plotly.graph_objects as go
from optuna.trial import FrozenTrial
from plotly.subplots import make_subplots

from xaiopt.analysis.table import canonize_pairs
from xaiopt.objective.attrs import baseline
from xaiopt.report.view import empty_figure, metric_label, short_name, study_view
from xaiopt.study import LoadedStudy

CANONIZED = "#1f77b4"
PLAIN = "#ff7f0e"
# the most bars side by side in one row of panels: more metrics, fewer panels per row
BARS_PER_ROW = 18


def canonization_pairs(loaded: LoadedStudy) -> list[tuple[FrozenTrial, FrozenTrial]]:
    """(canonized, plain) distinct settings whose specs differ only in ``canonize``, by trial number.

    Example::

        [(a.number, b.number) for a, b in canonization_pairs(loaded)]     # [(0, 1), (2, 3), (4, 5)]
    """
    return canonize_pairs(study_view(loaded).settings)


def pair_title(canon: FrozenTrial, plain: FrozenTrial) -> str:
    """``epsilon_plus_flat: trial 2 (canonized) vs 3 (plain)``."""
    name = (baseline(canon) or baseline(plain) or "").split(":")[0]
    head = f"{name}: " if name else ""
    return f"{head}trial {canon.number} (canonized) vs {plain.number} (plain)"


def better(value_a: float, value_b: float, direction: str) -> int:
    """+1 when a is better than b on a metric of this direction, -1 when worse, 0 when equal."""
    if math.isclose(value_a, value_b, rel_tol=1e-6, abs_tol=1e-12):
        return 0
    up = value_a > value_b
    return 1 if up == (direction == "maximize") else -1


def _zero_text(norm) -> list[str]:
    """The text on each bar: ``0`` on a bar of height 0, ``n/a`` where there is no number, else none."""
    return ["n/a" if not math.isfinite(n) else ("0" if abs(n) < 5e-3 else "") for n in norm]


def canonization_figure(loaded: LoadedStudy) -> go.Figure:
    """Grouped bars per pair: each metric normalized (1 = the study's best), canonized beside plain.

    Example::

        fig = canonization_figure(loaded)
        fig.layout.meta["pairs"]       # [[canonized trial, plain trial], ...]
        fig.data[0].text               # ('', '0', ''): the bars of height 0 say so
    """
    pairs = canonization_pairs(loaded)
    if not pairs:
        return empty_figure("no setting of this study was evaluated both with and without canonization",
                            title="Canonization effect")
    view = study_view(loaded)
    cols = max(1, min(3, len(pairs), BARS_PER_ROW // (2 * max(1, len(view.metrics)))))
    rows = math.ceil(len(pairs) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[pair_title(a, b) for a, b in pairs],
                        horizontal_spacing=0.06, vertical_spacing=0.22 if rows > 1 else 0.1, shared_yaxes=True)
    labels = [metric_label(m, d, short=True) for m, d in zip(view.metrics, view.directions)]
    for k, (canon, plain) in enumerate(pairs):
        r, c = k // cols + 1, k % cols + 1
        for t, name, colour in ((canon, "canonized", CANONIZED), (plain, "plain (not canonized)", PLAIN)):
            i = view.index(t.number)
            hover = [f"<b>{name}, trial {t.number}</b><br>{metric_label(m, d)} {v:.4g}<br>normalized {n:.2f}"
                     for m, d, v, n in zip(view.metrics, view.directions, view.values[i], view.norm[i])]
            fig.add_trace(go.Bar(x=labels, y=[n if math.isfinite(n) else 0.0 for n in view.norm[i]], name=name,
                                 marker_color=colour, legendgroup=name, showlegend=k == 0, hovertext=hover,
                                 hovertemplate="%{hovertext}<extra></extra>", text=_zero_text(view.norm[i]),
                                 textposition="outside", textfont=dict(color=colour, size=12), cliponaxis=False),
                          row=r, col=c)
    fig.update_yaxes(range=[0, 1.05], title=dict(text="normalized (1 = best)", font=dict(size=11)), col=1)
    fig.update_xaxes(tickangle=-35, tickfont=dict(size=10))
    fig.update_annotations(font=dict(size=12))
    fig.update_layout(
        title=dict(text="Canonization effect: the same rules with and without canonization (taller is better on "
                        "every metric)", font=dict(size=14)),
        barmode="group", template="plotly_white", height=380 * rows + 60, width=min(1280, 380 * cols + 330),
        margin=dict(t=110, b=80, r=200), uniformtext=dict(minsize=10, mode="show"),
        legend=dict(x=1.01, y=1.0, xanchor="left", yanchor="top", bordercolor="#ccc", borderwidth=1),
        meta={"pairs": [[a.number, b.number] for a, b in pairs],
              "abbreviations": {short_name(m): m for m in view.metrics}},
    )
    return fig
