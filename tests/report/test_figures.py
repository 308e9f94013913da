"""Figures on a constructed study with one maximized and one minimized metric, answers by hand."""

from __future__ import annotations

import numpy as np
import pytest

from xaiopt.analysis import recommend
from xaiopt.analysis.hypervolume import hypervolume_history
from xaiopt.errors import ConfigError
from xaiopt.report import (
    canonization_figure,
    canonization_pairs,
    hypervolume_figure,
    importance_figure,
    parallel_figure,
    pareto_figure,
    publish,
    radar_figure,
    timing_figure,
    write_report,
)
from xaiopt.report.canonization import better
from xaiopt.report.dashboard import PARETO_GRAPH_ID
from xaiopt.report.timing import phase_table
from xaiopt.study.pareto import distinct_complete, front_trials

from .conftest import build

# normalized (1 = best) by hand: sparseness (x - 0.2) / 0.8, avg_sensitivity (4 - x) / 3
NORM = {0: [0.0, 1 / 3], 1: [0.75, 1.0], 2: [0.375, 2 / 3], 4: [1.0, 0.0]}
SCORE = {n: float(np.mean(v)) for n, v in NORM.items()}  # complexity and robustness, equal weights


def _groups(fig):
    """The setting traces (not the recommended/compromise highlights) by legend name."""
    return {t.name: t for t in fig.data if not t.name.startswith(("recommended", "compromise"))}


def test_pareto_counts_agree_with_the_front_and_leave_repeats_out(two_way):
    rec = recommend(two_way)
    fig = pareto_figure(two_way, rec=rec)
    groups = _groups(fig)
    drawn = sorted(n for t in groups.values() for n in t.customdata)
    assert drawn == [t.number for t in distinct_complete(two_way)] == [0, 1, 2, 4]  # trial 3 repeats trial 1
    pareto = sorted(n for name, t in groups.items() if "Pareto-optimal" in name for n in t.customdata)
    assert pareto == [t.number for t in front_trials(two_way)] == [1, 4]
    assert fig.layout.meta["settings"] == 4 and fig.layout.meta["pareto"] == 2
    assert "4 distinct settings (5 complete trials; 1 repeat" in fig.layout.title.text


def test_pareto_marks_baselines_in_the_legend_and_hover_shows_every_metric(two_way):
    fig = pareto_figure(two_way, rec=recommend(two_way))
    groups = _groups(fig)
    base = [t for name, t in groups.items() if "baseline" in name]
    assert sorted(n for t in base for n in t.customdata) == [0, 2]
    assert all(t.marker.symbol == "diamond" for t in base) and all(t.showlegend is not False for t in base)
    assert all(t.marker.symbol == "circle" for name, t in groups.items() if "baseline" not in name)
    assert fig.layout.legend.x > 1  # outside the plotting area
    star = [t for t in fig.data if t.name.startswith("recommended")]
    assert len(star) == 1 and list(star[0].customdata) == [1] and "also the compromise" in star[0].name
    text = dict(zip(groups["Pareto-optimal setting"].customdata, groups["Pareto-optimal setting"].text))
    assert "sparseness ↑ 0.8" in text[1] and "avg_sensitivity ↓ 1<" in text[1] + "<"
    # axes: x sparseness (maximized), y avg_sensitivity (minimized), real values
    assert "sparseness ↑" in fig.layout.xaxis.title.text and "avg_sensitivity ↓" in fig.layout.yaxis.title.text


def test_pareto_on_chosen_metrics_and_three_or_more(url):
    metrics = ["sparseness", "avg_sensitivity", "relevance_mass_accuracy", "random_logit"]
    rows = [dict(values=[0.2, 3.0, 0.5, 0.9]), dict(values=[0.8, 1.0, 0.4, 0.8]), dict(values=[0.5, 2.0, 0.6, 0.7]),
            dict(values=[0.9, 1.5, 0.3, 0.95])]
    loaded = build(url, metrics, rows)
    three = pareto_figure(loaded, metrics=metrics[:3])
    assert {t.type for t in three.data} == {"scatter3d"}
    matrix = pareto_figure(loaded)
    # lower triangle of a 3 x 3 grid: 6 panels, each with every setting once
    per_panel = sum(len(t.customdata) for t in matrix.data if not t.name.startswith(("recommended", "compromise")))
    assert per_panel == 6 * 4
    assert sum(1 for t in matrix.data if t.showlegend is not False) == len({t.name for t in matrix.data})
    assert matrix.layout.meta["pareto"] == len(front_trials(loaded))
    with pytest.raises(ConfigError, match="not a metric"):
        pareto_figure(loaded, metrics=["nope"])


def test_parallel_flips_minimized_metrics_and_colours_by_score(two_way):
    fig = parallel_figure(two_way, rec=recommend(two_way))
    pc = fig.data[0]
    numbers = list(pc.customdata)
    assert numbers == [0, 1, 2, 4]
    sparse, sens = pc.dimensions
    assert "↑" in sparse.label and "flipped" in sens.label
    assert list(sparse.values) == pytest.approx([0.2, 0.8, 0.5, 1.0])
    assert list(sens.values) == pytest.approx([-3.0, -1.0, -2.0, -4.0])  # up = smaller sensitivity = better
    # the tick labels are the real values at the flipped positions
    assert all(float(t) == pytest.approx(-v, abs=5e-3) for t, v in zip(sens.ticktext, sens.tickvals))
    assert list(pc.line.color) == pytest.approx([SCORE[n] for n in numbers])


def test_radar_uses_normalized_values_where_one_is_best(two_way):
    rec = recommend(two_way)
    assert rec.best.number == 1
    fig = radar_figure(two_way, rec=rec)
    by = {t.name: list(t.r)[:-1] for t in fig.data}  # the polygon is closed on its first point
    assert by["recommended (trial 1)"] == pytest.approx(NORM[1])
    assert by["baseline b:canonized (trial 0)"] == pytest.approx(NORM[0])
    assert by["baseline b:plain (trial 2)"] == pytest.approx(NORM[2])
    assert list(fig.layout.polar.radialaxis.range) == [0, 1]


def test_hypervolume_figure_draws_the_history(two_way):
    fig = hypervolume_figure(two_way)
    hist = hypervolume_history(two_way)
    assert list(fig.data[0].x) == hist.trials and list(fig.data[0].y) == pytest.approx(hist.values)
    assert "0.1 of each metric's range beyond its worst" in fig.layout.meta["caption"]


def test_canonization_pairs_and_which_is_better(two_way):
    pairs = canonization_pairs(two_way)
    assert [(a.number, b.number) for a, b in pairs] == [(0, 2)]
    fig = canonization_figure(two_way)
    assert fig.layout.meta["pairs"] == [[0, 2]]
    bars = {t.name: list(t.y) for t in fig.data}
    assert bars["canonized"] == pytest.approx(NORM[0]) and bars["plain (not canonized)"] == pytest.approx(NORM[2])
    # plain is better on both: more sparse (maximized) and less sensitive (minimized)
    assert better(0.2, 0.5, "maximize") == -1 and better(3.0, 2.0, "minimize") == -1
    assert better(1.0, 1.0, "minimize") == 0


def test_importance_says_why_it_is_empty(two_way):
    fig = importance_figure(two_way)
    assert "at least 10 distinct complete settings" in fig.layout.meta["empty"]


def test_timing_medians_per_phase(two_way):
    numbers, phases, table = phase_table(two_way)
    assert numbers == [0, 1, 2, 4]  # the repeat recorded no phases
    assert phases[:3] == ["attribution", "metric:sparseness", "metric:avg_sensitivity"]
    assert table[:, 0] == pytest.approx([0.5, 0.3, 0.7, 0.4])
    assert table[:, -1] == pytest.approx([0.4, 0.1, 0.1, 0.3])  # total minus the phases
    fig = timing_figure(two_way)
    medians = [t.y[0] for t in fig.data]
    assert medians == pytest.approx(list(np.median(table, axis=0)))
    assert fig.layout.meta["median_total"] == pytest.approx(np.median([2.0, 2.6, 2.4, 1.5]))


def test_publish_replaces_the_note_and_graph(two_way):
    from optuna_dashboard import get_note, save_note

    save_note(two_way.study, "Our own notes on this study.")
    rec = recommend(two_way)
    publish(two_way, rec=rec)
    first = get_note(two_way.study)
    assert first.startswith("Our own notes on this study.\n\n## xaiopt recommendation for made")
    storage, sid = two_way.study._storage, two_way.study._study_id
    keys = {k for k in storage.get_study_system_attrs(sid) if PARETO_GRAPH_ID in k}
    publish(two_way, rec=rec)
    assert get_note(two_way.study) == first
    assert first.count("## xaiopt recommendation") == 1 and first.count("Our own notes") == 1
    assert "Recommended for study 'made': trial 1" in first
    assert {k for k in storage.get_study_system_attrs(sid) if PARETO_GRAPH_ID in k} == keys and keys


def test_write_report_refuses_a_bad_out_dir(two_way, tmp_path):
    afile = tmp_path / "a-file"
    afile.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        write_report(two_way, afile, images=0)
    with pytest.raises(ConfigError, match="does not exist"):
        write_report(two_way, tmp_path / "missing" / "report", images=0)
    with pytest.raises(ConfigError, match="--images"):
        write_report(two_way, tmp_path / "r", images=-1)


def test_write_report_without_gallery_is_offline(two_way, tmp_path):
    path = write_report(two_way, tmp_path / "report", images=0, dashboard=False)
    assert path == tmp_path / "report" / "index.html"
    text = path.read_text()
    assert "http://" not in text and "https://" not in text
    assert 'id="gallery"' not in text and 'id="recommendation"' in text
    assert (tmp_path / "report" / "plotly.min.js").stat().st_size > 1_000_000
    assert "Recommended: trial 1" in text


def test_a_report_whose_write_fails_leaves_no_half_directory(two_way, tmp_path, monkeypatch):
    import errno

    import xaiopt.report.page as page

    real = page.write_atomic

    def full_disk_at_index(path, data, **kw):
        if path.name == "index.html":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data, **kw)

    monkeypatch.setattr(page, "write_atomic", full_disk_at_index)
    with pytest.raises(OSError, match="No space left"):
        write_report(two_way, tmp_path / "fresh", images=0, dashboard=False)
    assert not (tmp_path / "fresh").exists()  # not a directory holding plotly.min.js alone
    # a directory that was there before is kept, with what it held, and no temporary file
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    with pytest.raises(OSError, match="No space left"):
        write_report(two_way, kept, images=0, dashboard=False)
    assert sorted(p.name for p in kept.iterdir()) == ["notes.txt", "plotly.min.js"]
    monkeypatch.setattr(page, "write_atomic", real)
    assert write_report(two_way, kept, images=0, dashboard=False).read_text().startswith("<!doctype html>")


def test_an_outlier_sits_at_the_axis_edge_and_is_named(tmp_path):
    # ten settings; avg_sensitivity (minimized) of trial 9 is 3.27 against values near 0.1
    sens = [0.10, 0.12, 0.14, 0.15, 0.16, 0.18, 0.20, 0.22, 0.25, 3.27]
    rows = [dict(values=[0.1 * k, s]) for k, s in enumerate(sens)]
    loaded = build(f"sqlite:///{tmp_path / 'o.db'}", ["sparseness", "avg_sensitivity"], rows, name="outlier")
    q1, q3 = np.percentile(sens, [25, 75])
    fence = q3 + 3 * (q3 - q1)
    fig = pareto_figure(loaded, rec=recommend(loaded))
    ys = {n: y for t in fig.data for n, y in zip(t.customdata, t.y)}
    assert ys[9] == pytest.approx(fence) and max(ys.values()) == pytest.approx(fence)
    assert ys[0] == pytest.approx(0.10)
    assert "outliers drawn at the axis edge" in fig.layout.title.text and "trial 9 = 3.27" in fig.layout.title.text
    hover = next(t for t in fig.data if 9 in list(t.customdata))
    assert "3.27" in hover.text[list(hover.customdata).index(9)]  # the hover keeps the real value
    par = parallel_figure(loaded)
    axis = par.data[0].dimensions[1]
    assert min(axis.values) == pytest.approx(-fence)  # flipped (minimized), cut at the fence
    assert "trial 9 = 3.27" in par.layout.title.text


def test_the_report_shows_the_paper_table_of_its_canonize_pairs(two_way):
    from xaiopt.report.page import _paper_table

    page = _paper_table(two_way)
    # one pair (0 canonized, 2 plain) of baseline b: a single row, so each column's only value is its best
    assert "<th colspan='2'>sparseness ↑</th><th colspan='2'>avg_sensitivity ↓</th>" in page
    row = page[page.index("<tr><td>"):]
    assert row.startswith("<tr><td>benchmark:vgg</td><td>b</td><td class='num'><b>0.5</b></td>"
                          "<td class='num'><b>0.2</b></td><td class='num'><b>2</b></td><td class='num'><b>3</b></td>")
