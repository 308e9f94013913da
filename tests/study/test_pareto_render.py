"""The Pareto table fits the terminal, the front can be taken on chosen metrics, JSON/CSV carry directions."""

from __future__ import annotations

import json
import warnings

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from xaiopt.cli import main
from xaiopt.config import config_to_dict, parse_config
from xaiopt.errors import ConfigError
from xaiopt.metrics import get_metric
from xaiopt.study import render
from xaiopt.study.manage import CONFIG_ATTR, LoadedStudy
from xaiopt.study.pareto import format_column

METRICS = ["sparseness", "region_perturbation", "relevance_rank_accuracy", "relevance_mass_accuracy",
           "avg_sensitivity", "random_logit"]
LONG = "canonize=yes first=zbox conv1=gamma(0.25) conv2=gamma(0.25) conv3=epsilon(0.01) classifier=epsilon(1e-06)"

# (values in METRICS order, explainer text, user attrs); directions: max x4, min x2
TRIALS = [
    ([0.92, 0.55, 0.60, 0.52, 0.243, 0.80], LONG, {"baseline": "epsilon_plus:canonized"}),
    ([0.88, 0.55, 0.58, 0.49, 0.246, 0.79], "canonize=no " + LONG[13:], {}),
    ([0.80, 0.50, 0.50, 0.40, 0.300, 0.90], "dominated by trial 0 " + LONG, {}),
    ([0.95, 0.40, 0.45, 0.70, 3.270, 0.85], "canonize=yes first=same conv1=zplus", {}),
    ([0.92, 0.55, 0.60, 0.52, 0.243, 0.80], LONG, {"duplicate_of": 0}),
    ([0.70, 0.60, 0.72, 0.63, 0.341, 0.67], "canonize=yes first=flat conv1=epsilon(0.1) conv2=zplus", {}),
]


def build(url: str, name: str = "made") -> LoadedStudy:
    cfg = parse_config({"name": name, "metrics": METRICS})
    study = optuna.create_study(storage=url, study_name=name, directions=[get_metric(m).direction for m in METRICS])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(METRICS)
    study.set_user_attr(CONFIG_ATTR, config_to_dict(cfg))
    for k, (values, text, attrs) in enumerate(TRIALS):
        spec = {"label": text}
        study.add_trial(create_trial(state=TrialState.COMPLETE, values=values, params={}, distributions={},
                                     user_attrs={"explainer": text, **attrs}, system_attrs={"xaiopt:explainer": spec}))
    return LoadedStudy(study=study, config=cfg, storage_url=url)


@pytest.fixture
def loaded(tmp_path):
    return build(f"sqlite:///{tmp_path / 'p.db'}")


def hand_front(indices: list[int]) -> list[int]:
    """Trials no other distinct trial dominates on METRICS[indices], by brute force (trial 4 repeats 0)."""
    sign = [1 if get_metric(METRICS[i]).direction == "maximize" else -1 for i in indices]
    pts = {k: [s * TRIALS[k][0][i] for s, i in zip(sign, indices)] for k in range(len(TRIALS)) if k != 4}
    return sorted(k for k, p in pts.items()
                  if not any(all(a >= b for a, b in zip(q, p)) and q != p for j, q in pts.items() if j != k))


def table_rows(text: str) -> tuple[list[str], list[str], list[str]]:
    """(lines above the rule, the data rows, the lines after them)."""
    lines = text.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("-----"))
    data = [line for line in lines[rule + 1:] if line[:5].strip().isdigit()]
    return lines[:rule + 1], data, lines[rule + 1 + len(data):]


@pytest.mark.parametrize("columns", [80, 200])
def test_the_table_fits_the_terminal(loaded, monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    out = render(loaded, "table")
    assert max(map(len, out.splitlines())) <= columns
    head, rows, tail = table_rows(out)
    front = hand_front(list(range(6)))
    assert [int(r.split()[0]) for r in rows] == front == [0, 1, 3, 5]
    assert head[0] == f"Pareto front of study 'made' on all 6 metrics: 4 of 5 distinct settings"
    baseline_row = next(r for r in rows if r.split()[0] == "0")
    assert "  [baseline epsilon_plus:canonized] canon" in baseline_row
    header = "\n".join(head)
    if columns == 200:  # every metric, one header line, arrows for the directions
        assert head[1].split()[:7] == ["trial", "sparseness", "↑", "region_perturbation", "↑",
                                       "relevance_rank_accuracy", "↑"]
        assert "avg_sensitivity ↓" in head[1] and "random_logit ↓" in head[1]
        assert not any(line.startswith("not shown") for line in tail)
    else:  # the first metrics that fit, the others named in one footer line with the way to choose
        notes = [line for line in tail if line.startswith("not shown")]
        assert len(notes) == 1 and "--columns" in notes[0] and "80 columns" in notes[0]
        assert "sparseness ↑" in header and "random_logit" not in header
    assert any("cut to fit" in line for line in tail) == any(r.endswith("…") for r in rows)


def test_numbers_are_right_aligned_in_one_format_per_column(loaded, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    head, rows, _ = table_rows(render(loaded, "table"))
    rule = head[-1]
    # column spans from the rule's dashes
    spans, start = [], None
    for i, ch in enumerate(rule + " "):
        if ch == "-" and start is None:
            start = i
        elif ch != "-" and start is not None:
            spans.append((start, i))
            start = None
    metric_spans = spans[1:7]
    for r in rows:
        number = int(r.split()[0])
        values = TRIALS[number][0]
        for (a, b), v, m in zip(metric_spans, values, METRICS):
            cell = r[a:b]
            assert cell == cell.rjust(b - a) and cell[-1] != " "  # right-aligned to the column's end
            assert float(cell) == pytest.approx(v, abs=5e-4)
    # avg_sensitivity's largest value is 3.27: 4 significant digits of it -> 3 decimals for all
    a, b = metric_spans[4]
    assert [r[a:b].strip() for r in rows] == ["0.243", "0.246", "3.270", "0.341"]


def test_format_column_by_hand():
    assert format_column([0.9196, 0.5, 3.27]) == ["0.920", "0.500", "3.270"]
    assert format_column([12.5, 0.3]) == ["12.50", "0.30"]
    assert format_column([-0.25, 0.5]) == ["-0.2500", "0.5000"]
    assert format_column([0.0, 0.0]) == ["0.000", "0.000"]
    assert format_column([1e-5, 2e-5]) == ["1.000e-05", "2.000e-05"]
    assert format_column([5.0, 0.001]) == ["5.000e+00", "1.000e-03"]  # four decades apart: scientific
    assert format_column([2.5e6]) == ["2.500e+06"]


def test_front_on_chosen_metrics(loaded, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    chosen = ["avg_sensitivity", "sparseness"]
    out = render(loaded, "table", metrics=chosen)
    head, rows, tail = table_rows(out)
    expected = hand_front([4, 0])
    assert [int(r.split()[0]) for r in rows] == expected == [0, 3]
    assert head[0].startswith("Pareto front of study 'made' on avg_sensitivity ↓, sparseness ↑: 2 of 5")
    # the front's metrics come first, the others follow while they fit
    # (at 120 columns over two header lines: avg / sensitivity ↓)
    assert head[1].split()[0] == "avg" and head[2].split()[:5] == ["trial", "sensitivity", "↓", "sparseness", "↑"]
    assert max(map(len, out.splitlines())) <= 120
    doc = json.loads(render(loaded, "json", metrics=chosen))
    assert doc["front_on"] == chosen and [t["number"] for t in doc["trials"]] == expected
    with pytest.raises(ConfigError, match=r"--metrics: accuracy is not a metric of study 'made' \(valid: sparseness"):
        render(loaded, "table", metrics=["accuracy"])


def test_chosen_columns_and_when_even_they_do_not_fit(loaded, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    head, rows, _ = table_rows(render(loaded, "table", columns=["random_logit", "sparseness"]))
    assert head[1].split() == ["trial", "random_logit", "↓", "sparseness", "↑", "explainer"]
    assert [r.split()[1:3] for r in rows] == [["0.8000", "0.9200"], ["0.7900", "0.8800"], ["0.8500", "0.9500"],
                                              ["0.6700", "0.7000"]]
    monkeypatch.setenv("COLUMNS", "60")
    out = render(loaded, "table", columns=METRICS)
    assert max(map(len, out.splitlines())) <= 60
    head, rows, tail = table_rows(out)
    notes = [line for line in tail if line.startswith("not shown in 60 columns")]
    assert len(notes) == 1 and "--columns" in notes[0]
    with pytest.raises(ConfigError, match=r"--columns: nope is not a metric of study 'made' \(valid: sparseness, "):
        render(loaded, "table", columns=["sparseness", "nope"])


def test_json_and_csv_carry_the_directions(loaded):
    doc = json.loads(render(loaded, "json"))
    assert set(doc) == {"study", "front_on", "metrics", "trials"}
    assert doc["study"] == "made" and doc["front_on"] == METRICS
    assert doc["metrics"] == [{"name": m, "direction": get_metric(m).direction, "category": get_metric(m).category}
                              for m in METRICS]
    assert [d["direction"] for d in doc["metrics"]] == ["maximize"] * 4 + ["minimize"] * 2
    # the front is Optuna's own best trials, the repeat (duplicate_of) counted once
    best = sorted(t.number for t in loaded.study.best_trials if "duplicate_of" not in t.user_attrs)
    assert [t["number"] for t in doc["trials"]] == best
    for t in doc["trials"]:
        assert [t["values"][m] for m in METRICS] == TRIALS[t["number"]][0]
    lines = render(loaded, "csv").splitlines()
    assert lines[0] == ("trial,sparseness (max),region_perturbation (max),relevance_rank_accuracy (max),"
                        "relevance_mass_accuracy (max),avg_sensitivity (min),random_logit (min),explainer")
    first = lines[1].split(",")
    assert first[0] == "0" and [float(v) for v in first[1:7]] == TRIALS[0][0]
    assert first[7].startswith("[baseline epsilon_plus:canonized] canonize=yes")


def test_cli_pareto_options(tmp_path, capsys, monkeypatch):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    build(url)
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["study", "pareto", "made", "--storage", url, "--metrics", "sparseness,random_logit"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("Pareto front of study 'made' on sparseness ↑, random_logit ↓")
    assert max(map(len, out.splitlines())) <= 80
    assert main(["study", "pareto", "made", "--storage", url, "--format", "json", "--metrics", "region_perturbation"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["front_on"] == ["region_perturbation"] and [t["number"] for t in doc["trials"]] == [5]
    for argv, needle in [(["--columns", "sparseness,bogus"], "--columns: bogus is not a metric"),
                         (["--metrics", "bogus"], "--metrics: bogus is not a metric"),
                         (["--metrics", ","], "--metrics: give metric names")]:
        assert main(["study", "pareto", "made", "--storage", url, *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
        if "not a metric" in needle:
            assert "valid: " + ", ".join(METRICS) in err[0]


def test_an_empty_study_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    cfg = parse_config({"name": "empty", "metrics": ["sparseness"]})
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'e.db'}", study_name="empty", directions=["maximize"])
    study.set_user_attr(CONFIG_ATTR, config_to_dict(cfg))
    loaded = LoadedStudy(study=study, config=cfg, storage_url="")
    out = render(loaded, "table")
    assert out.splitlines()[0] == "Pareto front of study 'empty' on all 1 metrics: 0 of 0 distinct settings"
    assert out.splitlines()[-1] == "(no complete trials yet)"
    assert json.loads(render(loaded, "json"))["trials"] == []
