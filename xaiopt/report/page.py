"""The HTML study report: one page that opens offline (``DIR/index.html`` and ``DIR/plotly.min.js``).

Sections: the recommendation and how it was chosen; the Pareto front (and parallel coordinates);
the profile of the recommended, compromise and baseline settings; hypervolume over trials;
parameter importance; the canonization effect; a heatmap gallery recomputed on the same images;
the study's config, trial counts and time per phase. docs/report.md explains how to read each.

Example::

    from xaiopt.report import write_report
    path = write_report(loaded, "report/", prefer=["faithfulness=2"], images=4)   # report/index.html
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import logging
import shutil
from collections import Counter
from pathlib import Path
from typing import Sequence

import plotly.graph_objects as go
import yaml
from optuna.trial import TrialState
from plotly.offline import get_plotlyjs

from xaiopt.analysis import Recommendation, recommend
from xaiopt.analysis.hypervolume import hypervolume_history
from xaiopt.analysis.render import caution
from xaiopt.config import config_to_dict
from xaiopt.errors import ConfigError
from xaiopt.files import write_atomic
from xaiopt.objective.attrs import FIDELITY_ATTR, PRUNED
from xaiopt.objective.progress import step
from xaiopt.report.canonization import better, canonization_figure, canonization_pairs, pair_title
from xaiopt.report.gallery import Gallery, heatmap_gallery
from xaiopt.report.importance import importance_figure, param_importances
from xaiopt.report.pareto_plot import parallel_figure, pareto_figure
from xaiopt.report.profile import radar_figure
from xaiopt.report.progress import hypervolume_figure
from xaiopt.report.timing import timing_figure
from xaiopt.report.view import metric_label, study_view
from xaiopt.study import LoadedStudy

log = logging.getLogger(__name__)

PLOTLY_JS = "plotly.min.js"
_CONFIG = {"displaylogo": False, "responsive": True}
# the narrowest an image column of the gallery gets before the gallery scrolls in its box
MIN_TILE = 96

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1d232b;
       background: #f6f7f9; overflow-wrap: break-word; }
header { background: #24303f; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 24px; }
header p { margin: 0; color: #c9d3df; font-size: 13px; }
nav { margin-top: 10px; font-size: 14px; }
nav a { color: #ffd866; margin-right: 14px; text-decoration: none; }
main { padding: 8px 32px 40px 32px; max-width: 1400px; }
section { background: #fff; border: 1px solid #dde2e8; border-radius: 6px; padding: 14px 22px; margin: 18px 0; }
h2 { margin: 4px 0 8px 0; font-size: 20px; }
.how { color: #4a5563; font-size: 14px; max-width: 1100px; }
.answer { background: #fff8e0; border-left: 5px solid #f2b701; padding: 10px 16px; margin: 10px 0;
          font-size: 15px; line-height: 1.45; }
.answer b.setting { font-family: ui-monospace, monospace; font-size: 13px; }
/* a table wider than the page scrolls inside its own box, never the page */
table { display: block; width: max-content; max-width: 100%; overflow-x: auto; border-collapse: collapse;
        font-size: 13px; margin: 10px 0; }
th, td { border: 1px solid #dde2e8; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eef1f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.win { background: #e3f4e1; font-weight: 600; }
td.lose { color: #8a94a3; }
tr.explainer td { border-top: none; color: #4a5563; padding-top: 0; }
code, pre { font-family: ui-monospace, monospace; font-size: 12px; }
pre { background: #f3f5f8; padding: 10px; overflow-x: auto; max-height: 420px; }
/* figures take the page's width up to their designed width (inline max-width); below a readable
   width they scroll inside their box */
.figure { margin: 8px 0 14px 0; overflow-x: auto; }
.figure .plotly-graph-div { min-width: 480px; }
.scroll { overflow-x: auto; }
.empty { color: #8a4b00; background: #fff4e5; border: 1px solid #f0c890; padding: 8px 12px; }
/* the gallery: a grid whose image columns share the width left beside the labels, each at most its
   tile's own width and at least 96 px; narrower than that, the grid scrolls inside .gallery-box */
.gallery-box { overflow-x: auto; margin: 8px 0; scroll-padding-left: 230px; }
.gallery { display: grid; gap: 4px 6px; align-items: center; justify-content: start; font-size: 13px; }
.gallery > [role=row] { display: contents; }
.gallery .cell { min-width: 0; }
.gallery .head { font-weight: 600; background: #eef1f5; padding: 4px 6px; align-self: stretch; }
.gallery .label { font-size: 12px; overflow-wrap: anywhere; position: sticky; left: 0; z-index: 1;
                  background: #fff; padding: 3px 6px 3px 0; align-self: stretch; }
.gallery .head.label { background: #eef1f5; padding-left: 6px; }
.gallery img { display: block; width: 100%; height: auto; }
.verdict-better { color: #13650e; font-weight: 600; }
.verdict-worse { color: #a0151b; font-weight: 600; }
.verdict-indistinguishable { color: #8a4b00; font-weight: 600; }
"""


def recommendation_parts(rec: Recommendation) -> tuple[str, str]:
    """The recommendation's paragraph (what is recommended, against whom, the compromise) and
    the rule that chose it, as plain text (from :meth:`Recommendation.text`)."""
    blocks = rec.text().split("\n\n")
    rule = (blocks[1].replace("\n", " ") if len(blocks) > 1 else rec.rule).removeprefix("How it was chosen: ")
    return blocks[0].replace("\n", " "), rule[:1].upper() + rule[1:]


def _figure(fig: go.Figure, name: str) -> str:
    """The figure as wide as the page allows, at most its designed ``layout.width`` (plotly sizes it
    to its box, and again when the window changes size)."""
    width = fig.layout.width
    fig = go.Figure(fig)
    fig.update_layout(width=None, autosize=True)
    div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig-{name}", config=_CONFIG)
    cap = f' style="max-width:{int(width)}px"' if width else ""
    return f'<div class="figure" data-figure="{name}"{cap}>{div}</div>'


def _empty(fig: go.Figure) -> str | None:
    meta = fig.layout.meta
    return meta.get("empty") if isinstance(meta, dict) else None


def _section(sid: str, title: str, how: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{html.escape(title)}</h2><p class="how">{how}</p>{body}</section>'


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _recommendation(rec: Recommendation) -> str:
    paragraph, rule = recommendation_parts(rec)
    best = rec.best
    head = (f'<div class="answer"><b>Recommended: trial {best.number}</b>'
            f'{" (the baseline " + html.escape(best.baseline) + ")" if best.baseline else ""}, '
            f'score {best.score:.3f} of 1 — <b class="setting">{html.escape(best.label)}</b>')
    warning = caution(rec)
    if warning is not None:
        head += f'<br><span class="verdict-indistinguishable">Caution: {html.escape(warning)}.</span>'
    if rec.compromise is not None and rec.compromise.number != best.number:
        c = rec.compromise
        head += (f'<br><b>Second answer, the compromise of the Pareto front: trial {c.number}</b> '
                 f'(distance to the ideal point {c.ideal_distance:.3f}, score {c.score:.3f}) — '
                 f'<b class="setting">{html.escape(c.label)}</b>')
    head += "</div>"
    metrics = rec.metrics
    cats = list(rec.weights)
    cols = "".join(f"<th title='{html.escape(m)}'>{html.escape(metric_label(m, rec.directions[m], short=True))}</th>"
                   for m in metrics)
    ccols = "".join(f"<th>{html.escape(c)} rank</th>" for c in cats)
    rows = [("recommended", best)] + [(f"rank {s.rank}", s) for s in rec.top[1:]]
    if rec.compromise is not None and all(s.number != rec.compromise.number for _, s in rows):
        rows.append(("compromise", rec.compromise))
    elif rec.compromise is not None:
        rows = [(r + (" · compromise" if s.number == rec.compromise.number else ""), s) for r, s in rows]
    body = []
    for role, s in rows:
        flags = " · Pareto" if s.pareto else ""
        flags += f" · baseline {html.escape(s.baseline)}" if s.baseline else ""
        vals = "".join(f'<td class="num">{_fmt(s.values[m])}</td>' for m in metrics)
        ranks = "".join(f'<td class="num">{s.category_ranks.get(c, "")} of {rec.settings}</td>' for c in cats)
        body.append(f"<tr><td>{html.escape(role)}{flags}</td><td class='num'>{s.number}</td>"
                    f"<td class='num'>{s.score:.3f}</td>{vals}{ranks}</tr><tr class='explainer'><td></td>"
                    f"<td colspan='{2 + len(metrics) + len(cats)}'><code>{html.escape(s.label)}</code></td></tr>")
    table = (f"<div class='scroll'><table><tr><th>setting</th><th>trial</th><th>score</th>{cols}{ccols}</tr>"
             f"{''.join(body)}</table></div>")
    comp = []
    for c in rec.comparisons:
        who = {"runner-up": "the runner-up", "baseline": f"the baseline {c.name}", "compromise": "the compromise"}
        if c.difference is None:
            diff = interval = "—"
        else:
            s = c.difference.score
            diff, interval = f"{s.difference:+.3f}", f"[{s.low:+.3f}, {s.high:+.3f}]"
        said = {"better": "distinguishably better", "worse": "distinguishably worse",
                "indistinguishable": "NOT distinguishable (interval contains 0)",
                "unknown": "not comparable (no per-sample scores)"}[c.verdict]
        comp.append(f"<tr><td>{html.escape(who[c.kind])}</td><td class='num'>{c.other}</td><td class='num'>{diff}"
                    f"</td><td class='num'>{interval}</td><td class='verdict-{c.verdict}'>{said}</td></tr>")
    comparisons = ""
    if comp:
        comparisons = (f"<h3>Is the recommended setting really better? (paired bootstrap, "
                       f"{rec.confidence:.0%} interval of the score difference, recommended minus other)</h3>"
                       f"<table><tr><th>against</th><th>trial</th><th>difference</th><th>interval</th>"
                       f"<th>verdict</th></tr>{''.join(comp)}</table>")
    weights = ", ".join(f"{html.escape(c)} {w:g}" for c, w in rec.weights.items())
    return (f"{head}<p>{html.escape(paragraph)}</p><p class='how'><b>How it was chosen.</b> {html.escape(rule)}"
            f"</p><p class='how'>Weights: {weights}.</p>{table}{comparisons}{_sanity(rec)}{_held_out(rec)}"
            f"<details><summary>The recommendation as text (as <code>xaiopt study recommend</code> prints it)"
            f"</summary><pre>{html.escape(rec.text())}</pre></details>")


def _sanity(rec: Recommendation) -> str:
    """Each metric against the reference explanations, and which metrics decide (xaiopt/analysis/sanity.py)."""
    check = rec.sanity
    if not check or not check["lines"]:
        return ""
    rows = []
    for m in check["metrics"]:
        interval = "" if m["low"] is None else f"[{m['low']:+.4g}, {m['high']:+.4g}]"
        random = "" if m["random"] is None else _fmt(m["random"])
        difference = "" if m["difference"] is None else f"{m['difference']:+.4g}"
        places = ", ".join(f"{html.escape(n)} {p}" for n, p in m["places"].items())
        verdict = ("<span class='verdict-indistinguishable'>flagged</span>" if m["flagged"] else
                   "<span class='verdict-better'>random ranked below</span>")
        rows.append(f"<tr><td>{html.escape(m['metric'])}</td><td class='num'>{_fmt(m['recommended'])}</td>"
                    f"<td class='num'>{random}</td><td class='num'>{difference}</td><td class='num'>{interval}</td>"
                    f"<td>{verdict}</td><td>{places} (of {m['of']})</td></tr>")
    summary = [line for line in check["lines"] if line.startswith(("Flagged", "Decided by", "No single metric"))]
    table = ("<div class='scroll'><table><tr><th>metric</th><th>recommended</th><th>random reference</th>"
             "<th>difference (better &gt; 0)</th><th>interval</th><th>verdict</th><th>places among the settings"
             f"</th></tr>{''.join(rows)}</table></div>") if rows else ""
    return ("<h3>Does each metric earn its vote? (reference explanations scored once: "
            f"{html.escape(', '.join(check['references']) or 'none')})</h3>{table}"
            + "".join(f"<p class='how'>{html.escape(line)}</p>" for line in summary))


def _held_out(rec: Recommendation) -> str:
    """The held-out check of the recommended setting (``xaiopt study validate``), when the study has one."""
    v = rec.validation
    if v is None:
        return ""
    best = next(s for s in v["settings"] if s["number"] == v["recommended"])
    rows = "".join(
        f"<tr><td>{html.escape(metric_label(m, v['directions'][m], short=False))}</td>"
        f"<td class='num'>{_fmt(best['search'][m])}</td><td class='num'>{_fmt(best['holdout'][m])}</td>"
        f"<td class='num'>{v['optimism'][m]:+.4g}</td><td class='num'>{v['shift'][m]:+.4g}</td></tr>"
        for m in v["metrics"])
    rows += (f"<tr><td>score</td><td class='num'>{best['search_score']:.3f}</td>"
             f"<td class='num'>{best['holdout_score']:.3f}</td><td class='num'>{v['score_optimism']:+.3f}</td>"
             f"<td></td></tr>")
    comp = "".join(
        f"<tr><td>{html.escape(c['name'])}</td><td class='num'>{c['other']}</td>"
        f"<td>{html.escape(c['search_verdict'])}</td><td>{html.escape(c['holdout_verdict'])}</td>"
        f"<td class='num'>{'' if c['holdout'] is None else format(c['holdout']['difference'], '+.3f')}</td></tr>"
        for c in v["comparisons"])
    agree = ", ".join(f"{html.escape(c)} {'n/a' if t is None else format(t, '+.2f')}"
                      for c, t in v["rank_agreement"].items())
    return (f"<h3>Does it hold on images the search never saw? ({v['holdout_samples']} held-out samples, "
            f"{v['search_samples']} search samples)</h3><p><b>{html.escape(v['verdict'])}</b></p>"
            f"<table><tr><th>metric</th><th>search</th><th>held-out</th><th>optimism</th><th>others' optimism</th>"
            f"</tr>{rows}</table><p class='how'>Optimism: how much better the search set made the recommended "
            f"setting look, in each metric's better direction; others: the median of the other validated settings "
            f"(what the held-out samples do to every setting). Rank agreement of search and held-out (Kendall "
            f"tau-b per category): {agree}.</p>"
            + (f"<table><tr><th>against</th><th>trial</th><th>search</th><th>held-out</th><th>held-out difference"
               f"</th></tr>{comp}</table>" if comp else ""))


def _paper_table(loaded: LoadedStudy) -> str:
    """The paper's table of this study (``xaiopt study table``), when it has a canonized / plain pair."""
    from xaiopt.analysis.table import paper_table

    if not canonization_pairs(loaded):
        return ""
    return ("<h3>As in the paper (rows: method; columns: metric, canonized no / yes; bold: the best of the "
            "column; <code>xaiopt study table</code> prints it, several studies in one)</h3>"
            + paper_table([loaded]).html())


def _canonization_table(loaded: LoadedStudy) -> str:
    view = study_view(loaded)
    parts = []
    for canon, plain in canonization_pairs(loaded):
        a, b = view.index(canon.number), view.index(plain.number)
        rows = []
        for j, (m, d) in enumerate(zip(view.metrics, view.directions)):
            va, vb = view.values[a, j], view.values[b, j]
            w = better(va, vb, d)
            ca = "win" if w > 0 else ("lose" if w < 0 else "")
            cb = "win" if w < 0 else ("lose" if w > 0 else "")
            verdict = "canonized" if w > 0 else ("plain" if w < 0 else "equal")
            way = "larger" if d == "maximize" else "smaller"
            rows.append(f"<tr><td>{html.escape(metric_label(m, d))}</td><td>{way} is better</td>"
                        f"<td class='num {ca}'>{_fmt(va)}</td><td class='num {cb}'>{_fmt(vb)}</td>"
                        f"<td>{verdict}</td></tr>")
        parts.append(f"<h3>{html.escape(pair_title(canon, plain))}</h3><table><tr><th>metric</th><th>direction</th>"
                     f"<th>canonized (trial {canon.number})</th><th>plain (trial {plain.number})</th>"
                     f"<th>better</th></tr>"
                     f"{''.join(rows)}</table>")
    return "".join(parts)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _gallery(g: Gallery) -> str:
    """The gallery as a grid: a label column, then one column per image, scaled to the page's width."""
    width, height = g.size
    columns = f"minmax(120px, 220px) repeat({len(g.columns)}, minmax({min(width, MIN_TILE)}px, {width}px))"

    def img(png: bytes, alt: str) -> str:
        return (f"<div class='cell' role='cell'><img src='{_data_uri(png)}' width='{width}' height='{height}' "
                f"alt='{html.escape(alt)}'></div>")

    def row(label: str, cells: str) -> str:
        return f"<div role='row'><div class='cell label' role='rowheader'>{label}</div>{cells}</div>"

    head = "".join(f"<div class='cell head' role='columnheader'>{html.escape(c)}</div>" for c in g.columns)
    rows = [f"<div role='row'><div class='cell head label' role='columnheader'>setting</div>{head}</div>",
            row("<b>input</b>" + (" (object mask outlined in green)" if g.masks else ""),
                "".join(img(p, c) for p, c in zip(g.inputs, g.columns)))]
    for r in g.rows:
        rows.append(row(f"<b>{html.escape(r.label)}</b><br><code>{html.escape(r.explainer)}</code>",
                        "".join(img(p, f"{r.label}, {c}") for p, c in zip(r.tiles, g.columns))))
    return (f"<div class='gallery-box'><div class='gallery' role='table' style='grid-template-columns: {columns}'>"
            f"{''.join(rows)}</div></div>")


def _study(loaded: LoadedStudy) -> str:
    trials = loaded.study.get_trials(deepcopy=False)
    states = Counter(t.state.name.lower() for t in trials)
    view = study_view(loaded)
    counts = "".join(f"<tr><td>{html.escape(k)}</td><td class='num'>{v}</td></tr>" for k, v in sorted(states.items()))
    counts += (f"<tr><td>distinct complete settings</td><td class='num'>{len(view.settings)}</td></tr>"
               f"<tr><td>repeats of a finished setting</td>"
               f"<td class='num'>{view.complete - len(view.settings)}</td></tr>")
    stages: dict[str, int] = {}
    for t in trials:
        if t.state == TrialState.PRUNED and PRUNED in t.user_attrs:
            record = t.system_attrs.get(FIDELITY_ATTR) or {}
            lost = "lost the race" if record.get("rule") == "decision" else "dominated"
            where = f" at stage {record['stage']} ({record['subset']} samples)" if "stage" in record else ""
            stages[lost + where] = stages.get(lost + where, 0) + 1
    for what, n in sorted(stages.items()):
        counts += (f"<tr><td>pruned by multi-fidelity: {what} (user attr <code>{PRUNED}</code>)"
                   f"</td><td class='num'>{n}</td></tr>")
    config = yaml.safe_dump(config_to_dict(loaded.config), sort_keys=False, allow_unicode=True)
    return (f"<table><tr><th>trials</th><th>count</th></tr>{counts}</table>"
            f"<details open><summary>Study config (YAML)</summary><pre>{html.escape(config)}</pre></details>")


def _out_dir(out_dir: str | Path) -> Path:
    """``out_dir`` checked, not yet created: it is made only once the whole report is computed, so a
    command that fails on the way (a database outage) leaves no empty directory behind."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: {out} is a file, not a directory (give a directory to hold index.html)")
    if not out.exists() and not out.resolve().parent.is_dir():
        raise ConfigError(f"--out: the parent directory {out.resolve().parent} does not exist "
                          f"(create it, or give an existing directory)")
    return out


def write_report(loaded: LoadedStudy, out_dir: str | Path, *, prefer: Sequence[str] | str | None = None,
                 images: int = 4, device: str | None = None, dashboard: bool = True, method: str = "score") -> Path:
    """Write the study report into ``out_dir`` (created if missing) and return ``out_dir/index.html``.

    ``prefer``: category weights of the recommendation (as ``xaiopt study recommend --prefer``);
    ``images``: evaluation images in the heatmap gallery (0 leaves it out); ``device``: where the
    gallery's attributions are computed (the config's when None); ``dashboard``: also publish the
    recommendation as the study's optuna-dashboard note and Pareto graph
    (:func:`xaiopt.report.dashboard.publish`).

    Example::

        write_report(load_study("quickstart", storage="sqlite:///xaiopt.db"), "report", images=4)
    """
    if images < 0:
        raise ConfigError(f"--images must be >= 0, got {images}")
    out = _out_dir(out_dir)
    n_trials = len(loaded.study.get_trials(deepcopy=False))
    step("report of study %r (%d trials): the recommendation (paired bootstrap over the samples)",
         loaded.study.study_name, n_trials)
    rec = recommend(loaded, prefer=prefer or None, method=method)
    step("figures: Pareto front, profile, hypervolume over %d distinct settings", rec.settings)
    name = loaded.study.study_name
    sections = [_section(
        "recommendation", "1. Recommendation",
        "The single setting to use, how it was chosen and how sure that choice is; the Pareto front's compromise is "
        "the second answer.", _recommendation(rec))]

    pareto, parallel = pareto_figure(loaded, rec=rec), parallel_figure(loaded, rec=rec)
    sections.append(_section(
        "front", "2. Pareto front",
        "Each point is one distinct setting (a repeat of a finished setting is not drawn). Strong red: Pareto-optimal "
        "(no other setting is at least as good on every metric and better on one); faded grey: dominated; diamonds: "
        "the enqueued baselines; gold star (a gold ring in 3-D): the recommended setting; black ring: the "
        "compromise. ↑ larger is better, ↓ smaller is better. Hover a point for its settings and every metric "
        "value. In the parallel coordinates below, every axis points up for better (minimized metrics flipped) and "
        "the colour is the recommendation score.", _figure(pareto, "pareto") + _figure(parallel, "parallel")))

    sections.append(_section(
        "profile", "3. Profile of the recommended, compromise and baseline settings",
        "Every metric normalized over the study's distinct settings as the recommendation normalizes it: 1 = the "
        "study's best on that metric, 0 = its worst, minimized metrics flipped; outward is better on every spoke.",
        _figure(radar_figure(loaded, rec=rec), "radar")))

    hv_fig = hypervolume_figure(loaded)
    hist = hypervolume_history(loaded)
    hv_how = ("How much of the objective space the settings found so far dominate, after each complete trial. "
              + html.escape(hist.caption() if hist.metrics else ""))
    sections.append(_section("hypervolume", "4. Hypervolume over trials", hv_how,
                             _empty_or_figure(hv_fig, "hypervolume")))

    step("parameter importance per metric (fANOVA over the complete trials)")
    importances = param_importances(loaded)
    imp_fig = importance_figure(loaded, importances=importances)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in importances.notes)
    sections.append(_section(
        "importance", "5. Parameter importance per metric",
        "PED-ANOVA (Optuna): how much each search parameter's values among a metric's best settings differ from its "
        "values over all settings; each column sums to 1. Conditional parameters (a rule's gamma/epsilon) are weighed "
        "over the settings where they exist. Few settings make these numbers rough.",
        _empty_or_figure(imp_fig, "importance") + (f"<ul class='how'>{notes}</ul>" if notes else "")))

    canon_fig = canonization_figure(loaded)
    sections.append(_section(
        "canonization", "6. Canonization effect",
        "Settings evaluated both with and without canonization (the same rules otherwise). Bars: each metric "
        "normalized (1 = the study's best, taller is better; a bar of height 0, the study's worst, is marked "
        "\"0\"); tables: the raw values, the better one in green.",
        _empty_or_figure(canon_fig, "canonization") + _paper_table(loaded) + _canonization_table(loaded)))

    if images > 0:
        step("heatmaps of %d images: loads the model and recomputes its attributions", images)
        gallery = heatmap_gallery(loaded, rec, images, device=device)
        sections.append(_section(
            "gallery", "7. Heatmaps on the same images",
            f"Attributions recomputed now for the first {len(gallery.columns)} evaluation images. Red: relevance "
            f"for the explained class, blue: against it, white: none; each map scaled to its own maximum "
            f"(zennit's symmetric normalization and bwr palette)."
            + (" The object mask is outlined in green." if gallery.masks else ""),
            _gallery(gallery)))

    sections.append(_section(
        "study", "8. The study: config, trials, time",
        "The configuration the study was created with, its trials by state, and where a computed trial's time "
        "goes (attribution and each metric; the median first).",
        _study(loaded) + _empty_or_figure(timing_figure(loaded), "timing")))

    published = ""
    if dashboard:
        from xaiopt.report.dashboard import publish

        step("the recommendation as the study's optuna-dashboard note, with its figure")
        try:
            publish(loaded, rec=rec)
            published = " The recommendation is also the study's note in optuna-dashboard."
        except Exception as err:  # the storage may be read-only: the report stands on its own
            log.warning("optuna-dashboard note not written: %s", err)
            published = f" (optuna-dashboard note not written: {html.escape(str(err).splitlines()[0])})"
    nav = "".join(f'<a href="#{sid}">{label}</a>' for sid, label in (
        ("recommendation", "Recommendation"), ("front", "Pareto front"), ("profile", "Profile"),
        ("hypervolume", "Hypervolume"), ("importance", "Importance"), ("canonization", "Canonization"),
        *((("gallery", "Heatmaps"),) if images > 0 else ()), ("study", "Study")))
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>xaiopt report: {html.escape(name)}"
           f"</title><style>{_CSS}</style><script src='{PLOTLY_JS}'></script></head><body><header>"
           f"<h1>xaiopt report: study {html.escape(name)}</h1><p>{rec.settings} distinct settings, "
           f"{rec.complete_trials} complete trials, {len(loaded.metric_names)} metrics; written {when}.{published}</p>"
           f"<nav>{nav}</nav></header><main>{''.join(sections)}</main></body></html>")
    made = not out.exists()
    out.mkdir(exist_ok=True)
    js = out / PLOTLY_JS
    plotly_js = get_plotlyjs()
    try:
        if not js.is_file() or js.stat().st_size != len(plotly_js.encode("utf-8")):
            write_atomic(js, plotly_js)
        return write_atomic(out / "index.html", doc)
    except BaseException:
        if made:  # a directory this call made holds a whole report or nothing (a full disk, say)
            shutil.rmtree(out, ignore_errors=True)
        raise


def _empty_or_figure(fig: go.Figure, name: str) -> str:
    reason = _empty(fig)
    if reason is not None:
        return f"<p class='empty'>Nothing to show: {html.escape(reason)}.</p>"
    return _figure(fig, name)
