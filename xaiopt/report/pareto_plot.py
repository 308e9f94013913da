"""Interactive plotly figures of a study's Pareto front and its settings in parallel coordinates.

Every distinct complete setting is drawn once (a repeat of a finished setting is neither drawn
nor counted), so the counts in the titles are those of ``xaiopt study pareto``. Pareto-optimal
settings are strong red, dominated ones faded grey; enqueued baselines are diamonds (their own
legend entries say so); the recommended setting is a gold star, the front's compromise a black
ring. Hover shows the trial, its settings and every metric value with its direction
(↑ larger is better, ↓ smaller is better). The legend sits outside the plotting area.

Example::

    pareto_figure(loaded).show()                        # every metric: 2-D, 3-D or a scatter matrix
    pareto_figure(loaded, metrics=["sparseness", "avg_sensitivity"])
    parallel_figure(loaded).write_html("parallel.html")
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from xaiopt.analysis import Recommendation
from xaiopt.errors import ConfigError
from xaiopt.files import write_atomic
from xaiopt.report.view import StudyView, empty_figure, metric_label, short_name, study_view
from xaiopt.study import LoadedStudy

PARETO = "#d62728"
DOMINATED = "#8c99ab"
RECOMMENDED = "#f2b701"

# (legend name, which settings, marker) of each group, drawn in this order (strong ones on top)
_GROUPS = (
    ("dominated setting", lambda front, base: ~front & ~base,
     dict(color=DOMINATED, symbol="circle", size=8, opacity=0.4)),
    ("◆ baseline (reference composite), dominated", lambda front, base: ~front & base,
     dict(color=DOMINATED, symbol="diamond", size=11, opacity=0.55, line=dict(color="#44505e", width=1))),
    ("Pareto-optimal setting", lambda front, base: front & ~base,
     dict(color=PARETO, symbol="circle", size=10, opacity=1.0, line=dict(color="white", width=0.5))),
    ("◆ baseline (reference composite), Pareto-optimal", lambda front, base: front & base,
     dict(color=PARETO, symbol="diamond", size=12, opacity=1.0, line=dict(color="#5a0b0b", width=1))),
)


# the groups' legend names in a small card (optuna-dashboard's), where the long ones do not fit
_SHORT_GROUPS = {
    _GROUPS[0][0]: "dominated", _GROUPS[1][0]: "◆ baseline, dominated", _GROUPS[2][0]: "Pareto-optimal",
    _GROUPS[3][0]: "◆ baseline, Pareto-optimal",
}


def _highlights(view: StudyView, *, compact: bool = False) -> list[tuple[str, int, dict]]:
    """(legend name, setting index, marker) of the recommended and the compromise setting."""
    rec = view.rec
    if rec is None or not view.settings:
        return []
    out = []
    best = view.index(rec.best.number)
    same = rec.compromise is not None and rec.compromise.number == rec.best.number
    name = (f"recommended{' = compromise' if same else ''} (trial {rec.best.number})" if compact
            else f"recommended (trial {rec.best.number}{', also the compromise' if same else ''})")
    out.append((name, best, dict(symbol="star", size=20, color=RECOMMENDED, line=dict(color="black", width=1.5))))
    if rec.compromise is not None and not same:
        name = (f"compromise (trial {rec.compromise.number})" if compact
                else f"compromise of the front (trial {rec.compromise.number})")
        out.append((name, view.index(rec.compromise.number),
                    dict(symbol="circle-open", size=22, color="black", line=dict(color="black", width=2.5))))
    return out


def _title(view: StudyView, on: list[str]) -> str:
    dup = view.complete - len(view.settings)
    repeats = f"; {dup} repeat{'s' if dup != 1 else ''} of a finished setting not drawn" if dup else ""
    which = "" if len(on) == len(view.metrics) else f" on {', '.join(on)}"
    return (f"Study {html.escape(view.loaded.study.study_name)}: {len(view.settings)} distinct settings "
            f"({view.complete} complete trials{repeats}), {int(view.front.sum())} Pareto-optimal{html.escape(which)}")


def _drawn(view: StudyView) -> tuple[np.ndarray, str]:
    """The values as drawn: a gross outlier (beyond the scorer's fences, xaiopt/metrics/scoring.py)
    sits at its axis's edge instead of setting the axis for everyone; and the words that say so (its
    hover keeps the real value)."""
    values = view.values.copy()
    clipped = view.scorer.clipped
    if clipped is None or not clipped.any() or not len(values):
        return values, ""
    said = []
    for j in np.flatnonzero(clipped):
        low, high = view.scorer.low[j], view.scorer.high[j]
        out = [i for i in range(len(values)) if not low <= values[i, j] <= high]
        said.append(f"{short_name(view.metrics[j])} " + ", ".join(
            f"trial {view.numbers[i]} = {values[i, j]:.3g}" for i in out))
        values[:, j] = np.clip(values[:, j], low, high)
    return values, "<br><sup>outliers drawn at the axis edge (hover for the value): " + html.escape("; ".join(said)) \
        + "</sup>"


def _traces(view: StudyView, xs: np.ndarray, ys: np.ndarray | None, zs: np.ndarray | None = None, *,
            legend: bool = True, compact: bool = False) -> list:
    """The group and highlight traces for one panel (coordinates per setting)."""
    base = np.array([b is not None for b in view.baselines], dtype=bool)
    hover = np.array([view.hover(i) for i in range(len(view.settings))], dtype=object)
    numbers = np.array(view.numbers)
    out = []

    def make(name, idx, marker, group):
        common = dict(name=name, legendgroup=group, showlegend=legend, text=list(hover[idx]),
                      customdata=list(numbers[idx]), hovertemplate="%{text}<extra></extra>", mode="markers")
        if zs is not None:
            m3 = dict(marker)
            m3["size"] = max(5, int(m3.get("size", 8) * 0.75))
            m3["opacity"] = max(0.6, m3.get("opacity", 1.0))
            if m3.get("symbol") == "star":  # no star among 3-D markers: a thick gold ring
                m3.update(symbol="circle-open", size=15, color=RECOMMENDED, line=dict(color=RECOMMENDED, width=5))
            elif m3.get("symbol") == "circle-open":
                m3.update(size=20)
            return go.Scatter3d(x=xs[idx], y=ys[idx], z=zs[idx], marker=m3, **common)
        return go.Scatter(x=xs[idx], y=ys[idx], marker=marker, **common)

    for name, select, marker in _GROUPS:
        idx = np.flatnonzero(select(view.front, base))
        if len(idx):
            out.append(make(_SHORT_GROUPS[name] if compact else name, idx, marker, name))
    for name, i, marker in _highlights(view, compact=compact):
        out.append(make(name, np.array([i]), marker, name))
    return out


def pareto_figure(loaded: LoadedStudy, metrics: list[str] | None = None, *,
                  rec: Recommendation | None = None, compact: bool = False) -> go.Figure:
    """The distinct settings on ``metrics`` (default all): 2-D scatter for two, 3-D for three, a
    scatter matrix (lower triangle) for more; a trial-number axis for one.

    ``rec`` (a :func:`xaiopt.analysis.recommend` result) marks the recommended and compromise
    settings; ``layout.meta`` holds the counts drawn (``settings``, ``pareto``). ``compact``: the
    layout of a small card (optuna-dashboard's half-width, 450-px-high graph card): no fixed width,
    :data:`CARD_HEIGHT` high, a short title, short legend names in a row below the plot (in the
    scatter matrix's empty upper right).

    Example::

        fig = pareto_figure(loaded, rec=recommend(loaded))
        fig.layout.meta["pareto"] == len(front_trials(loaded))     # True
    """
    view = study_view(loaded, rec, metrics)
    on = list(loaded.metric_names) if metrics is None else list(metrics)
    if not view.settings:
        return empty_figure(f"study {loaded.study.study_name!r} has no complete trials yet", title="Pareto front")
    idx = [view.metrics.index(m) for m in on]
    labels = [metric_label(m, view.directions[i]) for m, i in zip(on, idx)]
    v, outliers = _drawn(view)
    meta = {"settings": len(view.settings), "pareto": int(view.front.sum()), "metrics": on}
    legend_right = dict(x=1.02, y=1.0, xanchor="left", yanchor="top", bgcolor="rgba(255,255,255,0.9)",
                        bordercolor="#ccc", borderwidth=1)
    fig: go.Figure
    if len(on) <= 2:
        fig = go.Figure()
        if len(on) == 1:
            xs, ys = np.array(view.numbers, dtype=float), v[:, idx[0]]
            xlab, ylab = "trial", labels[0]
        else:
            xs, ys = v[:, idx[0]], v[:, idx[1]]
            xlab, ylab = labels
        fig.add_traces(_traces(view, xs, ys, compact=compact))
        fig.update_xaxes(title=xlab)
        fig.update_yaxes(title=ylab)
        fig.update_layout(width=980, height=560, legend=legend_right, margin=dict(r=330, t=70))
    elif len(on) == 3:
        fig = go.Figure(_traces(view, v[:, idx[0]], v[:, idx[1]], v[:, idx[2]], compact=compact))
        short3 = [metric_label(m, view.directions[i], short=True) for m, i in zip(on, idx)]
        fig.update_layout(scene=dict(xaxis_title=short3[0], yaxis_title=short3[1], zaxis_title=short3[2],
                                     camera=dict(eye=dict(x=1.8, y=1.8, z=1.05))),
                          width=1100, height=720, legend=legend_right, margin=dict(r=360, t=70, l=10, b=10))
    else:
        n = len(on) - 1  # panel (r, c): y = metric r+1, x = metric c, for c <= r
        short = [metric_label(m, view.directions[i], short=True) for m, i in zip(on, idx)]
        fig = make_subplots(rows=n, cols=n, horizontal_spacing=0.025, vertical_spacing=0.025,
                            shared_xaxes="columns", shared_yaxes="rows")
        first = True
        for r in range(n):
            for c in range(n):
                if c > r:
                    continue
                for tr in _traces(view, v[:, idx[c]], v[:, idx[r + 1]], legend=first, compact=compact):
                    fig.add_trace(tr, row=r + 1, col=c + 1)
                first = False
                if r == n - 1:
                    fig.update_xaxes(title=dict(text=short[c], font=dict(size=11)), row=r + 1, col=c + 1)
                if c == 0:
                    fig.update_yaxes(title=dict(text=short[r + 1], font=dict(size=11), standoff=4), row=r + 1,
                                     col=c + 1)
        for r in range(n):
            for c in range(n):
                if c > r:
                    fig.update_xaxes(visible=False, row=r + 1, col=c + 1)
                    fig.update_yaxes(visible=False, row=r + 1, col=c + 1)
        fig.update_xaxes(tickfont=dict(size=9), nticks=4)
        fig.update_yaxes(tickfont=dict(size=9), nticks=4)
        side = 150 * n
        fig.update_layout(width=side + 110 + 340, height=side + 130, margin=dict(l=80, b=70, t=80, r=340),
                          legend=dict(x=1.01, y=1.0, xanchor="left", yanchor="top", bordercolor="#ccc",
                                      borderwidth=1, bgcolor="rgba(255,255,255,0.9)"))
        full = [f"{short_name(m)} = {m}" for m in on if short_name(m) != m]
        if full and not compact:
            fig.add_annotation(text="<br>".join(html.escape(f) for f in full), xref="paper", yref="paper",
                               x=1.01, y=0.0, xanchor="left", yanchor="bottom", showarrow=False, align="left",
                               font=dict(size=11, color="#444"), xshift=6)
    fig.update_layout(title=dict(text=_title(view, on) + outliers, font=dict(size=15)), template="plotly_white",
                      dragmode="zoom", hoverlabel=dict(align="left"), meta=meta)
    if compact:
        _card(fig, view, len(on), outliers=bool(outliers))
    return fig


CARD_HEIGHT = 440


def _card(fig: go.Figure, view: StudyView, metrics: int, *, outliers: bool) -> None:
    """Fit ``fig`` into a card about 600 px wide and 450 px high: the card's width, the legend in a
    row below the plot, small type, a short title."""
    note = "<br><sup>outliers drawn at the axis edge (hover for the value)</sup>" if outliers else ""
    top = 58 if outliers else 36
    fig.update_layout(
        width=None, height=CARD_HEIGHT, autosize=True,
        title=dict(text=f"Pareto front: {len(view.settings)} settings, {int(view.front.sum())} Pareto-optimal "
                        f"(the recommendation: Note page){note}", font=dict(size=13), x=0.01, xanchor="left",
                   y=0.98),
        legend=dict(orientation="h", x=0.0, xanchor="left", y=-0.14, yanchor="top", font=dict(size=10),
                    bgcolor="rgba(255,255,255,0)", borderwidth=0, itemsizing="constant"),
        margin=dict(l=55, r=10, t=top, b=10), font=dict(size=10),
    )
    if metrics == 3:
        fig.update_layout(margin=dict(l=0, r=0, t=top, b=0), scene=dict(domain=dict(x=[0, 1], y=[0.14, 1])),
                          legend=dict(y=0.12))
    elif metrics > 3:
        # the lower triangle leaves the upper right empty: the legend goes there
        fig.update_layout(legend=dict(orientation="v", x=1.0, xanchor="right", y=1.0, yanchor="top"),
                          margin=dict(l=55, r=10, t=top, b=45))
        fig.update_xaxes(title=dict(font=dict(size=9)), tickfont=dict(size=8))
        fig.update_yaxes(title=dict(font=dict(size=9), standoff=2), tickfont=dict(size=8))


def _nice_ticks(low: float, high: float, n: int = 5) -> np.ndarray:
    if not np.isfinite(low) or not np.isfinite(high) or high <= low:
        return np.array([low])
    step = (high - low) / n
    mag = 10 ** np.floor(np.log10(step))
    step = min((s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= step), default=step)
    ticks = np.arange(np.ceil(low / step) * step, high + step * 1e-9, step)
    # the observed ends get a tick of their own unless a round tick is already close
    ends = [e for e in (low, high) if np.abs(ticks - e).min(initial=np.inf) > 0.5 * step]
    return np.sort(np.concatenate([ticks, ends]))


def parallel_figure(loaded: LoadedStudy, *, rec: Recommendation | None = None) -> go.Figure:
    """Every distinct setting as one line across one axis per metric, coloured by its score.

    Minimized metrics are flipped (plotted as minus the value, ticks labelled with the real
    values), so up is better on every axis; the colour is the recommendation's score (1 = best
    on everything, ``rec``'s weights; equal weights when None).

    Example::

        parallel_figure(loaded, rec=recommend(loaded)).show()
    """
    view = study_view(loaded, rec)
    if not view.settings:
        return empty_figure(f"study {loaded.study.study_name!r} has no complete trials yet",
                            title="Parallel coordinates")
    dims = []
    drawn, outliers = _drawn(view)
    for j, (m, d) in enumerate(zip(view.metrics, view.directions)):
        raw = drawn[:, j]
        sign = -1.0 if d == "minimize" else 1.0
        ticks = _nice_ticks(float(raw.min()), float(raw.max()))
        label = f"{short_name(m)} ↓ (flipped)" if d == "minimize" else f"{short_name(m)} ↑"
        dims.append(dict(label=label, values=sign * raw, tickvals=sign * ticks,
                         ticktext=[f"{t:.3g}" for t in ticks]))
    fig = go.Figure(go.Parcoords(
        line=dict(color=view.score, colorscale="Viridis", cmin=0.0, cmax=1.0, showscale=True,
                  colorbar=dict(title=dict(text="score<br>(1 = best)"))),
        dimensions=dims, labelangle=0, labelfont=dict(size=12), tickfont=dict(size=10),
        customdata=view.numbers,
    ))
    fig.update_layout(
        title=dict(text=f"{len(view.settings)} distinct settings, one line each: up is better on every axis "
                        f"(minimized metrics flipped, ticks show the real values){outliers}", font=dict(size=14)),
        template="plotly_white", height=470, margin=dict(l=70, r=40, t=110, b=40),
        meta={"settings": len(view.settings), "flipped": [m for m, d in zip(view.metrics, view.directions)
                                                          if d == "minimize"]},
    )
    return fig


def write_pareto_html(loaded: LoadedStudy, out: str | Path) -> Path:
    """One self-contained HTML file (plotly.js embedded: opens offline) with the front and the
    parallel coordinates (for three metrics or more).

    Example::

        write_pareto_html(loaded, "front.html")
    """
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--out: {out} is a directory (give a FILE.html)")
    config = {"displaylogo": False}
    parts = [pareto_figure(loaded).to_html(full_html=False, include_plotlyjs=True, config=config)]
    if len(loaded.metric_names) > 2 and study_view(loaded).settings:
        parts.append(parallel_figure(loaded).to_html(full_html=False, include_plotlyjs=False, config=config))
    body = "\n".join(parts)
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>xaiopt: {html.escape(loaded.study.study_name)}"
           f"</title></head><body style='font-family:sans-serif'>{body}</body></html>")
    return write_atomic(out, doc)  # a reader never sees half a file
